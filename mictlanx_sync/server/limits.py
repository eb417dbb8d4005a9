"""Connection-level limits for both servers: header size and count, header, body-idle and
keep-alive timeouts, and a bound on open connections (issue 12, docs/reliability.md §6).

uvicorn's httptools protocol accepts a header of any length (the ``h11_*`` limits do not
apply to it), never closes a connection that has not finished its first request, and
accepts connections until the process runs out of file descriptors, after which even
``/health`` fails. :class:`GuardedHttpToolsProtocol` adds what nginx, Envoy and Go's
``http.Server`` have:

- the request line plus headers above ``max_header_bytes``, or more than ``max_headers``
  headers: **431** and the connection closed, before the app or authentication sees it;
- a request whose headers do not complete within ``header_timeout`` of its first byte, or
  a connection that sends nothing for ``idle_timeout`` (before its first request or between
  requests): closed (408 when a request had started);
- a request body that stalls for ``body_idle_timeout`` while the app is waiting for it:
  the connection is closed, so the handler sees a disconnect and releases what it holds
  (a peer's capacity reservation, a router's write group);
- at most ``max_connections`` open connections: a new one first evicts the connection idle
  longest (between requests, or still sending headers); with none to evict it is closed at
  once. So an attacker's idle sockets can never starve ``/health`` of a descriptor.
- over TLS, a handshake that does not complete within ``ssl_handshake_timeout`` of the
  connect: closed; a connection in its handshake counts against ``max_connections`` and
  may be evicted like an idle one (:mod:`.tls_accept`).

This module holds the settings and their command-line options and imports no server
stack (the client's command line builds the same parser); the protocol is in
:mod:`.guarded_protocol`.
"""

from __future__ import annotations

import argparse
import os
import resource
from dataclasses import dataclass, fields
from typing import Any

KIB = 1024
#: Descriptors kept for everything that is not a client connection: the index, version
#: files being written, connections to peers, logs.
FD_RESERVE = 128
#: what asyncio (and uvloop) allow a TLS handshake when not told otherwise
ASYNCIO_HANDSHAKE_TIMEOUT = 60.0


def _default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, int(soft) - FD_RESERVE)


@dataclass(frozen=True)
class HttpLimits:
    """The limits of one server; every field has an environment variable ``MICTLANX_<FIELD>``."""

    max_header_bytes: int = 64 * KIB
    max_headers: int = 100
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    body_idle_timeout: float = 30.0
    #: 0: derived from the descriptor limit (soft ``RLIMIT_NOFILE`` - 128)
    max_connections: int = 0
    #: TLS servers only; 0: the event loop's default (60 s)
    ssl_handshake_timeout: float = 5.0

    @classmethod
    def from_env(cls, **overrides: Any) -> HttpLimits:
        """Defaults, then ``MICTLANX_*`` variables, then ``overrides`` that are not None."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = os.environ.get(f"MICTLANX_{item.name.upper()}")
            if raw is not None and raw.strip():
                kind = int if item.type in ("int", int) else float
                try:
                    values[item.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"MICTLANX_{item.name.upper()}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        limits = cls(**values)
        limits.check()
        return limits

    def check(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 0:
                raise ValueError(f"{item.name} must be >= 0")
        if self.max_header_bytes < 1024 or self.max_headers < 8:
            raise ValueError("max_header_bytes must be >= 1024 and max_headers >= 8")

    def connection_cap(self) -> int:
        return self.max_connections or _default_max_connections()

    def handshake_timeout(self) -> float:
        return self.ssl_handshake_timeout or ASYNCIO_HANDSHAKE_TIMEOUT


_HELP = {
    "max_header_bytes": "largest request line plus headers, in bytes; larger is answered 431 (default 65536)",
    "max_headers": "most headers in one request; more is answered 431 (default 100)",
    "header_timeout": "seconds a request may take to send its headers (default 10)",
    "idle_timeout": "seconds an idle connection is kept, before its first request or between requests "
                    "(default 30)",
    "body_idle_timeout": "seconds a request body may stall before the connection is closed (default 30)",
    "max_connections": "most open client connections, TLS handshakes in progress included; a new one evicts "
                       "the longest idle (default 0: the descriptor limit minus 128)",
    "ssl_handshake_timeout": "seconds a TLS client has, from its connect, to complete the handshake; then the "
                             "socket is closed (default 5; 0: the event loop's 60)",
}


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-header-bytes`` ... ``--max-connections``, each defaulting to its
    ``MICTLANX_*`` variable (shared by the peer and the router)."""
    group = parser.add_argument_group("connection limits")
    for item in fields(HttpLimits):
        env = f"MICTLANX_{item.name.upper()}"
        kind = int if item.type in ("int", int) else float
        group.add_argument(f"--{item.name.replace('_', '-')}", type=kind, default=None,
                           help=f"{_HELP[item.name]} [{env}]")


def limits_from_args(args: argparse.Namespace) -> HttpLimits:
    """The limits of a server started from the command line (options over environment)."""
    try:
        return HttpLimits.from_env(**{item.name: getattr(args, item.name, None) for item in fields(HttpLimits)})
    except ValueError as exc:
        raise SystemExit(f"mictlanx-sync: invalid connection limit: {exc}") from None
