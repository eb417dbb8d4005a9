"""A lean HTTP/1.1 client for the router's data reads (P5 through R10/R11).

httpx moves a body through several layers in 64 KiB reads with a cancel scope per read;
relaying a GET that way costs more CPU than the peer spends serving it. This client reads
with an ``asyncio.Protocol``: every chunk the transport delivers is handed on as is (no
copies), reading pauses when too much is buffered (bounded memory), and a timer per wait
bounds every read. Keep-alive connections are pooled per peer.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import AsyncIterator, Optional

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
MAX_HEAD = 64 * 1024
MAX_IDLE_PER_PEER = 32


class RawHTTPError(Exception):
    """A transport or protocol failure talking to a peer."""


class _Conn(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.paused = False
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
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- reading -------------------------------------------------------------------------
    async def read(self, timeout: float) -> Optional[bytes]:
        """The next chunk as received, or None at EOF."""
        while not self.chunks:
            if self.eof:
                return None
            waiter = self.waiter = self.loop.create_future()
            timer = self.loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self.waiter = None
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

    @property
    def reusable(self) -> bool:
        return not self.eof and self.transport is not None and not self.transport.is_closing() and not self.chunks

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(RawHTTPError("peer read timed out"))


class RawResponse:
    """Status, lower-case headers and a body iterator; ``aclose()`` returns or drops the connection."""

    def __init__(self, pool: RawPool, key: tuple[str, int], conn: _Conn, status: int,
                 headers: dict[str, str]) -> None:
        self.pool = pool
        self.key = key
        self.conn = conn
        self.status = status
        self.headers = headers
        self._done = False
        self._closed = False
        length = headers.get("content-length")
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.length: Optional[int] = int(length) if length is not None and not self.chunked else None
        self.keep_alive = headers.get("connection", "").lower() != "close" and (
            self.length is not None or self.chunked)

    async def iter_raw(self) -> AsyncIterator[bytes]:
        conn, timeout = self.conn, self.pool.read_timeout
        try:
            if self.length is not None:
                remaining = self.length
                while remaining > 0:
                    data = await conn.read(timeout)
                    if data is None:
                        raise RawHTTPError(f"peer closed the connection with {remaining} bytes left")
                    if len(data) > remaining:
                        conn.unread(data[remaining:])
                        data = data[:remaining]
                    remaining -= len(data)
                    yield data
            elif self.chunked:
                async for data in self._chunked():
                    yield data
            else:
                while True:
                    data = await conn.read(timeout)
                    if data is None:
                        break
                    yield data
            self._done = True
        except asyncio.CancelledError:
            raise
        except RawHTTPError:
            raise
        except Exception as exc:
            raise RawHTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _line(self) -> bytes:
        buffer = b""
        while True:
            data = await self.conn.read(self.pool.read_timeout)
            if data is None:
                raise RawHTTPError("peer closed the connection inside a chunked body")
            buffer += data
            index = buffer.find(b"\r\n")
            if index >= 0:
                self.conn.unread(buffer[index + 2:])
                return buffer[:index]
            if len(buffer) > MAX_HEAD:
                raise RawHTTPError("chunk header too long")

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            size = int((await self._line()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while await self._line():
                    pass  # trailers
                return
            remaining = size
            while remaining > 0:
                data = await self.conn.read(self.pool.read_timeout)
                if data is None:
                    raise RawHTTPError("peer closed the connection inside a chunk")
                if len(data) > remaining:
                    self.conn.unread(data[remaining:])
                    data = data[:remaining]
                remaining -= len(data)
                yield data
            await self._line()

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_raw()])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._done and self.keep_alive and self.conn.reusable:
            self.pool.release(self.key, self.conn)
        else:
            self.conn.close()


class RawPool:
    """Keep-alive connections per ``(host, port)``."""

    def __init__(self, connect_timeout: float, read_timeout: float, *,
                 headers: Optional[dict[str, str]] = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers = dict(headers or {})  # sent on every request (the peer token)
        self.idle: dict[tuple[str, int], list[_Conn]] = {}

    async def _connect(self, host: str, port: int) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(lambda: _Conn(loop), host, port),
                                             self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RawHTTPError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
        return conn

    def release(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self.idle.setdefault(key, [])
        if len(idle) < MAX_IDLE_PER_PEER:
            idle.append(conn)
        else:
            conn.close()

    async def get(self, host: str, port: int, path: str, headers: dict[str, str]) -> RawResponse:
        """Send ``GET path`` and read the response head; retries once if a pooled connection was stale."""
        key = (host, port)
        shown = f"[{host}]" if ":" in host else host
        lines = [f"GET {path} HTTP/1.1", f"Host: {shown}:{port}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in {**self.headers, **headers}.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        idle = self.idle.get(key, [])
        while idle:
            conn = idle.pop()
            if not conn.reusable:
                conn.close()
                continue
            try:
                return await self._exchange(key, conn, request)
            except _Stale:
                conn.close()
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(host, port)
        try:
            return await self._exchange(key, conn, request)
        except _Stale:
            conn.close()
            raise RawHTTPError(f"{host}:{port} closed the connection without answering") from None
        except BaseException:
            conn.close()
            raise

    async def _exchange(self, key: tuple[str, int], conn: _Conn, request: bytes) -> RawResponse:
        assert conn.transport is not None
        conn.transport.write(request)
        head = bytearray()
        while True:
            data = await conn.read(self.read_timeout)
            if data is None:
                if not head:
                    raise _Stale()
                conn.close()
                raise RawHTTPError("peer closed the connection inside the response head")
            head += data
            index = head.find(b"\r\n\r\n")
            if index >= 0:
                conn.unread(bytes(head[index + 4:]))
                del head[index:]
                break
            if len(head) > MAX_HEAD:
                conn.close()
                raise RawHTTPError("response head too long")
        try:
            text = head.decode("latin-1")
            status_line, *header_lines = text.split("\r\n")
            status = int(status_line.split(" ", 2)[1])
        except (ValueError, IndexError):
            conn.close()
            raise RawHTTPError(f"malformed response head: {bytes(head[:200])!r}") from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return RawResponse(self, key, conn, status, headers)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class _Stale(Exception):
    """A pooled connection was closed by the peer before answering."""
