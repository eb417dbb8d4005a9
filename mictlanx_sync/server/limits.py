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

The subclass reads private attributes of uvicorn's ``HttpToolsProtocol`` (``parser``,
``cycle``, ``flow``, ``transport``); ``tests/functional/test_http_limits.py`` exercises each
limit against a real server so an incompatible uvicorn fails loudly.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, fields
from typing import Any, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KIB = 1024
#: Descriptors kept for everything that is not a client connection: the index, version
#: files being written, connections to peers, logs.
FD_RESERVE = 128


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


class _HeaderTooLarge(Exception):
    """Raised inside a parser callback: httptools turns it into a parser error, which
    uvicorn answers through ``send_400_response`` (overridden below to answer 431)."""


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`HttpLimits` (module docstring)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "mictlanx_limits", None) or HttpLimits()
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = False
        self._guard: Optional[Any] = None  # the one timer of this connection
        self._received = 0  # bytes received on this connection so far
        self._feeding = 0  # size of the data being fed to the parser now
        self._message_start = 0  # self._received when the current request began
        self.last_active = time.monotonic()

    # --- connection bookkeeping ------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.idle_timeout, self._on_idle)
        cap = self.limits.connection_cap()
        if len(self.connections) > cap and not self._evict_one():
            self.logger.warning("connection limit %d reached and every connection is busy: refusing one", cap)
            self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _evict_one(self) -> bool:
        """Close the connection that has been idle (or sending headers) longest."""
        victims = [c for c in self.connections
                   if c is not self and isinstance(c, GuardedHttpToolsProtocol) and c._evictable()]
        if not victims:
            return False
        oldest = min(victims, key=lambda c: c.last_active)
        oldest.transport.close()
        return True

    def _evictable(self) -> bool:
        return not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete
                                                    or self._in_headers)

    # --- timers ------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        if delay > 0:
            self._guard = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _on_idle(self) -> None:
        self._guard = None
        if not self.transport.is_closing():
            self.transport.close()

    def _on_header_timeout(self) -> None:
        self._guard = None
        self._reject(408, "request headers not received in time")

    def _on_body_idle(self) -> None:
        self._guard = None
        if self.transport.is_closing() or self.cycle is None or not self.cycle.more_body:
            return
        if self.flow.read_paused:  # the app is behind, not the client: wait on
            self._arm(self.limits.body_idle_timeout, self._on_body_idle)
            return
        self.logger.info("closing a connection whose request body stalled for %.1f s",
                         self.limits.body_idle_timeout)
        self.transport.close()

    def _reject(self, status: int, msg: str) -> None:
        if self.transport.is_closing():
            return
        body = msg.encode("ascii")
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, _REASONS[status], len(body), body))
        self.transport.close()

    # --- parser hooks ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.cycle is not None and not self.cycle.response_complete and not self._in_headers:
            self._arm(self.limits.body_idle_timeout, self._on_body_idle)  # body bytes: restart the clock
        self._received += len(data)
        self._feeding = len(data)
        super().data_received(data)
        # httptools hands a header to on_header only once it is complete, buffering it
        # meanwhile: count the raw bytes of a request whose headers are still incomplete.
        if self._in_headers and self._received - self._message_start > self.limits.max_header_bytes:
            self.logger.info("rejecting a request whose headers exceed %d bytes (431)", self.limits.max_header_bytes)
            self._reject(431, "request header fields too large")

    def send_400_response(self, msg: str) -> None:
        # A limit raised inside a parser callback reaches uvicorn as a parser error.
        if self._header_bytes > self.limits.max_header_bytes or self._header_count > self.limits.max_headers:
            self.logger.info("rejecting a request whose headers exceed the limits (431)")
            self._reject(431, "request header fields too large")
            return
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_start = self._received_before_feed()
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True
        self._arm(self.limits.header_timeout, self._on_header_timeout)

    def _received_before_feed(self) -> int:
        """Bytes received before the data being parsed now: the request began within it."""
        return self._received - self._feeding

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes or self._header_count > self.limits.max_headers:
            raise _HeaderTooLarge("request header fields too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body and self.parser is not None:
            self._arm(self.limits.body_idle_timeout, self._on_body_idle)
        else:
            self._disarm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()
        if not self.transport.is_closing() and not self.pipeline:
            # uvicorn armed its keep-alive timer; ours covers the same ground with the
            # configured idle timeout, so only one of them should run.
            self._unset_keepalive_if_required()
            self._arm(self.limits.idle_timeout, self._on_idle)
