"""Body size limits enforced before bodies are read, and loopback-only default binding."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync.cli import build_parser
from mictlanx_sync.server.local import LocalVSS

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=1, health_interval=0.2) as instance:
        yield instance


def raw_exchange(url: str, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes, float]:
    """Send ``head`` (+ ``body``) on a fresh socket; the status, the response bytes, and the seconds it took.

    The response is read until the server closes the connection or sends a complete JSON body.
    """
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = [line for line in data[:head_end].split(b"\r\n") if line.lower().startswith(b"content-length")]
                if length and len(data) - head_end - 4 >= int(length[0].split(b":")[1]):
                    break
    return int(data.split(b" ", 2)[1]), data, time.monotonic() - started


def closes(data: bytes) -> bool:
    return b"connection: close" in data.lower()


@pytest.mark.parametrize("target", ["peer", "router"])
def test_json_body_over_1mib_refused_from_content_length_alone(vss: LocalVSS, target: str) -> None:
    url = vss.router_urls[0] if target == "router" else vss.peer_urls["mictlanx-peer-0"]
    # Claims 1 GiB but sends nothing: the answer must come without waiting for the body.
    head = (f"POST /api/v4/buckets/b/metadata HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {1024 * MIB}\r\n\r\n")
    status, data, elapsed = raw_exchange(url, head)
    assert status == 413 and elapsed < 5
    assert b'"code": 400' in data or b'"code":400' in data
    assert closes(data)


@pytest.mark.parametrize("target", ["peer", "router"])
def test_chunked_json_body_stops_at_the_limit(vss: LocalVSS, target: str) -> None:
    url = vss.router_urls[0] if target == "router" else vss.peer_urls["mictlanx-peer-0"]
    piece = b"x" * (256 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(4 * 64):  # 64 MiB offered, far beyond the 1 MiB limit
            yield piece

    try:
        resp = requests.post(f"{url}/api/v4/buckets/b/metadata", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=20)
    except requests.ConnectionError:
        return  # the server answered 413 and closed while we were still sending: it stopped reading
    assert resp.status_code == 413 and resp.json()["detail"]["code"] == 400


def test_json_body_at_the_limit_is_parsed(vss: LocalVSS) -> None:
    body = json.dumps({"key": "k", "size": 1, "checksum": "0" * 64, "tags": {"pad": "x" * (MIB - 200)}})
    assert len(body) <= MIB
    resp = requests.post(f"{vss.router_urls[0]}/api/v4/buckets/b/metadata", data=body,
                         headers={"Content-Type": "application/json"}, timeout=20)
    assert resp.status_code == 413 and "tags" in resp.json()["detail"]["msg"]  # the tag limit (64 KiB), not the body


def _phase1(url: str, size: int, router: bool) -> tuple[str, str]:
    checksum = hashlib.sha256(b"a" * size).hexdigest()
    body = {"key": f"k{time.monotonic_ns()}", "size": size, "checksum": checksum}
    resp = requests.post(f"{url}/api/v4/buckets/lim/metadata", json=body, timeout=10)
    assert resp.status_code in (200, 201), resp.text
    task = resp.json()["tasks_ids"][0] if router else resp.json()["task_id"]
    return task, body["key"]


@pytest.mark.parametrize("target", ["peer", "router"])
def test_phase2_content_length_above_size_fails_at_once(vss: LocalVSS, target: str) -> None:
    router = target == "router"
    url = vss.router_urls[0] if router else vss.peer_urls["mictlanx-peer-0"]
    task, key = _phase1(url, 1000, router)
    head = (f"POST /api/v4/buckets/data/{task}/chunked HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {4 * 1024 * MIB}\r\n\r\n")
    status, data, elapsed = raw_exchange(url, head, b"a" * 1000)  # 4 GiB declared, 1000 bytes sent
    assert status == 400 and elapsed < 5 and closes(data)
    detail = json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"]
    assert detail["code"] == 501 and detail["expected_size"] == 1000 and detail["received_size"] == 4 * 1024 * MIB
    peer = vss.peer_urls["mictlanx-peer-0"]
    assert requests.get(f"{peer}/api/v4/buckets/lim/metadata/{key}", timeout=10).status_code == 404
    # the task (or group) is gone: phase 2 cannot be retried on it
    retry = requests.post(f"{url}/api/v4/buckets/data/{task}/chunked", data=b"a" * 1000, timeout=10)
    assert retry.status_code == 404


@pytest.mark.parametrize("target", ["peer", "router"])
def test_phase2_short_content_length_is_drained_and_typed(vss: LocalVSS, target: str) -> None:
    router = target == "router"
    url = vss.router_urls[0] if router else vss.peer_urls["mictlanx-peer-0"]
    task, _ = _phase1(url, 5000, router)
    resp = requests.post(f"{url}/api/v4/buckets/data/{task}/chunked", data=b"a" * 4000, timeout=10)
    assert resp.status_code == 400 and resp.json()["detail"]["code"] == 501
    assert "connection" not in {k.lower() for k in resp.headers} or resp.headers["Connection"] != "close"


@pytest.mark.parametrize("target", ["peer", "router"])
def test_multipart_content_length_beyond_framing_fails_at_once(vss: LocalVSS, target: str) -> None:
    router = target == "router"
    url = vss.router_urls[0] if router else vss.peer_urls["mictlanx-peer-0"]
    task, _ = _phase1(url, 100, router)
    head = (f"POST /api/v4/buckets/data/{task} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {100 + 64 * 1024 + 1}\r\n\r\n")
    # the server drains up to size + 64 KiB (all we send), then answers and closes
    status, data, elapsed = raw_exchange(url, head, b"--B\r\n" + b"x" * (100 + 64 * 1024 - 5))
    assert status == 400 and elapsed < 5 and closes(data)
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"]["code"] == 501


# --- binding ------------------------------------------------------------------------------------------------
def test_defaults_bind_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MICTLANX_PEER_HOST", "MICTLANX_ROUTER_HOST"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    assert parser.parse_args(["peer"]).host == "127.0.0.1"
    assert parser.parse_args(["router"]).host == "127.0.0.1"
    assert parser.parse_args(["vss"]).host == "127.0.0.1"
    assert LocalVSS().host == "127.0.0.1"


def test_server_process_without_host_listens_on_loopback_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_HOST")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-m", "mictlanx_sync", "peer", "--port", "0", "--no-fsync",
                             "--data-dir", str(tmp_path / "p")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        listening = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        local = [row[1] for row in listening if row[3] == "0A" and int(row[1].split(":")[1], 16) == port]
        assert local == [f"0100007F:{port:04X}"]  # 127.0.0.1 only, not 0.0.0.0
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
