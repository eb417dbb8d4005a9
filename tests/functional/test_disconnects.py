"""A request whose body is cut short by a disconnect is never acted on, on either server
(docs/protocol.md §9): the body reaches no handler as if it were whole.

Each request below declares a longer ``Content-Length`` than it sends, sends a body that is
complete JSON (or none), and closes. Before the shared ASGI layer the router parsed what had
arrived and acted on it."""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator
from urllib.parse import urlparse

import pytest
import requests

from mictlanx_sync.server.local import LocalVSS

#: how long a request cut short is given to (wrongly) take effect before it is checked
SETTLE = 1.0


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=1, health_interval=0.3) as local:
        yield local


def _cut_short(url: str, method: str, path: str, body: bytes, declared: int) -> None:
    """Send ``body`` under a ``Content-Length`` of ``declared`` bytes, then close the connection."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {declared}\r\n\r\n")
        sock.sendall(head.encode() + body)
    time.sleep(SETTLE)


def _peer_ids(router: str) -> list[str]:
    listing = requests.get(f"{router}/api/v4/peers", timeout=10).json()
    return sorted(p["peer_id"] for p in listing["available"] + listing["unavailable"])


def test_router_registers_no_peer_from_a_body_cut_short(vss: LocalVSS) -> None:
    router = vss.router_urls[0]
    before = _peer_ids(router)
    body = json.dumps({"peer_id": "ghost", "hostname": "127.0.0.1", "port": 9}).encode()
    _cut_short(router, "POST", "/api/v4/peers", body, len(body) + 100)  # R17
    _cut_short(router, "POST", "/api/v4/xpeers", b"[" + body + b"]", len(body) + 100)  # R15
    assert _peer_ids(router) == before


def test_router_removes_no_peer_named_in_the_query_of_a_body_cut_short(vss: LocalVSS) -> None:
    router = vss.router_urls[0]
    before = _peer_ids(router)
    _cut_short(router, "DELETE", f"/api/v4/xpeers?peers={before[0]}", b"", 10)  # R19
    assert _peer_ids(router) == before


def test_peer_registers_no_node_from_a_body_cut_short(vss: LocalVSS) -> None:
    peer = next(iter(vss.peer_urls.values()))
    node = {"id": "ghost", "disk": 1, "memory": 1, "ip_addr": "127.0.0.1", "port": 9, "weight": 1.0,
            "used_disk": 0, "used_memory": 0}
    body = json.dumps(node).encode()
    _cut_short(peer, "POST", "/api/v4/nodes", body, len(body) + 100)  # P19
    assert "ghost" not in requests.get(f"{peer}/api/v4/stats", timeout=10).json()["peers"]
