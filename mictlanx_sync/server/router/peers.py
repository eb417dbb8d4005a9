"""A peer as the router knows it: its id, address and scheme, availability and trust (protocol §4.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ...protocol.uri import base_url


@dataclass
class PeerEntry:
    peer_id: str
    hostname: str
    port: int
    protocol: str = "http"
    available: bool = False
    failures: int = 0
    #: the peer token may be sent to it (configured, or registered by a holder of the token)
    trusted: bool = False
    #: the base URL the peer tells clients to use (its P21 ``advertise_url``), if any
    advertise_url: Optional[str] = None

    @property
    def url(self) -> str:
        return base_url(self.protocol, self.hostname, self.port)

    @property
    def client_url(self) -> str:
        """Where clients reach the peer for direct reads: its advertised URL, else ours."""
        return self.advertise_url or self.url

    def public(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "hostname": self.hostname, "port": self.port, "protocol": self.protocol}

    def same_address(self, other: PeerEntry) -> bool:
        return (self.hostname, self.port, self.protocol) == (other.hostname, other.port, other.protocol)
