"""benchmarks/netdelay.py, the delaying TCP relay the TLS benchmark emulates a round trip with:
real sockets on free loopback ports; the delay is checked from below exactly and from above
with a generous bound (a loaded machine schedules late, never early)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from benchmarks.netdelay import Relay

ROOT = Path(__file__).resolve().parents[2]
#: how late a delivery may be on a busy 2-core machine before the test calls it wrong
LATE = 0.5


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], tuple[str, int]]]:
    """``server(handler)``: a listening socket on a free port whose every connection is handled by
    ``handler(conn)`` in a thread; returns the address."""
    listeners: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> tuple[str, int]:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.settimeout(10)
                threading.Thread(target=handler, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return listener.getsockname()[:2]

    yield start
    for listener in listeners:
        listener.close()


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def client(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def wait_closed(relay: Relay) -> dict:
    deadline = time.monotonic() + 5
    while (stats := relay.stats())["open"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return stats


def test_a_round_trip_takes_two_delays_and_the_first_one_pays_the_tcp_handshake_too(server):
    delay = 0.02
    with Relay(server(echo), delay) as relay:
        started = time.monotonic()
        with client(relay.address) as sock:
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            first = time.monotonic() - started
            later = []
            for _ in range(3):
                started = time.monotonic()
                sock.sendall(b"again")
                assert sock.recv(16) == b"again"
                later.append(time.monotonic() - started)
        # SYN round trip + the request's round trip: 4 one-way delays; then 2 per exchange
        assert 4 * delay <= first < 4 * delay + LATE
        assert all(2 * delay <= t < 2 * delay + LATE for t in later), later
        stats = wait_closed(relay)
    assert stats["connections"] == 1 and stats["open"] == 0
    assert stats["bytes_up"] == stats["bytes_down"] == 4 + 3 * 5


def test_bytes_pass_intact_both_ways_and_both_ends_see_the_close(server):
    size = 3 << 20
    upward, downward = os.urandom(size), os.urandom(size)
    seen: dict[str, bytes] = {}

    def handler(conn: socket.socket) -> None:  # sends its own bytes while it reads the client's
        with conn:
            sender = threading.Thread(target=conn.sendall, args=(downward,))
            sender.start()
            received = bytearray()
            while data := conn.recv(1 << 16):
                received += data
            seen["server"] = bytes(received)  # read up to the client's end of stream
            sender.join(10)

    with Relay(server(handler), 0.001) as relay:
        with client(relay.address) as sock:
            received = bytearray()

            def read() -> None:
                while data := sock.recv(1 << 16):
                    received.extend(data)

            reader = threading.Thread(target=read)
            reader.start()
            sock.sendall(upward)
            sock.shutdown(socket.SHUT_WR)
            reader.join(20)
            assert not reader.is_alive()  # the server's close reached the client
        stats = wait_closed(relay)
    assert hashlib.sha256(seen["server"]).digest() == hashlib.sha256(upward).digest()
    assert hashlib.sha256(received).digest() == hashlib.sha256(downward).digest()
    assert stats["open"] == 0 and stats["bytes_up"] == stats["bytes_down"] == size


def test_a_target_that_refuses_closes_the_client():
    with socket.socket() as probe:  # a free port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        target = probe.getsockname()[:2]
    with Relay(target, 0.005) as relay:
        with client(relay.address) as sock:
            sock.sendall(b"hello")
            try:
                assert sock.recv(16) == b""
            except ConnectionResetError:
                pass
        stats = wait_closed(relay)
    assert stats["failed_connects"] == 1 and stats["open"] == 0


def test_the_command_relays_and_reports_on_sigterm(server):
    target = server(echo)
    command = [sys.executable, "-m", "benchmarks.netdelay", "--target", f"{target[0]}:{target[1]}",
               "--delay-ms", "5"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True) as relay:
        try:
            line = relay.stdout.readline()  # type: ignore[union-attr]
            assert line.startswith("listening 127.0.0.1:")
            host, port = line.split()[1].rsplit(":", 1)
            started = time.monotonic()
            with client((host, int(port))) as sock:
                sock.sendall(b"x" * 1000)
                got = b""
                while len(got) < 1000:
                    got += sock.recv(4096)
                elapsed = time.monotonic() - started
            assert got == b"x" * 1000 and 0.02 <= elapsed < 0.02 + LATE
            relay.send_signal(signal.SIGTERM)
            out, _ = relay.communicate(timeout=10)
        finally:
            if relay.poll() is None:
                relay.kill()
    assert relay.returncode == 0
    stats = json.loads(out.strip().splitlines()[-1].removeprefix("stats "))
    assert stats["connections"] == 1 and stats["rtt_ms"] == 10 and stats["bytes_up"] == 1000
