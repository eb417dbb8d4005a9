"""One TCP connection of the lean HTTP/1.1 client (:mod:`.rawhttp`), as an ``asyncio.Protocol``.

Reading: every chunk the transport delivers is kept as is (no copies); reading pauses above
``HIGH_WATER`` buffered bytes. Writing: the transport calls ``pause_writing`` when its buffer
passes ``WRITE_HIGH``; a sender awaits :meth:`RawConn.drain` before writing more, so a streamed
upload holds at most one piece plus ``WRITE_HIGH`` in memory. Every wait has a timer.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from typing import Optional

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
_INTERIM = re.compile(rb"HTTP/1\.[01] 1[0-9][0-9]")
_INTERIM_MAX = 64 * 1024


class RawHTTPError(Exception):
    """A transport or protocol failure talking to a peer."""


class PeerTLSError(RawHTTPError):
    """The TLS handshake with an https peer failed: its certificate did not verify, or it
    does not speak TLS."""


class ReplyTooLarge(RawHTTPError):
    """A response body is larger than the reader accepts (the peer did nothing wrong at the transport level)."""


class RawConn(asyncio.Protocol):
    """Buffers and flags of one connection; only one task uses it at a time (the pool guarantees it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False  # the peer closed its side, or the connection is gone
        self.paused = False  # reading paused (too much buffered)
        self.write_paused = False  # the transport's write buffer is above its high-water mark
        self.idle_since = 0.0  # loop time when the connection last went back to the pool
        self.waiter: Optional[asyncio.Future[None]] = None

    # --- protocol callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        try:
            self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[union-attr]
        except (AttributeError, NotImplementedError, ValueError):
            pass

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.eof = True
        self.write_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float, what: str) -> None:
        """Until the next callback wakes us; ``RawHTTPError`` after ``timeout`` seconds."""
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter, what)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    # --- reading -------------------------------------------------------------------------
    async def read(self, timeout: float) -> Optional[bytes]:
        """The next chunk as received, or None at EOF."""
        while not self.chunks:
            if self.eof:
                return None
            await self._wait(timeout, "peer read timed out")
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered < LOW_WATER and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def unread(self, data: bytes) -> None:
        if data:
            self.chunks.appendleft(data)
            self.buffered += len(data)

    # --- writing -------------------------------------------------------------------------
    @property
    def answered(self) -> bool:
        """The peer sent a final answer (early) or closed: stop sending the body.

        Interim ``1xx`` answers (an unsolicited ``100 Continue``) are not answers: they are
        dropped here, and the body goes on (RFC 9110 §15.2).
        """
        return self.eof or (bool(self.chunks) and not self._only_interim())

    def _only_interim(self) -> bool:
        """True if the buffered bytes are interim answers (complete ones dropped) or the start of one."""
        while self.chunks:
            data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            if len(data) < 12:
                start = data[:10]
                return any(t.startswith(start) for t in (b"HTTP/1.1 1", b"HTTP/1.0 1"))
            if not _INTERIM.match(data) or data[9:12] == b"101":
                return False
            index = data.find(b"\r\n\r\n")
            if index < 0:
                return len(data) <= _INTERIM_MAX
            rest = data[index + 4:]
            self.chunks.clear()
            self.buffered = 0
            if rest:
                self.chunks.append(rest)
                self.buffered = len(rest)
        return True

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the transport's write buffer is low again (or the peer answered or closed)."""
        while self.write_paused and not self.answered:
            await self._wait(timeout, "peer write timed out")

    # --- state ---------------------------------------------------------------------------
    @property
    def reusable(self) -> bool:
        return not self.eof and self.transport is not None and not self.transport.is_closing() and not self.chunks

    def close(self) -> None:
        """Drop the connection at once (never reused)."""
        self.eof = True
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None], what: str) -> None:
    if not waiter.done():
        waiter.set_exception(RawHTTPError(what))
