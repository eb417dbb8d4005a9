"""``Peer`` under threads, ``fork``, an exhausted pool, timeouts, refused connections and bad answers."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from mictlanx_sync.protocol.errors import (
    ConnectFailedError,
    IntegrityError,
    RequestTimeoutError,
    ResponseFormatError,
    UpstreamProtocolError,
)
from mictlanx_sync.protocol.peer import Peer
from tests.support.servers import ServerProcess, start_peer

PEER_ID = "mictlanx-peer-0"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_peer(tmp_path_factory.mktemp("peer"), PEER_ID)
    yield srv
    srv.stop()


@pytest.fixture
def peer(server: ServerProcess) -> Iterator[Peer]:
    with Peer(PEER_ID, "127.0.0.1", server.port) as p:
        yield p


def test_eight_threads_share_one_peer(peer: Peer) -> None:
    """8 threads write and read back 200 balls through one ``Peer``; every checksum matches."""
    rng = random.Random(7)
    payloads = {f"t-{i}": rng.randbytes(rng.randint(0, 200_000)) for i in range(200)}

    def roundtrip(key: str) -> str:
        data = payloads[key]
        meta = peer.put_metadata(key, len(data), sha(data), "thr", "a/b", key, "b-threads").unwrap()
        if key.endswith("0"):
            peer.put_data(meta.task_id, key, data, "a/b").unwrap()
        else:
            peer.put_chunked(meta.task_id, data).unwrap()
        assert peer.get_metadata("b-threads", key).unwrap().metadata.checksum == sha(data)
        with peer.get_streaming("b-threads", key).unwrap() as resp:
            return sha(resp.content)

    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(payloads, pool.map(roundtrip, payloads), strict=True))
    assert results == {k: sha(v) for k, v in payloads.items()}
    assert peer.get_balls_len().unwrap() >= 200


def test_fork_child_uses_the_parents_peer(peer: Peer) -> None:
    data = b"before fork"
    meta = peer.put_metadata("fork-k", len(data), sha(data), "me", "a/b", "fork-k", "b-fork").unwrap()
    peer.put_chunked(meta.task_id, data).unwrap()
    parent_session = peer._transport.session()  # a pooled connection exists now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            with peer.get_streaming("b-fork", "fork-k").unwrap() as resp:
                ok = resp.content == data
            child = b"from child"
            m = peer.put_metadata("fork-child", len(child), sha(child), "me", "a/b", "fork-child", "b-fork").unwrap()
            ok = ok and peer.put_chunked(m.task_id, child).is_ok
            ok = ok and peer._transport.session() is not parent_session
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert peer._transport.session() is parent_session
    with peer.get_streaming("b-fork", "fork-child").unwrap() as resp:
        assert resp.content == b"from child"


def test_exhausted_pool_is_a_timeout_never_a_hang(server: ServerProcess) -> None:
    data = b"x" * 1000
    with Peer(PEER_ID, "127.0.0.1", server.port, pool_maxsize=1, timeout=(0.5, 10)) as p:
        meta = p.put_metadata("pool-k", len(data), sha(data), "me", "a/b", "pool-k", "b-pool").unwrap()
        p.put_chunked(meta.task_id, data).unwrap()
        held = p.get_streaming("b-pool", "pool-k").unwrap()  # holds the only connection
        try:
            started = time.monotonic()
            err = p.get_size("b-pool", "pool-k").unwrap_err()
            assert isinstance(err, RequestTimeoutError)
            assert time.monotonic() - started < 5
        finally:
            held.close()
        assert p.get_size("b-pool", "pool-k").unwrap().size == 1000


def test_read_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with Peer("silent", "127.0.0.1", port, timeout=(1, 0.3)) as p:
            started = time.monotonic()
            err = p.health(timeout=0.3).unwrap_err()
            assert isinstance(err, RequestTimeoutError) and err.code == 1004
            assert isinstance(p.get_size("b", "k", timeout=(1, 0.3)).unwrap_err(), RequestTimeoutError)
            assert time.monotonic() - started < 5


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with Peer("gone", "127.0.0.1", port, timeout=(1, 1)) as p:
            err = p.get_metadata("b", "k").unwrap_err()
    assert isinstance(err, ConnectFailedError) and (err.bucket_id, err.key) == ("b", "k")
    assert err.__cause__ is not None


def test_close_and_reuse(server: ServerProcess) -> None:
    p = Peer(PEER_ID, "127.0.0.1", server.port)
    assert p.health().is_ok
    p.close()
    p.close()  # idempotent
    assert p.health().is_ok  # a later call opens a new session
    p.close()


class _Faulty(BaseHTTPRequestHandler):
    """P5 answers with a wrong ETag (``/b/bad-etag``), a short body (``/b/short``) or a non-JSON P4."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = b"0123456789"
        self.send_response(200)
        if self.path.endswith("/bad-etag"):
            self.send_header("ETag", f'"{sha(b"something else")}"')
            self.send_header("Content-Length", str(len(body)))
        elif self.path.endswith("/short"):
            self.send_header("ETag", f'"{sha(body)}"')
            self.send_header("Content-Length", str(len(body) + 5))
            self.send_header("Connection", "close")
        else:
            body = b"<html>oops</html>"
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.path.endswith("/short"):
            self.close_connection = True


@pytest.fixture
def faulty() -> Iterator[Peer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Peer("faulty", "127.0.0.1", server.server_address[1], timeout=(1, 5)) as p:
            yield p
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_get_to_file_checks_etag_and_length(faulty: Peer, tmp_path) -> None:
    bad = faulty.get_to_file("b", "bad-etag", sink_folder_path=str(tmp_path)).unwrap_err()
    assert isinstance(bad, IntegrityError) and (bad.bucket_id, bad.key) == ("b", "bad-etag")
    short = faulty.get_to_file("b", "short", sink_folder_path=str(tmp_path)).unwrap_err()
    assert isinstance(short, UpstreamProtocolError)
    assert os.listdir(tmp_path) == []  # no partial or temporary files
    not_json = faulty.get_metadata("b", "k").unwrap_err()
    assert isinstance(not_json, ResponseFormatError) and (not_json.bucket_id, not_json.key) == ("b", "k")
