"""Issue 12: connection-level limits of both servers (``mictlanx_sync.server.limits``).

Each test starts a real server process with small limits (environment variables) and
plays the hostile client: an endless header or URL, a thousand idle sockets against a
1,024-descriptor limit, an upload that sends one byte and waits.
"""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.timeout(120)
MIB = 1024 * 1024
LIMITS = {"MICTLANX_HEADER_TIMEOUT": "3", "MICTLANX_IDLE_TIMEOUT": "3", "MICTLANX_BODY_IDLE_TIMEOUT": "2"}


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


@pytest.fixture()
def peer(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("peer", ["--peer-id", "p0", "--data-dir", str(tmp_path / "p0"), "--no-fsync",
                                    "--capacity", "1MB"], env=LIMITS, nofile=1024)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def router(tmp_path: Path) -> Iterator[ServerProcess]:
    # The router takes its limits from the command line (the peer, from the environment).
    server = ServerProcess("router", ["--router-id", "r0", "--data-dir", str(tmp_path / "r0"), "--header-timeout",
                                      "3", "--idle-timeout", "3", "--body-idle-timeout", "2",
                                      "--max-header-bytes", "32768"])
    server.start()
    yield server
    server.stop()


def flood(url: str, head: bytes, filler: bytes, total: int) -> tuple[int, Optional[bytes]]:
    """Send ``head`` then ``filler`` up to ``total`` bytes; stop when the server answers or
    closes. Returns the bytes sent and what the server answered (None if it just closed)."""
    sent = 0
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.settimeout(0.0)
        try:
            sock.sendall(head)
            sent += len(head)
            while sent < total:
                try:
                    answer = sock.recv(4096)
                    return sent, answer or None
                except BlockingIOError:
                    pass
                try:
                    sent += sock.send(filler)
                except BlockingIOError:
                    time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(5)
        try:
            return sent, sock.recv(4096) or None
        except OSError:
            return sent, None


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Read until the server closes the connection (True) or ``timeout`` passes (False)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # reset: closed too
    return True


@pytest.mark.parametrize("where", ["header", "url"])
@pytest.mark.parametrize("kind", ["peer", "router"])
def test_endless_header_or_url_is_refused_early(request: pytest.FixtureRequest, kind: str, where: str) -> None:
    server: ServerProcess = request.getfixturevalue(kind)
    before = server.rss_bytes()
    if where == "header":
        head, filler = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536
    else:
        head, filler = b"GET /health?q=", b"a" * 65536
    sent, answer = flood(server.url, head, filler, 100 * MIB)
    # Refused within the first MiB (plus what the socket buffers held when it noticed).
    assert sent < 8 * MIB, sent
    assert answer is None or answer.startswith(b"HTTP/1.1 431"), answer
    assert server.rss_bytes() - before < 16 * MIB
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 200


def test_many_headers_are_refused(peer: ServerProcess) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n"
    sent, answer = flood(peer.url, head, b"", len(head))
    assert answer is not None and answer.startswith(b"HTTP/1.1 431"), answer


def test_idle_and_half_sent_connections_cannot_starve_health(peer: ServerProcess) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip("this test needs 4,096 descriptors of its own")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    sockets: list[socket.socket] = []
    worst = 0.0
    try:
        for i in range(1100):
            sock = socket.create_connection(_address(peer.url), timeout=5)
            if i % 2:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half: ")  # never finished
            sockets.append(sock)
            if i % 100 == 99:
                started = time.monotonic()
                assert requests.get(f"{peer.url}/health", timeout=2).status_code == 200
                worst = max(worst, time.monotonic() - started)
        assert worst < 2.0
        # Every idle or half-sent socket is closed by the server within its timeout (3 s).
        deadline = time.monotonic() + 10
        open_ones = sockets
        while open_ones and time.monotonic() < deadline:
            time.sleep(0.5)
            still = []
            for sock in open_ones:
                sock.settimeout(0.0)
                try:
                    if sock.recv(4096) == b"":
                        continue
                except BlockingIOError:
                    still.append(sock)
                    continue
                except OSError:
                    continue
            open_ones = still
        assert not open_ones, f"{len(open_ones)} connections still open after the idle timeout"
    finally:
        for sock in sockets:
            sock.close()
    assert requests.get(f"{peer.url}/health", timeout=2).status_code == 200


def test_stalled_upload_releases_its_reservation(peer: ServerProcess) -> None:
    data = os.urandom(900_000)  # most of the peer's 1 MB capacity
    checksum = hashlib.sha256(data).hexdigest()
    body = {"key": "stall", "size": len(data), "checksum": checksum}
    first = requests.post(f"{peer.url}/api/v4/buckets/b/metadata", json=body, timeout=5)
    assert first.status_code == 201, first.text
    task = first.json()["task_id"]
    with socket.create_connection(_address(peer.url), timeout=10) as sock:
        sock.sendall(f"POST /api/v4/buckets/data/{task}/chunked HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:1])
        other = {"key": "later", "size": len(data), "checksum": checksum}
        assert requests.post(f"{peer.url}/api/v4/buckets/b/metadata", json=other, timeout=5).status_code == 507
        # The body stalls: within the body-idle timeout (2 s) the peer closes the upload
        # and releases its reservation, so the next put fits.
        deadline = time.monotonic() + 8
        while True:
            later = requests.post(f"{peer.url}/api/v4/buckets/b/metadata", json=other, timeout=5)
            if later.status_code == 201:
                break
            assert later.status_code == 507, later.text
            assert time.monotonic() < deadline, "the stalled upload still holds its reservation"
            time.sleep(0.25)
        assert closed_by_server(sock, 5.0), "the stalled upload's connection is still open"
    task2 = later.json()["task_id"]
    stored = requests.post(f"{peer.url}/api/v4/buckets/data/{task2}/chunked", data=data, timeout=10)
    assert stored.status_code in (200, 201), stored.text
