"""TLS end to end (docs/tls.md): ``LocalVSS(tls=True)``, servers started with ``--ssl-certfile``,
a router reaching https peers with ``--peer-ca-file``, and what fails, cleanly, without the
right trust or with the wrong scheme. Real servers on loopback, free ports, bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.cli import main
from mictlanx_sync.protocol.errors import ConnectFailedError, TLSVerificationError
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.result import Err
from mictlanx_sync.protocol.uri import parse
from mictlanx_sync.server.local import LocalVSS
from mictlanx_sync.server.tls import ServerTLS, make_self_signed
from tests.functional.conftest import RouterAPI
from tests.support.servers import REPO_ROOT, ServerProcess, read_lines_until

pytestmark = pytest.mark.timeout(60)

BUCKET = "tls"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=2, tls=True, health_interval=0.3) as vss:
        yield vss


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerTLS:
    return make_self_signed(tmp_path_factory.mktemp("certificate"))


@pytest.fixture(scope="module")
def tls_peers(certificate: ServerTLS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two peer processes serving HTTPS with ``certificate``."""
    data = tmp_path_factory.mktemp("peers")
    peers = []
    try:
        for index in range(2):
            peer = ServerProcess("peer", ["--peer-id", f"p{index}", "--data-dir", str(data / f"p{index}"), "--no-fsync",
                                          "--ssl-certfile", certificate.certfile,
                                          "--ssl-keyfile", str(certificate.keyfile)])
            peer.verify = certificate.certfile
            peers.append(peer.start())
        yield peers
    finally:
        for peer in peers:
            peer.stop()


def _peers_uri(peers: list[ServerProcess], protocol: str) -> str:
    specs = ",".join(f"p{index}@127.0.0.1:{peer.port}" for index, peer in enumerate(peers))
    return f"mictlanx://{specs}/?protocol={protocol}"


def _start_router(tmp_path: Path, *args: str) -> ServerProcess:
    router = ServerProcess("router", ["--data-dir", str(tmp_path / "router"), "--health-interval", "0.3", *args])
    router.stderr_path = tmp_path / "router.stderr"
    return router.start()


def _wait_available(url: str, expected: int, verify: Any = True, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = requests.get(f"{url}/health", timeout=2, verify=verify).json()["available_peers"]
        if seen == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} reports {seen} available peers, expected {expected}")


# --- LocalVSS(tls=True) -------------------------------------------------------------------
def test_local_vss_serves_https_everywhere(tls_vss: LocalVSS) -> None:
    assert "protocol=https" in tls_vss.uri
    assert tls_vss.ca_file is not None and Path(tls_vss.ca_file).is_file()
    assert all(url.startswith("https://") for url in [*tls_vss.router_urls, *tls_vss.peer_urls.values()])
    health = requests.get(f"{tls_vss.router_urls[0]}/health", timeout=5, verify=tls_vss.ca_file).json()
    assert health == {"status": "ok", "available_peers": 2}  # the router's TLS health checks succeed


def test_put_get_round_trip_small_and_multi_chunk(tls_vss: LocalVSS) -> None:
    small, large = os.urandom(1024), os.urandom(3 * MIB + 123)
    with Client(tls_vss.uri, verify=tls_vss.ca_file, capacity_storage="0", progress=False) as client:
        client.put(BUCKET, "small", small).unwrap()
        client.put(BUCKET, "large", large, chunk_size="512KB", rf=2).unwrap()  # 7 chunks, on both peers
        assert bytes(client.get(BUCKET, "small").unwrap().data) == small
        assert bytes(client.get(BUCKET, "large", chunk_size="256KB").unwrap().data) == large
        for key in ("small", "large"):
            client.delete(key, BUCKET).unwrap()


def test_client_without_verify_refuses_the_server_at_once(tls_vss: LocalVSS) -> None:
    """The default RetryPolicy (5 attempts, ~4 s of backoff) does not retry a certificate that
    does not verify, and the breaker does not count it: the same error comes back every time."""
    with Client(tls_vss.uri, capacity_storage="0", progress=False) as client:
        for _ in range(3):
            started = time.monotonic()
            result = client.get(BUCKET, "anything")
            elapsed = time.monotonic() - started
            assert elapsed < 1.0, f"took {elapsed:.2f} s: retried?"
            assert isinstance(result, Err)
            error = result.error
            assert type(error) is TLSVerificationError and isinstance(error, ConnectFailedError)
            assert error.message.startswith("get tls/anything: the TLS certificate of 127.0.0.1:")
            assert "did not verify (self-signed certificate)" in error.message
            assert "verify=" in error.message  # says what to do
            assert "Traceback" not in error.message and "Max retries" not in error.message
        started = time.monotonic()
        written = client.put(BUCKET, "anything", b"x")
        assert time.monotonic() - started < 1.0
        assert isinstance(written, Err) and type(written.error) is TLSVerificationError


def test_plain_http_to_a_tls_port_fails_cleanly(tls_vss: LocalVSS) -> None:
    https_url = tls_vss.router_urls[0]
    port = int(https_url.rsplit(":", 1)[1])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/")  # never an answer in the clear; the connection is closed
    plain_uri = tls_vss.uri.replace("protocol=https", "protocol=http")
    with Client(plain_uri, capacity_storage="0", progress=False, retry=RetryPolicy(retries=1)) as client:
        result = client.get(BUCKET, "anything")
    assert isinstance(result, Err) and isinstance(result.error, ConnectFailedError)
    # and the server is unharmed
    assert requests.get(f"{https_url}/health", timeout=5, verify=tls_vss.ca_file).json()["available_peers"] == 2


def test_client_commands_take_a_ca_file(tls_vss: LocalVSS, capsys: pytest.CaptureFixture[str]) -> None:
    assert tls_vss.ca_file is not None
    assert main(["health", "--uri", tls_vss.uri, "--ca-file", tls_vss.ca_file, "--retries", "1"]) == 0
    capsys.readouterr()
    assert main(["health", "--uri", tls_vss.uri, "--retries", "1"]) == 1
    captured = capsys.readouterr()  # the report on stdout, the verdict on stderr
    assert "TLSVerificationError" in captured.out and "did not verify" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_vss_command_with_tls_prints_its_ca_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "mictlanx_sync", "vss", "--tls", "--peers", "1", "--router-port", "0",
               "--peer-ports", "0", "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = read_lines_until(proc, "press Ctrl-C")
        uri = next(line.split(": ", 1)[1] for line in lines if line.startswith("client URI: "))
        ca_file = next(line.split(": ", 1)[1].split(" ")[0] for line in lines if line.startswith("CA file: "))
        (router,) = parse(uri)
        assert router.protocol == "https"
        health = requests.get(f"https://127.0.0.1:{router.port}/health", timeout=5, verify=ca_file).json()
        assert health == {"status": "ok", "available_peers": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


# --- router -> https peers (processes, CLI options) ---------------------------------------------
def test_router_reaches_https_peers_with_its_peer_ca_file(tls_peers: list[ServerProcess], certificate: ServerTLS,
                                                        tmp_path: Path) -> None:
    router = _start_router(tmp_path, "--peers", _peers_uri(tls_peers, "https"),
                           "--peer-ca-file", certificate.certfile)
    try:
        _wait_available(router.url, 2)
        api = RouterAPI(router.url, {})
        try:
            data = os.urandom(200_000)
            api.put(BUCKET, "via-router", data, rf=2)
            got = api("GET", f"/api/v4/buckets/{BUCKET}/via-router")
            assert got.status_code == 200 and got.content == data
            assert api("DELETE", f"/api/v4/buckets/{BUCKET}/via-router").status_code in (200, 204)
        finally:
            api.close()
        tls_peers[1].kill()  # health checks over TLS notice a peer going and coming back
        _wait_available(router.url, 1)
        tls_peers[1].restart()
        _wait_available(router.url, 2)
    finally:
        router.stop()


def test_router_without_the_peer_ca_says_why_tls_peers_are_unavailable(tls_peers: list[ServerProcess],
                                                                       tmp_path: Path) -> None:
    router = _start_router(tmp_path, "--peers", _peers_uri(tls_peers, "https"))  # system CAs only
    try:
        time.sleep(1.0)  # three health rounds
        _wait_available(router.url, 0, timeout=1)
    finally:
        router.stop()
    log = (tmp_path / "router.stderr").read_text()
    assert "did not verify" in log and "--peer-ca-file" in log
    assert log.count("peer p0:") == 1  # each failure is logged once, not every round


def test_router_speaking_plain_http_to_tls_peers_marks_them_unavailable(tls_peers: list[ServerProcess],
                                                                        tmp_path: Path) -> None:
    router = _start_router(tmp_path, "--peers", _peers_uri(tls_peers, "http"))
    try:
        time.sleep(1.0)
        _wait_available(router.url, 0, timeout=1)
    finally:
        router.stop()


# --- handshakes: bounded in time, counted against the connection cap ---------------------------------
HANDSHAKE_TIMEOUT = 1.0
#: the server's own guard (HANDSHAKE_GRACE) plus scheduling slack on a shared machine
CLOSE_BOUND = HANDSHAKE_TIMEOUT + 2.0


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _silent_clients_are_closed(url: str, verify: str, count: int, cap: int) -> None:
    """``count`` clients connect and send nothing (every other one the first byte of a TLS
    record): the server closes each within the handshake timeout, those over ``cap`` at once,
    and answers a TLS ``/health`` meanwhile."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    clients: list[tuple[socket.socket, float]] = []
    worst = 0.0
    try:
        for index in range(count):
            sock = socket.create_connection((host, int(port)), timeout=5)
            if index % 2:
                sock.sendall(b"\x16")
            clients.append((sock, time.monotonic()))
            if index % 10 == 9:
                started = time.monotonic()
                assert requests.get(f"{url}/health", timeout=2, verify=verify).status_code == 200
                worst = max(worst, time.monotonic() - started)
        assert worst < 2.0, f"/health took {worst:.2f} s"
        closed_after: list[float] = []
        pending = clients
        deadline = time.monotonic() + CLOSE_BOUND + 2.0
        while pending and time.monotonic() < deadline:
            still = []
            for sock, connected in pending:
                sock.settimeout(0.0)
                try:
                    if sock.recv(64) != b"":
                        raise AssertionError("the server sent bytes to a client that never said hello")
                except BlockingIOError:
                    still.append((sock, connected))
                    continue
                except OSError:  # reset: closed too
                    pass
                closed_after.append(time.monotonic() - connected)
            pending = still
            time.sleep(0.02)
        assert not pending, f"{len(pending)} silent connections still open after {CLOSE_BOUND + 2.0:g} s"
        assert max(closed_after) < CLOSE_BOUND, f"closed after {max(closed_after):.2f} s"
        # Over the cap, a new connection evicts the oldest handshake: most close long before the timeout.
        assert sum(1 for after in closed_after if after < HANDSHAKE_TIMEOUT * 0.8) >= count - cap - 10
    finally:
        for sock, _connected in clients:
            sock.close()
    assert requests.get(f"{url}/health", timeout=2, verify=verify).status_code == 200


def test_tls_peer_bounds_handshakes_and_counts_them_against_the_cap(certificate: ServerTLS,
                                                                    tmp_path: Path) -> None:
    """The process servers (uvloop): --ssl-handshake-timeout and --max-connections."""
    peer = ServerProcess("peer", ["--peer-id", "p0", "--data-dir", str(tmp_path / "p0"), "--no-fsync",
                                  "--ssl-certfile", certificate.certfile, "--ssl-keyfile", str(certificate.keyfile),
                                  "--ssl-handshake-timeout", str(HANDSHAKE_TIMEOUT), "--max-connections", "24"])
    peer.verify = certificate.certfile
    peer.start()
    try:
        # Every fresh handshake completes, also when the ClientHello reaches the server before
        # its TLS protocol is in place (uvloop reads at once).
        with requests.Session() as pooled:
            for _ in range(60):
                assert requests.get(f"{peer.url}/health", timeout=5, verify=certificate.certfile).status_code == 200
                assert pooled.get(f"{peer.url}/health", timeout=5, verify=certificate.certfile).status_code == 200
        _silent_clients_are_closed(peer.url, certificate.certfile, 80, 24)
    finally:
        peer.stop()


def test_threaded_tls_server_bounds_handshakes_too(certificate: ServerTLS, monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalVSS's thread mode (asyncio's own loop), limits from the environment."""
    from mictlanx_sync.server.serving import ThreadedServer

    monkeypatch.setenv("MICTLANX_SSL_HANDSHAKE_TIMEOUT", str(HANDSHAKE_TIMEOUT))
    monkeypatch.setenv("MICTLANX_MAX_CONNECTIONS", "12")
    server = ThreadedServer(_ok_app, tls=certificate).start()
    try:
        for _ in range(30):
            assert requests.get(f"{server.url}/health", timeout=5, verify=certificate.certfile).content == b"ok"
        _silent_clients_are_closed(server.url, certificate.certfile, 40, 12)
    finally:
        server.stop()


# --- start-up errors ----------------------------------------------------------------------------
def _run_server(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "mictlanx_sync", *argv, "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("argv, words", [
    (("peer", "--ssl-certfile", "/nonexistent/cert.pem"), "TLS file not found"),
    (("peer", "--ssl-keyfile", "/nonexistent/key.pem"), "--ssl-keyfile needs --ssl-certfile"),
    (("router", "--ssl-certfile", "/nonexistent/cert.pem"), "TLS file not found"),
    (("router", "--peer-ca-file", "/nonexistent/ca.pem"), "peer CA file not found"),
])
def test_unusable_tls_files_fail_at_start_in_one_line(argv: tuple[str, ...], words: str, tmp_path: Path) -> None:
    completed = _run_server(*argv, "--data-dir", str(tmp_path / "data"))
    assert completed.returncode != 0
    assert words in completed.stderr and "Traceback" not in completed.stderr
    assert "listening on" not in completed.stdout


def test_a_key_that_does_not_match_the_certificate_fails_at_start(certificate: ServerTLS, tmp_path: Path) -> None:
    other = make_self_signed(tmp_path / "other")
    completed = _run_server("peer", "--ssl-certfile", certificate.certfile, "--ssl-keyfile", str(other.keyfile),
                            "--data-dir", str(tmp_path / "data"))
    assert completed.returncode != 0
    assert "cannot load the TLS certificate" in completed.stderr and "Traceback" not in completed.stderr
