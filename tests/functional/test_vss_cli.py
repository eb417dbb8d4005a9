"""``mictlanx-sync vss`` (protocol §7): one router and N peers in the foreground."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync.protocol.uri import parse
from tests.support.servers import REPO_ROOT, read_lines_until


def launch(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "mictlanx_sync", "vss", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)



@pytest.fixture()
def vss_proc(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = launch("--router-port", "0", "--peer-ports", "0,0,0", "--peers", "3", "--data-dir", str(tmp_path))
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def test_vss_runs_and_stops_on_sigterm(vss_proc: subprocess.Popen[str], tmp_path: Path) -> None:
    lines = read_lines_until(vss_proc, "press Ctrl-C")
    uri = next(line.split(": ", 1)[1] for line in lines if line.startswith("client URI: "))
    (router,) = parse(uri, default_protocol="http")
    assert router.id == "mictlanx-router-0" and router.protocol == "http"
    health_urls = [line.split(": ", 1)[1].split(" ")[0] for line in lines if "health: " in line]
    assert len(health_urls) == 4
    assert health_urls[0] == f"http://127.0.0.1:{router.port}/health"
    assert requests.get(health_urls[0], timeout=5).json() == {"status": "ok", "available_peers": 3}
    for url in health_urls[1:]:
        assert requests.get(url, timeout=5).json()["status"] == "ok"
    assert (tmp_path / "mictlanx-peer-2").is_dir()
    vss_proc.send_signal(signal.SIGTERM)
    assert vss_proc.wait(20) == 0
    for url in health_urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = launch("--router-port", str(port), "--peer-ports", "0,0", "--data-dir", str(tmp_path))
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert str(port) in lines[0] and "mictlanx-sync vss" in lines[0]


def test_bad_peer_ports(tmp_path: Path) -> None:
    proc = launch("--peers", "3", "--peer-ports", "0,0", "--data-dir", str(tmp_path))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--peer-ports" in stderr
