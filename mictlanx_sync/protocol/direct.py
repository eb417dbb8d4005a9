"""Direct reads: the router hands out the peer, the bytes skip the router (issue 13).

A reader that sends ``Mictlanx-Direct: 1`` with R11 lets the router answer **307** instead of
streaming: ``Location`` is the peer's own data URL (P5) for exactly one version, which the
answer also names in ``Mictlanx-Version``, and ``Peer-Id`` the peer. The router keeps
placement, health and failover (it chose a peer that holds that version); the reader fetches
the bytes straight from the peer, verifies them as always, and falls back to the proxied R11
(without the header) when the peer is not reachable from where it runs. A router that does
not know the header streams as before, so the reader can always send it.

When the router has a peer token, ``Location`` carries a *read grant*: the version, an expiry
and an HMAC of ``GET``, the path, the version and the expiry under the peer token
(``mictlanx_version``, ``mictlanx_expires``, ``mictlanx_grant``). A peer that requires the token
accepts the grant instead, for that one path and version until it expires, so the reader
never needs, and never sends, the peer token. See docs/protocol-extensions.md §3.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

__all__ = ["DIRECT_HEADER", "GRANT_PARAM", "EXPIRES_PARAM", "VERSION_PARAM", "DIRECT_READ_MIN",
           "DIRECT_FIRST_BYTE_TIMEOUT", "is_base_url", "Unreachable"]

#: R11 request header: "a 307 to the peer is welcome".
DIRECT_HEADER = "Mictlanx-Direct"
#: Query parameters of a granted ``Location``.
VERSION_PARAM = "mictlanx_version"
EXPIRES_PARAM = "mictlanx_expires"
GRANT_PARAM = "mictlanx_grant"
#: The client asks for direct reads of chunks at least this large: below it the extra round
#: trip of the redirect costs more than the router's copy of the bytes.
DIRECT_READ_MIN = 1024 * 1024
#: Seconds the direct hop waits to connect to the peer and for its first byte (the answer's
#: headers) before the read goes through the router instead. The router has probed that peer
#: a moment before, so a healthy one answers in milliseconds; one that stops in between (a
#: SIGSTOP, a stalled disk) must not hold the chunk for the whole read timeout (120 s) when
#: the proxied read, which fails over between replicas, is there. Once the headers have come,
#: the body is read at the normal read timeout. The router's own ``--peer-first-byte-timeout``
#: (2 s) bounds the same wait on its side.
DIRECT_FIRST_BYTE_TIMEOUT = 3.0


def is_base_url(url: object) -> bool:
    """``http(s)://host[:port]`` and nothing more: what a peer may advertise."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url) or len(url) > 2048:
        return False
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok
            and parts.path in ("", "/") and not parts.query and not parts.fragment and parts.username is None)


class Unreachable:
    """Peer addresses a client could not read from directly, each for ``quiet`` seconds.

    Thread-safe. A direct read that fails to connect, times out or is refused marks the
    peer's ``host:port``; until it expires, reads handed that address go through the router at
    once instead of paying a failed attempt each time (a peer behind NAT stays unreachable;
    one that was only restarting is tried again later). At most ``limit`` addresses are kept.
    """

    def __init__(self, quiet: float = 60.0, limit: int = 1024) -> None:
        self.quiet = quiet
        self.limit = limit
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, netloc: str) -> None:
        with self._lock:
            if len(self._until) >= self.limit:
                now = time.monotonic()
                self._until = {k: v for k, v in self._until.items() if v > now}
                if len(self._until) >= self.limit:
                    self._until.pop(next(iter(self._until)))
            self._until[netloc] = time.monotonic() + self.quiet

    def __contains__(self, netloc: object) -> bool:
        with self._lock:
            until = self._until.get(netloc) if isinstance(netloc, str) else None
            if until is None:
                return False
            if until <= time.monotonic():
                del self._until[netloc]  # type: ignore[arg-type]
                return False
            return True
