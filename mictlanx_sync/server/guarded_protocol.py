"""uvicorn's httptools protocol with the limits of :class:`~.limits.HttpLimits` (see there).

The subclass reads private attributes of uvicorn's ``HttpToolsProtocol`` (``parser``,
``cycle``, ``flow``, ``transport``, ``pipeline``); ``tests/functional/test_http_limits.py``
exercises each limit against a real server so an incompatible uvicorn fails loudly.
"""

from __future__ import annotations

import time
from typing import Any, Collection, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import HttpLimits

__all__ = ["GuardedHttpToolsProtocol", "make_room"]


class _HeaderTooLarge(Exception):
    """Raised inside a parser callback: httptools turns it into a parser error, which
    uvicorn answers through ``send_400_response`` (overridden below to answer 431)."""


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def make_room(newcomer: Any, connections: Collection[Any], handshakes: Collection[Any], cap: int) -> bool:
    """Keep open connections plus TLS handshakes in progress (``newcomer`` among them) within
    ``cap``: over it, close the one that has gone longest without progress (``last_active``)
    among those that may be (``evictable()``: idle, sending headers, or in a handshake).
    False when none may be: the caller refuses ``newcomer``."""
    if len(connections) + len(handshakes) <= cap:
        return True
    victims = [c for group in (connections, handshakes) for c in group
               if c is not newcomer and callable(getattr(c, "evictable", None)) and c.evictable()]
    if not victims:
        return False
    min(victims, key=lambda c: c.last_active).close()
    return True


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
        # TLS handshakes in progress count too (server/tls_accept.py); none for plain HTTP.
        handshakes: Collection[Any] = getattr(self.server_state, "mictlanx_handshakes", ())
        if not make_room(self, self.connections, handshakes, cap):
            self.logger.warning("connection limit %d reached and every connection is busy: refusing one", cap)
            self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def evictable(self) -> bool:
        """Idle between requests, or still sending headers: may be closed to make room."""
        return not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete
                                                    or self._in_headers)

    def close(self) -> None:
        self.transport.close()

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
