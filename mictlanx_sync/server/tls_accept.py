"""Accepting TLS connections with a bounded handshake that counts against the connection cap.

uvicorn hands its ``SSLContext`` to ``loop.create_server``: the event loop then runs each
handshake with its default bound (60 s), and the HTTP protocol, with the limits of
:class:`~.limits.HttpLimits`, sees the connection only once the handshake is complete. A
client that connects and sends nothing, or a byte of a ClientHello, held a socket for a
minute, outside ``--max-connections``.

:class:`TLSServer` (a ``uvicorn.Server``) listens in plain TCP instead and upgrades each
accepted connection itself (``loop.start_tls``, public asyncio API, which uvloop has too):

- the handshake must complete within ``ssl_handshake_timeout`` seconds of the accept
  (``--ssl-handshake-timeout``, default 5 s), or the socket is closed;
- a connection in its handshake counts against ``max_connections`` from the accept on: a
  new connection over the cap evicts whatever has gone longest without progress, an idle
  or header-sending connection or a handshake in progress (the handshake's clock is its
  accept time), and is refused when there is none;
- what arrives between the handshake's end and the hand-over to the HTTP protocol is kept
  and passed on, so no request bytes are lost.

Plain-HTTP servers (no certificate) are untouched: they keep uvicorn's own start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

import uvicorn

from .guarded_protocol import make_room

__all__ = ["TLSServer", "TLSAcceptor", "HANDSHAKE_GRACE"]

log = logging.getLogger("mictlanx_sync.server")

#: seconds past ``ssl_handshake_timeout`` after which a handshake the event loop has not
#: ended (it always should) is abandoned and its socket aborted
HANDSHAKE_GRACE = 1.0


class _HandOver(asyncio.Protocol):
    """Stands in for the HTTP protocol while ``start_tls`` finishes: asyncio may deliver the
    first decrypted bytes (or an EOF, or the loss of the connection) before ``start_tls``
    returns, and they are the request's."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False
        self.lost_exc: Optional[Exception] = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True  # the HTTP protocol decides, once it has the connection

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost, self.lost_exc = True, exc


class TLSAcceptor(asyncio.Protocol):
    """The protocol of an accepted TCP connection until its TLS handshake completes; then
    it hands the TLS transport to ``make_protocol()`` (the guarded HTTP protocol).

    The first bytes (the ClientHello) may reach this protocol before ``start_tls`` has put
    its own in place: uvloop starts reading as soon as ``connection_made`` returns, whatever
    it asked. They are kept, reading is paused, and :meth:`_feed` hands them to the TLS
    protocol through its ``BufferedProtocol`` interface once that protocol has its
    connection and before reading resumes (``start_tls`` schedules both in one batch of
    callbacks; :meth:`_feed` is scheduled right after them), so no byte is lost or reordered.
    """

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], context: Any, timeout: float,
                 handshakes: set[Any], connections: set[Any], cap: int) -> None:
        self.make_protocol = make_protocol
        self.context = context
        self.timeout = timeout
        self.handshakes = handshakes
        self.connections = connections
        self.cap = cap
        self.transport: Any = None
        self.last_active = time.monotonic()  # eviction order: a handshake's clock is its accept
        self._early: list[bytes] = []
        self._task: Optional[asyncio.Task[None]] = None
        self._guard: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        self.handshakes.add(self)
        if not make_room(self, self.connections, self.handshakes, self.cap):
            log.warning("connection limit %d reached and every connection is busy: refusing one", self.cap)
            self._forget()
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._guard = loop.call_later(self.timeout + HANDSHAKE_GRACE, self._abandon)
        self._task = loop.create_task(self._handshake())
        # After the task's first step (start_tls queues the TLS protocol's connection_made and
        # the resumption of reading), queue the hand-over of any early bytes behind them.
        loop.call_soon(loop.call_soon, self._feed)

    def data_received(self, data: bytes) -> None:
        self._early.append(data)
        self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # closed before the handshake: nothing to answer

    def connection_lost(self, exc: Optional[Exception]) -> None:
        # Only while this is still the transport's protocol: closed before start_tls took it.
        self._forget()

    def evictable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        """Evicted (the cap) or shut down: the handshake ends with the socket."""
        if self.transport is not None:
            self.transport.abort()

    def _forget(self) -> None:
        self.handshakes.discard(self)
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _abandon(self) -> None:
        self._guard = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _feed(self) -> None:
        if not self._early:
            return
        data = memoryview(b"".join(self._early))
        self._early.clear()
        raw = self.transport
        tls = raw.get_protocol()
        while data and tls is not self and not raw.is_closing():
            buffer = tls.get_buffer(len(data))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            tls.buffer_updated(size)
            data = data[size:]

    async def _handshake(self) -> None:
        loop = asyncio.get_running_loop()
        raw = self.transport
        hand_over = _HandOver()
        try:
            if raw.is_closing():
                return  # gone (or evicted) before the handshake began
            tls = await loop.start_tls(raw, hand_over, self.context, server_side=True,
                                       ssl_handshake_timeout=self.timeout)
        except asyncio.CancelledError:
            raw.abort()
            if self._guard is None:  # _abandon: the loop's own bound did not fire
                return
            raise  # server shutting down
        except Exception as exc:  # noqa: BLE001 - a failed handshake: timed out, reset, not TLS, bad version
            log.debug("TLS handshake failed: %s: %s", type(exc).__name__, exc)
            raw.abort()
            return
        finally:
            self._forget()
        if tls is None or tls.is_closing():
            return
        protocol = self.make_protocol()
        protocol.connection_made(tls)
        tls.set_protocol(protocol)
        for chunk in hand_over.data:
            if tls.is_closing():
                break
            protocol.data_received(chunk)
        if hand_over.eof and not protocol.eof_received():
            tls.close()
        if hand_over.lost:
            protocol.connection_lost(hand_over.lost_exc)


class TLSServer(uvicorn.Server):
    """``uvicorn.Server`` whose HTTPS listeners use :class:`TLSAcceptor` (module docstring);
    without a certificate, or without given sockets, it is uvicorn's own."""

    async def startup(self, sockets: Optional[list[Any]] = None) -> None:
        config = self.config
        if sockets is None or config.ssl is None:
            await super().startup(sockets)
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise SystemExit(3)  # uvicorn's STARTUP_FAILURE
        limits = config.mictlanx_limits  # type: ignore[attr-defined]  # set by common.uvicorn_config
        handshakes: set[Any] = set()
        self.server_state.mictlanx_handshakes = handshakes  # type: ignore[attr-defined]
        connections = self.server_state.connections
        cap = limits.connection_cap()
        timeout = limits.handshake_timeout()

        def make_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg,no-any-return]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)

        def accept() -> TLSAcceptor:
            return TLSAcceptor(make_protocol, config.ssl, timeout, handshakes, connections, cap)

        loop = asyncio.get_running_loop()
        self.servers = [await loop.create_server(accept, sock=sock, backlog=config.backlog) for sock in sockets]
        self.started = True

    async def shutdown(self, sockets: Optional[list[Any]] = None) -> None:
        for server in self.servers:
            server.close()  # no new connections, then no handshake left half done
        for acceptor in list(getattr(self.server_state, "mictlanx_handshakes", ())):
            acceptor.close()
        await super().shutdown(sockets)
