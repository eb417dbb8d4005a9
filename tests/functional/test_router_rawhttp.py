"""The router's lean HTTP/1.1 client (``server.router.rawhttp``) against real loopback servers.

A small asyncio HTTP/1.1 server (in the test's own event loop, port 0) whose behaviour each
test chooses (close idle connections, answer early, stall, chunked answers), and uvicorn for the
real keep-alive timeout. Every test runs on asyncio and on uvloop, each bounded in time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from contextlib import closing
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import pytest

from mictlanx_sync.server.router import rawhttp
from mictlanx_sync.server.router.rawhttp import RawHTTPError, RawPool, ReplyTooLarge

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
MIB = 1024 * 1024


class Server:
    """An HTTP/1.1 server whose paths select a behaviour; counts connections and bytes received."""

    def __init__(self, *, idle_timeout: float = 30.0, read_delay: float = 0.0,
                 drop_after: Optional[int] = None) -> None:
        self.idle_timeout = idle_timeout  # close a connection idle this long (as uvicorn does after 5 s)
        self.read_delay = read_delay  # pause after every 64 KiB read of a body (a slow reader)
        self.drop_after = drop_after  # after this many answers on a connection, close on the next request
        self.connections = 0
        self.open = 0
        self.closed = asyncio.Event()  # set whenever a connection ends
        self.received = 0  # body bytes received, all requests together
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.got_request = asyncio.Event()
        self.server: Optional[asyncio.AbstractServer] = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        answered = 0
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                self.requests.append((method, target, headers))
                self.got_request.set()
                if self.drop_after is not None and answered >= self.drop_after:
                    return  # the race a keep-alive timeout makes: the request crosses the close
                if not await self._answer(method, target, headers, reader, writer):
                    return
                answered += 1
        except ConnectionError:
            return
        finally:
            self.writers.discard(writer)
            self.tasks.discard(task)
            self.open -= 1
            self.closed.set()
            writer.close()

    async def _body(self, headers: dict[str, str], reader: asyncio.StreamReader) -> tuple[int, str]:
        remaining = int(headers.get("content-length", "0"))
        digest = hashlib.sha256()
        size = 0
        while remaining:
            data = await reader.read(min(remaining, 64 * 1024))
            if not data:
                raise ConnectionError("client closed inside the body")
            digest.update(data)
            size += len(data)
            self.received += len(data)
            remaining -= len(data)
            if self.read_delay:
                await asyncio.sleep(self.read_delay)
        return size, digest.hexdigest()

    async def _answer(self, method: str, target: str, headers: dict[str, str], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        path = target.split("?", 1)[0]
        if path == "/stall":
            await _until_closed(reader)
            return False
        if path == "/early":  # refuse at once, never read the body, close
            body = b'{"detail":{"code":400,"msg":"no"}}'
            writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            return False
        try:
            size, digest = await self._body(headers, reader)
        except ConnectionError:
            return False
        if path == "/chunked":
            parts = [b"a" * 10, b"", b"b" * 70_000, b"c"]
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in parts:
                if part:
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
            writer.write(b"0\r\nX-Trailer: 1\r\n\r\n")
        elif path == "/slowbody":  # half the body, then nothing
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
            await writer.drain()
            await _until_closed(reader)
            return False
        elif path == "/big":
            body = json.dumps({"pad": "x" * 100_000}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif path == "/bigchunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(20):
                writer.write(b"%x\r\n%s\r\n" % (10_000, b"y" * 10_000))
            writer.write(b"0\r\n\r\n")
        else:
            body = json.dumps({"method": method, "target": target, "size": size, "sha256": digest,
                               "headers": headers}, separators=(",", ":")).encode()
            status = b"204 No Content" if path == "/nocontent" else b"200 OK"
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, 0 if path == "/nocontent" else len(body), b"" if path == "/nocontent" else body))
        await writer.drain()
        return True


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Answer nothing; return once the client closed the connection."""
    while await reader.read(65536):
        pass


async def _json(pool: RawPool, method: str, port: int, target: str, body: Any = None, **kwargs: Any) -> Any:
    response = await pool.request(method, HOST, port, target, {"X-Test": "1"}, body, **kwargs)
    try:
        assert response.status == 200, response.status
        return json.loads(await response.aread())
    finally:
        await response.aclose()


async def _pieces(total: int, piece: int, produced: Optional[list[int]] = None,
                  server: Optional[Server] = None) -> AsyncIterator[bytes]:
    """``total`` bytes in pieces; records how far the producer ran ahead of the server."""
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        data = block[:min(piece, total - sent)]
        sent += len(data)
        if produced is not None and server is not None:
            produced.append(sent - server.received)
        yield data


def _expected_sha(total: int, piece: int) -> str:
    digest = hashlib.sha256()
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        data = block[:min(piece, total - sent)]
        digest.update(data)
        sent += len(data)
    return digest.hexdigest()


def test_bytes_body_headers_query_and_keep_alive(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 5.0, headers={"Authorization": "Bearer t"})) as pool:
                payload = json.dumps({"k": "é"}, ensure_ascii=False).encode()
                got = await _json(pool, "POST", server.port, "/api/v4/x?a=1&b=x+y", payload)
                assert got["size"] == len(payload) and got["sha256"] == hashlib.sha256(payload).hexdigest()
                assert got["target"] == "/api/v4/x?a=1&b=x+y"
                assert got["headers"]["authorization"] == "Bearer t" and got["headers"]["x-test"] == "1"
                assert got["headers"]["host"] == f"{HOST}:{server.port}"
                big = b"z" * (3 * MIB + 5)  # more than one write
                assert (await _json(pool, "PUT", server.port, "/p", big))["size"] == len(big)
                empty = await _json(pool, "POST", server.port, "/p")
                assert empty["headers"]["content-length"] == "0"
                assert "content-length" not in (await _json(pool, "GET", server.port, "/p"))["headers"]
                response = await pool.request("DELETE", HOST, server.port, "/nocontent")
                assert response.status == 204 and await response.aread() == b""
                await response.aclose()
                assert server.connections == 1  # one keep-alive connection for everything
                with pytest.raises(RawHTTPError):
                    await pool.request("GET", HOST, server.port, "/p", {"X-Bad": "a\r\nInjected: 1"})

    run(main())


def test_streamed_body_is_flow_controlled(run: Callable[[Awaitable[Any]], Any]) -> None:
    """64 MiB to a slow reader: the producer never runs far ahead of what the server received."""
    total, piece = 64 * MIB, MIB

    async def main() -> None:
        async with Server(read_delay=0.0005) as server:
            pool = RawPool(2.0, 10.0)
            produced: list[int] = []
            try:
                got = await _json(pool, "POST", server.port, "/upload", _pieces(total, piece, produced, server),
                                  length=total)
            finally:
                pool.close()
            assert got["size"] == total and got["sha256"] == _expected_sha(total, piece)
            # one piece in hand + the transport's buffer + the kernel's loopback socket buffers
            assert max(produced) < 24 * MIB, max(produced)

    run(main())


def test_streamed_body_length_mismatch_is_an_error(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                with pytest.raises(RawHTTPError, match="shorter"):
                    await pool.request("POST", HOST, server.port, "/u", None, _pieces(1000, 256), length=2000)
                with pytest.raises(RawHTTPError, match="longer"):
                    await pool.request("POST", HOST, server.port, "/u", None, _pieces(3000, 256), length=2000)
                assert pool.idle.get((HOST, server.port), []) == []

    run(main())


def test_early_answer_stops_the_upload(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                response = await pool.request("POST", HOST, server.port, "/early", None,
                                              _pieces(64 * MIB, MIB), length=64 * MIB)
                assert response.status == 413 and json.loads(await response.aread())["detail"]["code"] == 400
                assert not response.keep_alive
                await response.aclose()
                assert pool.idle.get((HOST, server.port), []) == []

    run(main())


def test_stale_pooled_connection_is_replaced(run: Callable[[Awaitable[Any]], Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer closes a pooled connection as the next request arrives (its keep-alive timeout):
    a bytes request goes once more on a new connection; a connection used moments ago that
    closes means the peer dropped the request: an error, never sent twice."""
    monkeypatch.setattr(rawhttp, "STALE_RESEND_IDLE", 0.2)

    async def main() -> None:
        async with Server(drop_after=1) as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                await asyncio.gather(_json(pool, "GET", server.port, "/a"), _json(pool, "GET", server.port, "/b"))
                assert server.connections == 2 and len(pool.idle[(HOST, server.port)]) == 2
                for i in (1, 2):
                    await asyncio.sleep(0.3)
                    got = await _json(pool, "POST", server.port, f"/r{i}", b"body")
                    assert got["size"] == 4
                    assert len(pool.idle[(HOST, server.port)]) == 1  # the older idle one went too
                assert sorted(t for _, t, _ in server.requests[:2]) == ["/a", "/b"]
                assert [t for _, t, _ in server.requests[2:]] == ["/r1", "/r1", "/r2", "/r2"]
                assert server.connections == 4  # a, b, and a new one for each request dropped
                with pytest.raises(RawHTTPError, match="without answering"):
                    await _json(pool, "POST", server.port, "/r3", b"body")  # just used, then dropped
                assert [t for _, t, _ in server.requests][-1:] == ["/r3"]
                assert pool.idle[(HOST, server.port)] == []

    run(main())


def test_idle_connections_expire_and_closed_ones_are_skipped(run: Callable[[Awaitable[Any]], Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rawhttp, "IDLE_EXPIRY", 0.3)

    async def main() -> None:
        async with Server(idle_timeout=0.2) as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                await _json(pool, "GET", server.port, "/a")
                await asyncio.sleep(0.5)  # the server closed it, and it expired
                await _json(pool, "GET", server.port, "/b")
                assert server.connections == 2
                await _json(pool, "GET", server.port, "/c")
                assert server.connections == 2

    run(main())


def test_streamed_body_never_goes_on_an_old_idle_connection(run: Callable[[Awaitable[Any]], Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rawhttp, "STREAM_IDLE_MAX", 0.2)

    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                await _json(pool, "GET", server.port, "/a")
                await _json(pool, "POST", server.port, "/s1", _pieces(5000, 1024), length=5000)
                assert server.connections == 1  # idle for less than STREAM_IDLE_MAX: reused
                await asyncio.sleep(0.3)
                await _json(pool, "POST", server.port, "/s2", _pieces(5000, 1024), length=5000)
                assert server.connections == 2  # too long idle for a body that cannot be sent again
                await _json(pool, "GET", server.port, "/b")
                assert server.connections == 2  # a bytes request may still use any live one

    run(main())


def test_cancellation_closes_the_connection(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            pool = RawPool(2.0, 30.0)
            key = (HOST, server.port)
            try:
                await _json(pool, "GET", server.port, "/warm")
                # cancelled while waiting for the answer (on the pooled connection)
                task = asyncio.ensure_future(pool.request("GET", HOST, server.port, "/stall"))
                await asyncio.wait_for(_until(lambda: any(t == "/stall" for _, t, _ in server.requests)), 5)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(_until(lambda: server.open == 0), 5)
                assert pool.idle.get(key, []) == []
                # cancelled while reading the body
                response = await pool.request("GET", HOST, server.port, "/slowbody")
                reader = response.iter_raw()
                assert await reader.__anext__() == b"x" * 500

                async def rest() -> None:
                    try:
                        async for _ in reader:
                            pass
                    finally:
                        await response.aclose()

                task = asyncio.ensure_future(rest())
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(_until(lambda: server.open == 0), 5)
                assert pool.idle.get(key, []) == []
                # cancelled in the middle of a streamed upload
                server.read_delay = 0.01
                task = asyncio.ensure_future(pool.request("POST", HOST, server.port, "/u", None,
                                                          _pieces(64 * MIB, MIB), length=64 * MIB))
                await asyncio.wait_for(_until(lambda: server.received > MIB), 5)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(_until(lambda: server.open == 0), 5)
                assert pool.idle.get(key, []) == []
            finally:
                pool.close()

    run(main())


def test_cancellation_racing_the_connect_is_never_lost(run: Callable[[Awaitable[Any]], Any]) -> None:
    """A streamed upload cancelled while its connection is being made ends (cancelled) at once,
    even when the connection completes in the same loop iteration (``asyncio.wait_for`` before
    3.12 swallowed that cancellation and the upload then waited forever for its source)."""

    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 30.0)) as pool:
                for i in range(300):
                    task = asyncio.ensure_future(pool.request("POST", HOST, server.port, "/u", None, never(),
                                                              length=10))
                    for _ in range(i % 4):
                        await asyncio.sleep(0)
                    if i % 8 == 7:
                        await asyncio.sleep(0.0005)
                    task.cancel()
                    done, _ = await asyncio.wait({task}, timeout=2.0)
                    assert done, f"attempt {i}: a cancelled request is still running"
                    assert task.cancelled() or task.exception() is not None
                await asyncio.wait_for(_until(lambda: server.open == 0), 5)
                assert pool.idle.get((HOST, server.port), []) == []

    run(main())


def test_read_and_connect_timeouts(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            pool = RawPool(2.0, 0.3)
            loop = asyncio.get_running_loop()
            try:
                started = loop.time()
                with pytest.raises(RawHTTPError, match="timed out"):
                    await pool.request("GET", HOST, server.port, "/stall")
                assert loop.time() - started < 2.0
                started = loop.time()
                with pytest.raises(RawHTTPError, match="timed out"):  # per-request timeout
                    await pool.request("GET", HOST, server.port, "/stall", timeout=0.1)
                assert loop.time() - started < 1.0
                response = await pool.request("GET", HOST, server.port, "/slowbody")
                with pytest.raises(RawHTTPError, match="timed out"):
                    await response.aread()
                await response.aclose()
                with socket.socket() as sock:  # bound, never listening: refused
                    sock.bind((HOST, 0))
                    with pytest.raises(RawHTTPError, match="cannot connect"):
                        await pool.request("GET", HOST, sock.getsockname()[1], "/")
            finally:
                pool.close()

    run(main())


def test_bounded_json_read_and_chunked_answers(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 5.0)) as pool:
                response = await pool.request("GET", HOST, server.port, "/chunked")
                assert await response.aread() == b"a" * 10 + b"b" * 70_000 + b"c"
                await response.aclose()
                assert len(await _raw(pool, server.port, "/big")) > 100_000
                assert server.connections == 1  # chunked answer read to its end: connection reused
                for path in ("/big", "/bigchunked"):
                    response = await pool.request("GET", HOST, server.port, path)
                    with pytest.raises(ReplyTooLarge):
                        await response.aread(limit=50_000)
                    await response.aclose()
                assert len(await _raw(pool, server.port, "/bigchunked")) == 200_000

    run(main())


async def _raw(pool: RawPool, port: int, path: str) -> bytes:
    response = await pool.request("GET", HOST, port, path)
    try:
        return await response.aread()
    finally:
        await response.aclose()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_uvicorn_keep_alive_timeout(run: Callable[[Awaitable[Any]], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A real uvicorn closing idle connections after 1 s (``timeout_keep_alive``), the client's
    settings scaled as for uvicorn's 5 s default: requests keep working whatever the idle time."""
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(rawhttp, "IDLE_EXPIRY", 0.8)
    monkeypatch.setattr(rawhttp, "STREAM_IDLE_MAX", 0.3)
    monkeypatch.setattr(rawhttp, "STALE_RESEND_IDLE", 0.2)

    async def app(scope: dict, receive: Callable[[], Any], send: Callable[[dict], Any]) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"size": size}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        sock = socket.socket()
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, timeout_keep_alive=1, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        with closing(RawPool(2.0, 5.0)) as pool:
            await asyncio.wait_for(_until(lambda: server.started), 10)
            for delay in (0.0, 1.05, 0.75, 0.98, 0.79, 1.0, 0.5):  # around uvicorn's 1 s close
                await asyncio.sleep(delay)
                assert (await _json(pool, "POST", port, "/x", b"12345"))["size"] == 5
                got = await _json(pool, "POST", port, "/y", _pieces(3 * MIB, MIB), length=3 * MIB)
                assert got["size"] == 3 * MIB
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()

    run(main())


def test_peer_client_exchange_raw_and_httpx(run: Callable[[Awaitable[Any]], Any]) -> None:
    """``PeerClient.exchange``: the same answers through the lean client and through httpx (the
    ``MICTLANX_ROUTER_RAW_WRITES=0`` escape hatch, and https peers)."""
    from mictlanx_sync.server.router.peer_client import PeerClient, PeerError, SourceError, target
    from mictlanx_sync.server.router.peers import PeerEntry

    assert target("/api/v4/b/k.1", {"a": "x y", "after": "k_1"}) == "/api/v4/b/k.1?a=x+y&after=k_1"
    assert target("/api/v4/b/a b") == "/api/v4/b/a%20b"

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 10
        raise RawHTTPError("the holder's stream broke")

    async def main() -> None:
        async with Server() as server:
            client = PeerClient(2.0, 5.0, peer_token="t")
            entry = PeerEntry("p", HOST, server.port, trusted=True)  # a trusted peer gets the token
            try:
                client.raw_reads = False
                assert client.pool(PeerEntry("s", HOST, 1, "https"), read=True) is None
                for raw in (True, False):
                    client.raw_writes = raw
                    assert (client.pool(entry) is not None) is raw
                    answer = await client.exchange(entry, "POST", "/api/v4/x", params={"q": "1"},
                                                   headers={"Task-Id": "t1"}, body=_pieces(3 * MIB, MIB),
                                                   length=3 * MIB)
                    got = json.loads(answer.content)
                    assert answer.status == 200 and got["size"] == 3 * MIB
                    assert got["target"] == "/api/v4/x?q=1" and got["headers"]["task-id"] == "t1"
                    assert got["headers"]["authorization"] == "Bearer t"
                    assert answer.headers["content-type"] == "application/json"
                    with pytest.raises(SourceError, match="broke"):  # the source's fault, not the peer's
                        await client.exchange(entry, "POST", "/x", body=broken(), length=100)
                    with pytest.raises(PeerError) as refused:
                        await client.exchange(PeerEntry("gone", HOST, _free_port()), "GET", "/health")
                    assert refused.value.transport
                client.raw_writes = True
                with pytest.raises(PeerError) as large:
                    await client.exchange(entry, "GET", "/big", limit=1000)
                assert not large.value.transport
            finally:
                await client.aclose()

    run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_router_with_raw_writes_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The escape hatch end to end: R5/R7 (rf=2), R11, R13 with httpx for everything but reads."""
    import requests

    from mictlanx_sync.server.local import LocalVSS
    from mictlanx_sync.server.router.peer_client import PeerClient

    monkeypatch.setenv("MICTLANX_ROUTER_RAW_WRITES", "0")
    calls: list[str] = []
    original = PeerClient._httpx_exchange

    async def counting(client: Any, entry: Any, method: str, url_target: str, *args: Any) -> Any:
        calls.append(f"{method} {url_target}")
        return await original(client, entry, method, url_target, *args)

    monkeypatch.setattr(PeerClient, "_httpx_exchange", counting)
    data = bytes(range(256)) * 5000
    with LocalVSS(peers=2, health_interval=0.3) as vss, requests.Session() as session:
        url = vss.router_urls[0]
        meta = {"key": "k", "size": len(data), "checksum": hashlib.sha256(data).hexdigest(), "replication_factor": 2}
        resp = session.post(f"{url}/api/v4/buckets/hatch/metadata", json=meta, timeout=30)
        assert resp.status_code == 200, resp.text
        group = resp.json()["tasks_ids"][0]
        resp = session.post(f"{url}/api/v4/buckets/data/{group}/chunked", data=data, timeout=30)
        assert resp.status_code == 200 and sorted(resp.json()["peer_ids"]) == sorted(vss.peer_urls), resp.text
        assert session.get(f"{url}/api/v4/buckets/hatch/k", timeout=30).content == data
        resp = session.delete(f"{url}/api/v4/buckets/hatch/k", timeout=30)
        assert resp.status_code == 200 and resp.json()["n_deletes"] == 2, resp.text
    assert any(c.startswith("POST /api/v4/buckets/data/") for c in calls), calls  # P3 through httpx
    assert any(c == "GET /health" for c in calls) and any(c.startswith("DELETE ") for c in calls), calls


# --- review: framing, attribution and input edge cases ------------------------------------------
class _Scripted(Server):
    """A one-behaviour loopback server: ``handler(reader, writer)`` per connection."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
        super().__init__()
        self.handler = handler

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


async def _slow_pieces(count: int, size: int, delay: float) -> AsyncIterator[bytes]:
    for _ in range(count):
        await asyncio.sleep(delay)
        yield b"z" * size


def test_unsolicited_100_continue_does_not_stop_the_upload(run: Callable[[Awaitable[Any]], Any]) -> None:
    """RFC 9110 §15.2: a client must accept 1xx answers it did not ask for. A ``100 Continue``
    sent before the body is read is not an early answer: the upload must go on to the end."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        body = await reader.readexactly(length)
        answer = json.dumps({"size": len(body)}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        await _until_closed(reader)

    async def main() -> None:
        async with _Scripted(handler) as server:
            with closing(RawPool(2.0, 3.0)) as pool:
                response = await asyncio.wait_for(
                    pool.request("POST", HOST, server.port, "/u", None, _slow_pieces(5, 1000, 0.05), length=5000), 10)
                assert response.status == 200
                assert json.loads(await response.aread()) == {"size": 5000}
                await response.aclose()

    run(main())


@pytest.mark.parametrize("head", [
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, Close\r\n\r\n",
], ids=["http10-without-keep-alive", "close-among-other-tokens"])
def test_answer_that_ends_its_connection_is_not_pooled(run: Callable[[Awaitable[Any]], Any], head: bytes) -> None:
    """An HTTP/1.0 answer without ``Connection: keep-alive``, or one whose ``Connection`` lists
    ``close`` among other tokens, ends its connection (RFC 9112 §9.3, §9.6): pooling it makes the
    next request fail on a connection the peer is closing."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"ok")
        await writer.drain()
        await _until_closed(reader)  # closes late: the client must not rely on seeing the FIN first

    async def main() -> None:
        async with _Scripted(handler) as server:
            with closing(RawPool(2.0, 3.0)) as pool:
                response = await pool.request("GET", HOST, server.port, "/")
                assert await response.aread() == b"ok"
                assert not response.keep_alive
                await response.aclose()
                assert pool.idle.get((HOST, server.port), []) == []

    run(main())


@pytest.mark.parametrize("size_line", [b"", b"-5", b"0x5", b"1_0", b"zz"])
def test_malformed_chunk_size_is_an_error(run: Callable[[Awaitable[Any]], Any], size_line: bytes) -> None:
    """A chunk-size line that is not hex digits is a broken answer, never a silent end of body."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n%s\r\nworld\r\n0\r\n\r\n"
                     % size_line)
        await writer.drain()
        await _until_closed(reader)

    async def main() -> None:
        async with _Scripted(handler) as server:
            with closing(RawPool(2.0, 1.0)) as pool:
                response = await pool.request("GET", HOST, server.port, "/")
                try:
                    with pytest.raises(RawHTTPError):
                        await response.aread()
                finally:
                    await response.aclose()

    run(main())


def test_unusable_hostname_is_a_transport_error(run: Callable[[Awaitable[Any]], Any]) -> None:
    """Admin-registered hostnames are only checked for spaces and ``/@?#``: one that cannot be
    encoded (IDNA) must fail as a peer error, not escape as a UnicodeError (a 500)."""
    async def main() -> None:
        with closing(RawPool(2.0, 2.0)) as pool:
            for host in ("例え.invalid", "a" * 64 + ".invalid", "bad..name"):
                with pytest.raises(RawHTTPError):
                    await pool.request("GET", host, _free_port(), "/health")

    run(main())


def test_streamed_body_of_the_wrong_length_is_the_sources_fault(run: Callable[[Awaitable[Any]], Any],
                                                                tmp_path: Any) -> None:
    """A repair source (a holder) yielding fewer or more bytes than the metadata size is not the
    target peer's fault: ``SourceError``, so the caller does not mark the target failed."""
    from mictlanx_sync.server.router.peer_client import PeerClient, SourceError
    from mictlanx_sync.server.router.peers import PeerEntry

    async def main() -> None:
        async with Server() as server:
            client = PeerClient(2.0, 5.0)
            entry = PeerEntry("p", HOST, server.port)
            try:
                for raw in (True, False):
                    client.raw_writes = raw
                    for total in (1000, 3000):
                        with pytest.raises(SourceError):
                            await client.exchange(entry, "POST", "/u", body=_pieces(total, 256), length=2000)
            finally:
                await client.aclose()

    run(main())


def test_cancelled_body_read_closes_the_connection_without_aclose(run: Callable[[Awaitable[Any]], Any]) -> None:
    """A task cancelled inside ``iter_raw`` must not leave the connection open when its caller
    never reaches ``aclose()`` (``read_relay.open_data`` awaits the first piece outside a
    ``finally``): the peer would otherwise hold a half-sent answer forever."""
    async def main() -> None:
        async with Server() as server:
            with closing(RawPool(2.0, 30.0)) as pool:
                response = await pool.request("GET", HOST, server.port, "/slowbody")
                iterator = response.iter_raw()
                assert len(await iterator.__anext__()) == 500
                reading = asyncio.ensure_future(iterator.__anext__())
                await asyncio.sleep(0.1)
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                await asyncio.wait_for(_until(lambda: server.open == 0), 3)

    run(main())
