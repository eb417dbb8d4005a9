"""The seed's example scripts, each run as a subprocess against ``mictlanx-sync vss``.

One VSS (a router and two peers on ports the OS picks) serves the module; every script
gets the seed's arguments plus ``--uri`` (or ``MICTLANX_URI``), and what it stored is read
back and compared byte for byte.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from mictlanx_sync import Client, MictlanXURI
from tests.support.servers import REPO_ROOT, read_lines_until

EXAMPLES = REPO_ROOT / "examples"
SCRIPT_TIMEOUT = 60


class RunningVSS(NamedTuple):
    uri: str
    peer_uris: list[str]
    proc: subprocess.Popen[str]



def start_vss(data_dir: Path) -> RunningVSS:
    """``mictlanx-sync vss`` on free ports; the URIs come from the lines it prints."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mictlanx_sync", "vss", "--router-port", "0", "--peer-ports", "0,0",
         "--data-dir", str(data_dir), "--health-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = read_lines_until(proc, "press Ctrl-C", timeout=30)
    except BaseException:
        stop_vss(proc)
        raise
    uri = next(line.split(": ", 1)[1] for line in lines if line.startswith("client URI: "))
    peers = [re.fullmatch(r"peer health: http://([^/]+)/health \((\S+)\)", line) for line in lines]
    peer_uris = [f"mictlanx://{m.group(2)}@{m.group(1)}/?protocol=http" for m in peers if m]
    return RunningVSS(uri, peer_uris, proc)


def stop_vss(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def vss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVSS]:
    running = start_vss(tmp_path_factory.mktemp("vss"))
    yield running
    stop_vss(running.proc)


@pytest.fixture()
def client(vss: RunningVSS, tmp_path: Path) -> Iterator[Client]:
    with Client(vss.uri, capacity_storage="0", progress=False) as instance:
        yield instance


def run_example(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``examples/<script>`` with ``args``; the user cache goes under ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MICTLANX_URI", "MICTLANX_PEER_URI")}
    full_env.update(PYTHONPATH=str(REPO_ROOT), XDG_CACHE_HOME=str(cwd / ".cache"), **(env or {}))
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return str(result.stdout)


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.bin"
    path.write_bytes(os.urandom(700_000))
    return path


def test_peer_examples_round_trip_a_file(vss: RunningVSS, tmp_path: Path, data_file: Path) -> None:
    peer_uri = vss.peer_uris[0]
    common = ("--uri", peer_uri)
    stdout = ok(run_example("peer/01_put_metadata.py", *common, "--bucket_id", "ex-peer", "--ball_id", "doc",
                            "--key", "doc", "--path", str(data_file), cwd=tmp_path))
    task_id = stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", task_id), stdout  # only the task id on stdout
    stdout = ok(run_example("peer/02_put_data.py", *common, "--task_id", task_id, "--key", "doc",
                            "--path", str(data_file), cwd=tmp_path))
    assert f"{data_file.stat().st_size} bytes" in stdout
    out = tmp_path / "copy.bin"
    stdout = ok(run_example("peer/03_get.py", *common, "--bucket_id", "ex-peer", "--key", "doc", "--out", str(out),
                            cwd=tmp_path))
    assert out.read_bytes() == data_file.read_bytes()
    assert hashlib.sha256(data_file.read_bytes()).hexdigest() in stdout


def test_peer_examples_default_payload(vss: RunningVSS, tmp_path: Path) -> None:
    env = {"MICTLANX_PEER_URI": vss.peer_uris[1]}  # the environment variable instead of --uri
    task_id = ok(run_example("peer/01_put_metadata.py", "--bucket_id", "ex-peer", "--ball_id", "hello",
                             "--key", "hello", cwd=tmp_path, env=env)).strip()
    ok(run_example("peer/02_put_data.py", "--task_id", task_id, "--key", "hello", cwd=tmp_path, env=env))
    ok(run_example("peer/03_get.py", "--bucket_id", "ex-peer", "--key", "hello", cwd=tmp_path, env=env))
    assert (tmp_path / "hello").read_bytes() == b"Hello from mictlanx-sync, this is hello\n"


def test_peer_put_data_with_other_bytes_fails(vss: RunningVSS, tmp_path: Path, data_file: Path) -> None:
    common = ("--uri", vss.peer_uris[0])
    task_id = ok(run_example("peer/01_put_metadata.py", *common, "--bucket_id", "ex-peer", "--ball_id", "bad",
                             "--key", "bad", "--path", str(data_file), cwd=tmp_path)).strip()
    result = run_example("peer/02_put_data.py", *common, "--task_id", task_id, "--key", "bad", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("put_data failed: IntegrityError"), result.stderr
    result = run_example("peer/03_get.py", *common, "--bucket_id", "ex-peer", "--key", "bad", cwd=tmp_path)
    assert result.returncode == 1 and "NotFoundError" in result.stderr


def test_router_examples_store_replicas(vss: RunningVSS, tmp_path: Path, data_file: Path, client: Client) -> None:
    env = {"MICTLANX_URI": vss.uri}  # the environment variable instead of --uri
    task_id = ok(run_example("router/01_put_metadata.py", "--bucket_id", "ex-router", "--ball_id", "doc",
                             "--key", "doc", "--path", str(data_file), "--rf", "2", cwd=tmp_path, env=env)).strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", task_id)
    stdout = ok(run_example("router/02_put_data.py", "--task_id", task_id, "--key", "doc", "--path", str(data_file),
                            cwd=tmp_path, env=env))
    assert "mictlanx-peer-0" in stdout and "mictlanx-peer-1" in stdout
    got = client.get("ex-router", "doc", chunk_index=-1).unwrap()
    assert got.data.tobytes() == data_file.read_bytes()
    holders = client.routers[0].get_size("ex-router", "doc").unwrap()
    assert sorted(h.peer_id for h in holders) == ["mictlanx-peer-0", "mictlanx-peer-1"]


def test_router_examples_default_payload(vss: RunningVSS, tmp_path: Path, client: Client) -> None:
    common = ("--uri", vss.uri)
    task_id = ok(run_example("router/01_put_metadata.py", *common, "--bucket_id", "ex-router", "--ball_id", "hi",
                             "--key", "hi", cwd=tmp_path)).strip()
    ok(run_example("router/02_put_data.py", *common, "--task_id", task_id, "--key", "hi", cwd=tmp_path))
    got = client.get("ex-router", "hi", chunk_index=-1).unwrap()
    assert got.data.tobytes() == b"Hello from mictlanx-sync, this is hi\n"


def test_client_examples_put_and_get(vss: RunningVSS, tmp_path: Path, data_file: Path, client: Client) -> None:
    common = ("--uri", vss.uri)
    stdout = ok(run_example("client/01_put.py", *common, "--bucket_id", "ex-client", "--ball_id", "report",
                            "--path", str(data_file), "--chunk_size", "128kb", "--tag", "owner=alice",
                            "--tag", "project=demo", "--rf", "2", cwd=tmp_path))
    digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert "PUT OK ex-client/report: 700000 bytes in 6 chunks" in stdout and digest in stdout
    ball = client.get_metadata("ex-client", "report").unwrap()
    tags = ball.chunks[0].tags
    assert tags["owner"] == "alice" and tags["project"] == "demo" and tags["fullname"] == "input.bin"

    stdout = ok(run_example("client/02_get.py", *common, "--bucket_id", "ex-client", "--key", "report",
                            "--chunk_size", "64kb", cwd=tmp_path))
    assert f"GET OK ex-client/report: 700000 bytes, sha256 {digest}" in stdout

    out = tmp_path / "downloads"
    stdout = ok(run_example("client/02_get.py", *common, "--bucket_id", "ex-client", "--key", "report",
                            "--chunk_size", "1MB", "--to_file", "--out", str(out), cwd=tmp_path))
    assert (out / "input.bin").read_bytes() == data_file.read_bytes()  # named after the fullname tag
    ok(run_example("client/02_get.py", *common, "--bucket_id", "ex-client", "--key", "report", "--to_file",
                   "--out", str(out), "--fullname", "renamed.bin", cwd=tmp_path))
    assert (out / "renamed.bin").read_bytes() == data_file.read_bytes()


def test_client_get_missing_is_one_line_error(vss: RunningVSS, tmp_path: Path) -> None:
    result = run_example("client/02_get.py", "--uri", vss.uri, "--bucket_id", "ex-client", "--key", "missing",
                         cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("GET FAILED: NotFoundError") and result.stderr.count("\n") == 1


def test_client_put_bad_tag_is_a_usage_error(vss: RunningVSS, tmp_path: Path, data_file: Path) -> None:
    result = run_example("client/01_put.py", "--uri", vss.uri, "--bucket_id", "ex-client", "--ball_id", "x",
                         "--path", str(data_file), "--tag", "novalue", cwd=tmp_path)
    assert result.returncode == 1 and "--tag expects k=v" in result.stderr


SCRIPTS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_docstring_shows_how_to_run_it(script: str) -> None:
    """Newcomers copy these: each one starts with the command that runs it."""
    docstring = ast.get_docstring(ast.parse((EXAMPLES / script).read_text())) or ""
    assert re.search(rf"(python|flask --app) examples/{re.escape(script)}", docstring), script


def test_example_defaults_are_the_local_vss() -> None:
    defaults = {p.relative_to(EXAMPLES).as_posix(): re.search(r'DEFAULT_URI = "([^"]+)"', p.read_text())
                for p in EXAMPLES.rglob("*.py")}
    for script, match in defaults.items():
        assert match, script
        endpoint = (MictlanXURI.parse_peers if script.startswith("peer/") else MictlanXURI.parse)(match.group(1))[0]
        expected = 24000 if script.startswith("peer/") else 60666
        assert (endpoint.ip_addr, endpoint.port, endpoint.protocol) == ("localhost", expected, "http"), script
        endpoint.close()


def _free_ports(count: int) -> list[int]:
    """Ports the OS just handed out. The deploy scripts take fixed ports, so this one test
    probes (a small race with other programs, reported clearly if lost)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.timeout(120)
def test_deploy_scripts_start_and_stop_a_vss(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("mictlanx-sync")
    if not command.exists():
        pytest.skip("no mictlanx-sync script beside this interpreter")
    router_port, *peer_ports = _free_ports(3)
    env = {**os.environ, "MICTLANX_SYNC": str(command), "MICTLANX_DATA_DIR": str(tmp_path / "data"),
           "MICTLANX_ROUTER_PORT": str(router_port), "MICTLANX_PEER_PORTS": " ".join(map(str, peer_ports))}

    def script(name: str, *args: str) -> str:
        done = subprocess.run(["bash", str(REPO_ROOT / name), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        assert "mictlanx-peer-1 is up" in script("deploy_peer.sh")
        out = script("deploy_router.sh")
        assert f"client URI: mictlanx://mictlanx-router-0@127.0.0.1:{router_port}/" in out
        uri = out.split("client URI: ")[1].strip()
        with Client(uri, capacity_storage="0", progress=False) as client:
            client.put("deploy", "k", b"deployed", rf=2).unwrap()
            assert client.get("deploy", "k").unwrap().data.tobytes() == b"deployed"
    finally:
        script("deploy_router.sh", "stop")
        script("deploy_peer.sh", "stop")
    assert sorted(p.name for p in (tmp_path / "data" / "run").iterdir()) == []
    with MictlanXURI.parse(uri)[0] as router:
        assert router.health(timeout=2).is_err  # stopped
