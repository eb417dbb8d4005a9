"""Issue 12 point 7: a call ends within its deadline however slowly a router answers, and
Ctrl-C or ``close()`` end a transfer within about a second, leaving no ``.part`` file.

``DrippingRouter`` answers R3 at once (an object of one 500 MB chunk) and then sends the
R11 body one byte every ``interval`` seconds: each socket read succeeds, so no read timeout
ever fires. Only a deadline on the call itself can end it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from mictlanx_sync.protocol.errors import ClientClosedError, RequestTimeoutError, ValidationError
from mictlanx_sync.protocol.policies import RetryPolicy

from .client_support import HOST, new_client

pytestmark = pytest.mark.timeout(60)
SIZE = 500 * 1000 * 1000
REPO_ROOT = Path(__file__).resolve().parents[2]


class DrippingRouter:
    """A router whose data answers drip (see the module docstring)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.data_requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"mictlanx://drip@{HOST}:{self.port}/?protocol=http"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    head += piece
                path = head.split(b" ")[1].decode()
                if "/metadata/" in path:
                    key = path.rsplit("/", 1)[1]
                    meta = {"key": key, "size": SIZE, "checksum": "0" * 64, "ball_id": "big", "bucket_id": "b",
                            "tags": {"index": "0", "chunk_size": str(SIZE), "num_chunks": "1", "group_id": "big",
                                     "full_checksum": "0" * 64, "fullname": "big.bin"},
                            "content_type": "application/octet-stream", "producer_id": "", "is_disabled": False}
                    body = json.dumps({"service_time": 0, "peer_id": "p", "local_peer_id": "p",
                                       "metadata": meta}).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    return
                self.data_requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n"
                             b"etag: \"%s\"\r\n\r\n" % (SIZE, b"0" * 64))
                while not self.stop.wait(self.interval):
                    conn.sendall(b"x")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture()
def drip() -> Iterator[DrippingRouter]:
    server = DrippingRouter()
    yield server
    server.close()


def test_get_ends_with_a_typed_error_within_its_deadline(drip: DrippingRouter, tmp_path: Path) -> None:
    policy = RetryPolicy(retries=5, initial_delay=0.5, max_delay=1.0, jitter=False, deadline=3.0)
    with new_client(drip.uri, tmp_path, retry=policy, timeout=(5, 10), capacity_storage="0") as client:
        started = time.monotonic()
        error = client.get("b", "big").unwrap_err()
        elapsed = time.monotonic() - started
    assert type(error) is RequestTimeoutError, repr(error)
    assert "deadline" in error.message
    assert elapsed < 3.0 + 1.0 + 1.0, elapsed  # the deadline, one retry delay, scheduling slack


def test_close_during_a_transfer_returns_within_a_second(drip: DrippingRouter, tmp_path: Path) -> None:
    client = new_client(drip.uri, tmp_path, timeout=(5, 10), capacity_storage="0")
    results: list[Any] = []
    reader = threading.Thread(target=lambda: results.append(client.get_to_file("b", "big", str(tmp_path / "out"))))
    reader.start()
    deadline = time.monotonic() + 10
    while drip.data_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drip.data_requests, "the transfer never started"
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0
    reader.join(5)
    assert not reader.is_alive()
    assert results and results[0].is_err
    error = results[0].unwrap_err()
    assert type(error) is ClientClosedError and "closed" in error.message, repr(error)
    assert isinstance(error, ValidationError) and (error.status_code, error.code) == (1008, 1008)
    assert list((tmp_path / "out").glob("*")) == []  # no .part, no file


_GET_SCRIPT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job inherits SIGINT ignored
from mictlanx_sync import Client
with Client(sys.argv[1], cache_path=sys.argv[3], progress=False, capacity_storage="0") as client:
    print("started", flush=True)
    try:
        client.get_to_file("b", "big", sys.argv[2])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
"""


def test_ctrl_c_during_get_to_file_ends_it_within_a_second(drip: DrippingRouter, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _GET_SCRIPT, drip.uri, str(out), str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 10
        while drip.data_requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drip.data_requests, "the transfer never started"
        time.sleep(0.3)
        assert list(out.glob(".*.part")), "the transfer writes a .part file"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(5)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        stdout, stderr = proc.communicate()
    assert elapsed < 1.0, (elapsed, stderr[-2000:])
    assert "interrupted" in stdout, stderr[-2000:]
    assert list(out.glob("*")) == [], list(out.iterdir())  # no .part left


def test_expired_deadline_stops_retries_and_names_the_operation(tmp_path: Path) -> None:
    """A server that accepts and never answers: the deadline, not the read timeout, ends it."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(16)
        uri = f"mictlanx://s@{HOST}:{silent.getsockname()[1]}/?protocol=http"
        policy = RetryPolicy(retries=10, initial_delay=0.1, max_delay=0.2, jitter=False, deadline=1.5)
        with new_client(uri, tmp_path, retry=policy, timeout=(5, 30), capacity_storage="0") as client:
            started = time.monotonic()
            error = client.get("b", "k").unwrap_err()
            elapsed = time.monotonic() - started
    assert type(error) is RequestTimeoutError and "deadline" in error.message, repr(error)
    assert elapsed < 3.0, elapsed
