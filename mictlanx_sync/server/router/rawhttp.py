"""A lean HTTP/1.1 client for every router -> peer request (plain http, or https with a pool
made with an ``ssl_context``: one pool per scheme, see ``Registry.raw_pool``).

httpx moves a body through several layers in 64 KiB reads with a cancel scope per read, and
its connection pool (httpcore 1.0.9) has races under cancellation. This client is one
``asyncio.Protocol`` per connection (:mod:`.rawconn`): received chunks are handed on as is,
reading and writing are flow-controlled (bounded memory), and every wait has a timer.

**Pool.** Keep-alive connections per ``(host, port)``, at most ``MAX_IDLE_PER_PEER`` idle; a
connection is in the pool only while idle: it is taken out before use and put back only once
its response was read to the end. A task cancelled mid-request closes its connection.

**Stale connections.** Peers (uvicorn) close a keep-alive connection after 5 s idle, so idle
connections expire after ``IDLE_EXPIRY``. A request whose body is bytes (or none) is sent once
more, on a new connection, when a pooled one idle for a while closes before any response byte
(see :meth:`RawPool.request`). A streamed body cannot be sent again: it only goes on a
connection idle for less than ``STREAM_IDLE_MAX`` (far from the peer's 5 s), else on a new one.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import AsyncIterable, AsyncIterator, Mapping, Optional, Union

from .rawconn import PeerTLSError, RawConn, RawHTTPError, ReplyTooLarge

__all__ = ["RawHTTPError", "ReplyTooLarge", "PeerTLSError", "RawPool", "RawResponse", "Body"]

MAX_HEAD = 64 * 1024
MAX_IDLE_PER_PEER = 32
IDLE_EXPIRY = 4.0
STREAM_IDLE_MAX = 1.5
STALE_RESEND_IDLE = 1.0  # no peer closes idle connections sooner (uvicorn: 5 s)
READ_LIMIT = 16 * 1024 * 1024  # default bound of aread()
COALESCE = 64 * 1024  # a bytes body up to this size goes out in the same write as the head
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_NO_LENGTH = frozenset({"content-length", "transfer-encoding", "host", "connection"})

Body = Union[None, bytes, AsyncIterable[bytes]]


class RawResponse:
    """Status, lower-case headers and a body iterator; ``aclose()`` returns or drops the connection."""

    def __init__(self, pool: RawPool, key: tuple[str, int], conn: RawConn, status: int,
                 headers: dict[str, str], timeout: float, *, reusable: bool = True, bodyless: bool = False,
                 http10: bool = False) -> None:
        self.pool = pool
        self.key = key
        self.conn = conn
        self.status = status
        self.headers = headers
        self.timeout = timeout
        self._done = False
        self._closed = False
        length = headers.get("content-length")
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            self.length: Optional[int] = 0 if bodyless else (
                int(length) if length is not None and not self.chunked else None)
        except ValueError:
            raise RawHTTPError(f"invalid Content-Length: {length!r}") from None
        if self.length is not None and self.length < 0:
            raise RawHTTPError(f"invalid Content-Length: {length!r}")
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        persistent = "keep-alive" in tokens if http10 else "close" not in tokens
        self.keep_alive = reusable and persistent and (self.length is not None or self.chunked)

    async def iter_raw(self) -> AsyncIterator[bytes]:
        conn, timeout = self.conn, self.timeout
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
        except (asyncio.CancelledError, RawHTTPError):
            self.conn.close()  # a body read half way is never reused; nor left open if aclose() never comes
            raise
        except Exception as exc:
            self.conn.close()
            raise RawHTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _line(self) -> bytes:
        buffer = b""
        while True:
            data = await self.conn.read(self.timeout)
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
            size_field = (await self._line()).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_field):
                raise RawHTTPError(f"malformed chunk size: {size_field[:40]!r}")
            size = int(size_field, 16)
            if size == 0:
                while await self._line():
                    pass  # trailers
                return
            remaining = size
            while remaining > 0:
                data = await self.conn.read(self.timeout)
                if data is None:
                    raise RawHTTPError("peer closed the connection inside a chunk")
                if len(data) > remaining:
                    self.conn.unread(data[remaining:])
                    data = data[:remaining]
                remaining -= len(data)
                yield data
            if await self._line():
                raise RawHTTPError("missing CRLF after a chunk")

    async def aread(self, limit: int = READ_LIMIT) -> bytes:
        """The whole body; ``ReplyTooLarge`` beyond ``limit`` bytes (for JSON answers)."""
        if self.length is not None and self.length > limit:
            raise ReplyTooLarge(f"response body of {self.length} bytes exceeds {limit}")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_raw():
            size += len(chunk)
            if size > limit:
                raise ReplyTooLarge(f"response body exceeds {limit} bytes")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._done and self.keep_alive and self.conn.reusable:
            self.pool.release(self.key, self.conn)
        else:
            self.conn.close()


class RawPool:
    """Keep-alive connections per ``(host, port)``; see the module docstring.

    With ``ssl_context`` every connection is TLS, verified with that context against the
    peer's host name or IP address (the handshake counts towards the connect timeout), and
    a failed handshake is a :class:`PeerTLSError`.
    """

    def __init__(self, connect_timeout: float, read_timeout: float, *,
                 headers: Optional[Mapping[str, str]] = None, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers = dict(headers or {})  # sent on every request (the peer token)
        self.ssl_context = ssl_context
        self.idle: dict[tuple[str, int], list[RawConn]] = {}

    async def _connect(self, host: str, port: int, timeout: float) -> RawConn:
        """A new connection (TLS handshake included) within ``timeout`` seconds.

        Not ``asyncio.wait_for``: before Python 3.12 it swallows a cancellation that arrives as
        the connection completes (it returns the result instead), and a cancelled upload would
        then wait forever for pieces nobody will send.
        """
        loop = asyncio.get_running_loop()
        if self.ssl_context is None:
            opening = loop.create_connection(lambda: RawConn(loop), host, port)
        else:
            opening = loop.create_connection(lambda: RawConn(loop), host, port, ssl=self.ssl_context,
                                             server_hostname=host, ssl_handshake_timeout=timeout)
        task = loop.create_task(opening)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except BaseException:
            _abandon(task)
            raise
        if not done:
            _abandon(task)
            raise RawHTTPError(f"cannot connect to {host}:{port}: timed out after {timeout} s")
        try:
            _, conn = task.result()
        except ssl.SSLCertVerificationError as exc:
            raise PeerTLSError(f"the TLS certificate of {host}:{port} did not verify: {exc.verify_message or exc} "
                               "(is the router's --peer-ca-file the CA of that certificate?)") from None
        except ssl.SSLError as exc:
            raise PeerTLSError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc} "
                               "(does the peer serve https?)") from None
        except (OSError, ValueError, OverflowError) as exc:  # UnicodeError: a hostname IDNA cannot encode
            raise RawHTTPError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
        return conn

    def release(self, key: tuple[str, int], conn: RawConn) -> None:
        now = conn.loop.time()
        idle = self.idle.setdefault(key, [])
        while idle and (now - idle[0].idle_since > IDLE_EXPIRY or not idle[0].reusable):
            idle.pop(0).close()  # the oldest first: sorted by idle_since
        if len(idle) < MAX_IDLE_PER_PEER:
            conn.idle_since = now
            idle.append(conn)
        else:
            conn.close()

    def _take(self, key: tuple[str, int], max_age: float) -> Optional[RawConn]:
        """The most recently used idle connection if idle for less than ``max_age`` seconds."""
        idle = self.idle.get(key)
        if not idle:
            return None
        now = idle[-1].loop.time()
        while idle:
            conn = idle[-1]
            age = now - conn.idle_since
            if not conn.reusable or age > IDLE_EXPIRY:
                idle.pop().close()
                continue
            if age > max_age:
                return None  # the youngest is too old; the others are older still
            return idle.pop()
        return None

    def _discard(self, key: tuple[str, int]) -> None:
        for conn in self.idle.pop(key, []):
            conn.close()

    def _head(self, method: str, host: str, port: int, target: str, headers: Optional[Mapping[str, str]],
              length: Optional[int]) -> bytes:
        if ":" in host:
            shown = f"[{host}]"
        else:
            try:
                shown = host if host.isascii() else host.encode("idna").decode("ascii")
            except UnicodeError:
                raise RawHTTPError(f"invalid peer hostname: {host!r}") from None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {shown}:{port}", "Accept-Encoding: identity"]
        merged = {**self.headers, **headers} if headers else self.headers
        for name, value in merged.items():
            if name.lower() in _NO_LENGTH:
                continue
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise RawHTTPError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def get(self, host: str, port: int, path: str, headers: Mapping[str, str]) -> RawResponse:
        """``GET path``: the response head read, the body still to read (then ``aclose()``)."""
        return await self.request("GET", host, port, path, headers)

    async def request(self, method: str, host: str, port: int, target: str,
                      headers: Optional[Mapping[str, str]] = None, body: Body = None, *,
                      length: Optional[int] = None, timeout: Optional[float] = None) -> RawResponse:
        """Send one request and read the response head; the body is read from the answer.

        ``target`` is the path and query, already quoted. ``body`` is None, bytes, or an async
        iterable of bytes sending exactly ``length`` bytes (``RawHTTPError`` otherwise).
        ``timeout`` replaces both the connect and the read timeout of the pool.

        A bytes body (or none) is sent once more, on a new connection, when a pooled connection
        idle for at least ``STALE_RESEND_IDLE`` closes before any response byte: the peer's
        keep-alive timeout closed it as the request went out. For a non-idempotent POST (R5
        phase 1) this is what browsers and urllib3 do with stale pooled connections; the peer
        never saw the request. A connection closed sooner after its last use (or a new one)
        means the peer dropped *this* request: that is an error, never a resend.
        """
        key = (host, port)
        read_timeout = self.read_timeout if timeout is None else timeout
        streamed = body is not None and not isinstance(body, (bytes, bytearray, memoryview))
        if streamed:
            if length is None:
                raise ValueError("a streamed body needs its length")
        else:
            assert not isinstance(body, AsyncIterable)
            length = len(body) if body is not None else (0 if method in ("POST", "PUT", "PATCH") else None)
        head = self._head(method, host, port, target, headers, length)
        conn = self._take(key, STREAM_IDLE_MAX if streamed else IDLE_EXPIRY)
        if conn is not None and not streamed:
            resend = conn.loop.time() - conn.idle_since >= STALE_RESEND_IDLE
            try:
                return await self._exchange(key, conn, head, body, None, read_timeout, method)
            except _Stale:
                conn.close()
                if not resend:
                    raise RawHTTPError(f"{host}:{port} closed the connection without answering") from None
                self._discard(key)  # older still than one the peer timed out
            except BaseException:
                conn.close()
                raise
            conn = None
        if conn is None:
            conn = await self._connect(host, port, self.connect_timeout if timeout is None else timeout)
        try:
            return await self._exchange(key, conn, head, body, length, read_timeout, method)
        except _Stale:
            conn.close()
            raise RawHTTPError(f"{host}:{port} closed the connection without answering") from None
        except BaseException:
            conn.close()
            raise

    async def _exchange(self, key: tuple[str, int], conn: RawConn, head: bytes, body: Body,
                        length: Optional[int], timeout: float, method: str) -> RawResponse:
        complete = True
        if body is None:
            conn.write(head)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) <= COALESCE:
                conn.write(head + bytes(body))
            else:
                conn.write(head)
                conn.write(bytes(body))
                await conn.drain(timeout)
        else:
            conn.write(head)
            assert length is not None
            complete = await _send_stream(conn, body, length, timeout)
        while True:
            status, headers, http10 = await self._read_head(conn, timeout)
            if not 100 <= status < 200 or status == 101:
                break  # 1xx interim answers (100 Continue) are skipped
        bodyless = status in (204, 304) or method == "HEAD"
        return RawResponse(self, key, conn, status, headers, timeout, reusable=complete, bodyless=bodyless,
                           http10=http10)

    async def _read_head(self, conn: RawConn, timeout: float) -> tuple[int, dict[str, str], bool]:
        head = bytearray()
        while True:
            data = await conn.read(timeout)
            if data is None:
                if not head:
                    raise _Stale()
                raise RawHTTPError("peer closed the connection inside the response head")
            head += data
            index = head.find(b"\r\n\r\n")
            if index >= 0:
                conn.unread(bytes(head[index + 4:]))
                del head[index:]
                break
            if len(head) > MAX_HEAD:
                raise RawHTTPError("response head too long")
        try:
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            version, status_text = status_line.split(" ", 2)[:2]
            status = int(status_text)
        except (ValueError, IndexError):
            raise RawHTTPError(f"malformed response head: {bytes(head[:200])!r}") from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, version == "HTTP/1.0"

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


async def _send_stream(conn: RawConn, body: AsyncIterable[bytes], length: int, timeout: float) -> bool:
    """Write ``body`` with flow control; False if the peer answered (or closed) before the end.

    Waiting for the next piece of ``body`` has no timer here: the source bounds its own waits.
    """
    sent = 0
    async for piece in body:
        if not piece:
            continue
        sent += len(piece)
        if sent > length:
            raise RawHTTPError(f"upload body longer than its Content-Length {length}")
        if conn.answered:
            return False
        conn.write(piece)
        if conn.write_paused:
            await conn.drain(timeout)
    if sent != length:
        raise RawHTTPError(f"upload body of {sent} bytes, shorter than its Content-Length {length}")
    return True


def _abandon(task: asyncio.Task[tuple[asyncio.BaseTransport, RawConn]]) -> None:
    """Cancel a connection attempt; close the connection if it was made all the same."""
    def closer(done: asyncio.Task[tuple[asyncio.BaseTransport, RawConn]]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result()[1].close()

    task.cancel()
    task.add_done_callback(closer)


class _Stale(Exception):
    """A pooled connection was closed by the peer before answering."""
