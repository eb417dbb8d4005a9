"""Reading a chunk body straight into the sink (``DataStream`` + ``ChunkFetcher._consume``).

A raw socket server sends exactly the bytes each test scripts, framing errors included:
bodies longer or shorter than ``Content-Length`` are refused, the bytes hashed are the
bytes in the buffer, and a body read to its end hands its connection back to the pool.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Any, Iterator, Optional

import pytest

from mictlanx_sync.client.chunk_fetch import ChunkFetcher, Fetched, _Expect
from mictlanx_sync.client.read_options import ReadOptions
from mictlanx_sync.client.sinks import BufferChunkSink, ChunkSink, FileChunkSink
from mictlanx_sync.protocol.errors import IntegrityError, RequestTimeoutError, UpstreamProtocolError
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.stream import DataStream
from mictlanx_sync.protocol.transport import Transport

pytestmark = pytest.mark.timeout(30)


class Script:
    """One scripted answer: raw bytes, then close the connection or keep it; or stall."""

    def __init__(self, raw: bytes, close: bool = False, stall: bool = False) -> None:
        self.raw, self.close, self.stall = raw, close, stall


class RawServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.scripts: list[Script] = []
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffered:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buffered += got
                buffered = buffered.split(b"\r\n\r\n", 1)[1]
                script = self.scripts.pop(0)
                conn.sendall(script.raw)
                if script.stall:
                    self._stop.wait(10)
                    return
                if script.close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/data"

    def close(self) -> None:
        self._stop.set()
        for conn in self._conns:
            conn.close()
        self.sock.close()


@pytest.fixture()
def server() -> Iterator[RawServer]:
    instance = RawServer()
    yield instance
    instance.close()


def answer(body: bytes, length: Optional[int] = None, etag: Optional[str] = None, chunked: bool = False,
           extra_headers: str = "") -> bytes:
    etag = etag or hashlib.sha256(body).hexdigest()
    head = f"HTTP/1.1 200 OK\r\nETag: \"{etag}\"\r\nPeer-Id: p0\r\n{extra_headers}"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        framed = b"".join(b"%x\r\n%s\r\n" % (min(7000, len(body) - i), body[i:i + 7000])
                          for i in range(0, len(body), 7000)) + b"0\r\n\r\n"
        return head.encode() + b"\r\n" + framed
    return head.encode() + b"\r\n" + body


def options(piece: int = 64 * 1024) -> ReadOptions:
    return ReadOptions(policy=RetryPolicy(retries=1), timeout=(2.0, 0.5), piece_size=piece, headers={},
                       max_parallel=1)


def consume(transport: Transport, url: str, size: int, sink: Optional[ChunkSink] = None,
            piece: int = 64 * 1024) -> tuple[Fetched, bytearray]:
    buffer = bytearray(size)
    target = sink if sink is not None else BufferChunkSink(memoryview(buffer))
    with open_stream(transport, url) as stream:
        got = ChunkFetcher._consume(stream, options(piece), _Expect(target, size, False, None), {"key": "k"})
    return got, buffer


def open_stream(transport: Transport, url: str) -> DataStream:
    opened = transport.open_stream("GET", "", absolute_url=url, timeout=(2.0, 0.5),
                                   headers={"Accept-Encoding": "identity"})
    return opened.unwrap()


def test_exact_bodies_land_in_place_and_reuse_the_connection(server: RawServer) -> None:
    bodies = [os.urandom(300_000), os.urandom(1), b"", os.urandom(70_000)]
    server.scripts = [Script(answer(b, len(b))) for b in bodies]
    with Transport(server.url()) as session:
        for body in bodies:
            got, buffer = consume(session, server.url(), len(body))
            assert bytes(buffer) == body and got.checksum == hashlib.sha256(body).hexdigest()
            assert got.size == len(body) and got.peer_id == "p0"
    assert server.connections == 1  # every body read to its end gave its connection back


def test_bodies_go_from_the_socket_into_the_callers_memory(server: RawServer) -> None:
    server.scripts = [Script(answer(b"abc", 3))]
    with Transport(server.url()) as session, open_stream(session, server.url()) as stream:
        assert stream.zero_copy
        view = memoryview(bytearray(10))
        assert stream.readinto(view) == 3 and bytes(view[:3]) == b"abc"
        assert stream.readinto(view) == 0


def test_body_longer_than_content_length_is_refused(server: RawServer) -> None:
    """Chunked framing with a Content-Length (RFC 7230 forbids it): http.client follows the
    chunks, which run past the announced length."""
    body = os.urandom(20_000)
    server.scripts = [Script(answer(body + b"more", len(body), etag=hashlib.sha256(body).hexdigest(), chunked=True))]
    with Transport(server.url()) as session, pytest.raises(UpstreamProtocolError, match="more than the announced"):
        consume(session, server.url(), len(body))


@pytest.mark.parametrize("chunked", [False, True])
def test_body_shorter_than_content_length_is_refused(server: RawServer, chunked: bool) -> None:
    body = os.urandom(20_000)
    raw = answer(body[:-100], len(body), etag=hashlib.sha256(body).hexdigest(), chunked=chunked)
    server.scripts = [Script(raw, close=True)]
    with Transport(server.url()) as session, pytest.raises(UpstreamProtocolError, match="short body"):
        consume(session, server.url(), len(body))


def test_same_length_other_bytes_is_an_integrity_error(server: RawServer) -> None:
    body = os.urandom(20_000)
    server.scripts = [Script(answer(body, len(body), etag=hashlib.sha256(b"other").hexdigest()))]
    with Transport(server.url()) as session, pytest.raises(IntegrityError):
        consume(session, server.url(), len(body))


def test_encoded_body_is_refused(server: RawServer) -> None:
    server.scripts = [Script(answer(b"abc", 3, extra_headers="Content-Encoding: gzip\r\n"))]
    with Transport(server.url()) as session, pytest.raises(UpstreamProtocolError, match="Content-Encoding"):
        consume(session, server.url(), 3)


def test_stall_in_the_body_is_a_timeout(server: RawServer) -> None:
    body = os.urandom(50_000)
    head = answer(body, len(body))
    server.scripts = [Script(head[:len(head) - 30_000], stall=True)]
    with Transport(server.url()) as session, pytest.raises(RequestTimeoutError):
        consume(session, server.url(), len(body))


def test_file_sink_with_a_small_staging_buffer(server: RawServer, tmp_path: Any) -> None:
    body = os.urandom(300_001)
    server.scripts = [Script(answer(body, len(body)))]
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        with Transport(server.url()) as session:
            got, _ = consume(session, server.url(), len(body), FileChunkSink(fd, 7, piece=65536), piece=1 << 20)
        assert got.checksum == hashlib.sha256(body).hexdigest()
        assert os.pread(fd, len(body) + 7, 0)[7:] == body
    finally:
        os.close(fd)


def test_without_direct_access_urllib3_reads_serve(server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    body = os.urandom(100_000)
    server.scripts = [Script(answer(body, len(body)))]
    original = DataStream.__init__

    def no_direct(self: DataStream, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._socket = None

    monkeypatch.setattr(DataStream, "__init__", no_direct)
    with Transport(server.url()) as session:
        got, buffer = consume(session, server.url(), len(body))
    assert bytes(buffer) == body and got.checksum == hashlib.sha256(body).hexdigest()
