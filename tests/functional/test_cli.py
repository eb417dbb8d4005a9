"""``mictlanx-sync put|get|ls|stat|rm|rm-bucket|peers|health`` against a real local VSS.

Most tests call ``cli.main`` in-process (fast); a few run the installed entry point as a
subprocess. Every command is checked for its human output, its ``--json`` document and
an error path: one line on stderr, never a traceback, a non-zero exit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import pytest

from mictlanx_sync import Client
from mictlanx_sync.cli import main
from mictlanx_sync.server.local import LocalVSS
from mictlanx_sync.tools.client_cli import DEFAULT_URI
from tests.support.servers import REPO_ROOT


class Run(NamedTuple):
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error_line(self) -> str:
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files land in tmp_path, the chunk cache too; no URI from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    monkeypatch.delenv("MICTLANX_URI", raising=False)


@pytest.fixture()
def cli(vss: LocalVSS, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli("put", "f", "-b", "x")`` runs ``mictlanx-sync`` on the test's VSS."""

    def invoke(*argv: str, uri: str | None = vss.uri) -> Run:
        capsys.readouterr()
        code = main([*argv, *(["--uri", uri] if uri else [])])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return invoke


@pytest.fixture()
def dead_uri() -> Iterator[str]:
    """A router URI whose port is bound but not listening: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"mictlanx://dead@127.0.0.1:{sock.getsockname()[1]}/?protocol=http"


@pytest.fixture()
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(os.urandom(300_000))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put(cli: Callable[..., Run], payload: Path, bucket: str, vss: LocalVSS) -> None:
    run = cli("put", str(payload), "-b", bucket, "--chunk-size", "100kb", "--rf", "2", "--tag", "owner=alice")
    assert run.code == 0, run.err
    assert run.out.strip() == f"put {payload} -> {bucket}/photo.jpg (300000 bytes, 3 chunks, rf=2)"
    with Client(vss.uri, capacity_storage="0", progress=False) as client:
        assert client.get(bucket, "photo.jpg").unwrap().data.tobytes() == payload.read_bytes()
        assert client.get_metadata(bucket, "photo.jpg").unwrap().chunks[0].tags["owner"] == "alice"
        holders = client.routers[0].get_size(bucket, "photo.jpg_0").unwrap()
        assert len(holders) == 2

    run = cli("put", str(payload), "-b", bucket, "--key", "other", "--json")
    assert run.code == 0 and run.err == ""
    doc = run.json()
    assert doc["bucket_id"] == bucket and doc["key"] == "other" and doc["size"] == 300_000
    assert doc["checksum"] == sha256(payload.read_bytes()) and doc["chunks"] == 1 and doc["fullname"] == "photo.jpg"


def test_put_errors(cli: Callable[..., Run], payload: Path, bucket: str, tmp_path: Path) -> None:
    run = cli("put", str(tmp_path / "missing.bin"), "-b", bucket)
    assert run.code == 1 and run.out == ""
    assert run.error_line().startswith("mictlanx-sync put: FileNotFoundError: no such file")

    assert cli("put", str(payload), "-b", bucket, "--key", "k").code == 0
    other = tmp_path / "other.bin"
    other.write_bytes(b"different content")
    run = cli("put", str(other), "-b", bucket, "--key", "k")  # other content under the same key
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync put: AlreadyExistsError: ")
    run = cli("put", str(other), "-b", bucket, "--key", "k", "--json")
    doc = json.loads(run.error_line())
    assert run.code == 1 and doc["error"] == "AlreadyExistsError" and doc["status_code"] == 409
    assert cli("put", str(other), "-b", bucket, "--key", "k", "--update").code == 0

    run = cli("put", str(payload), "-b", bucket, "--tag", "no-equals-sign")
    assert run.code == 2 and "--tag expects K=V" in run.error_line()
    run = cli("put", str(payload), "-b", "bad/bucket")
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync put: ValidationError: invalid bucket_id")


def test_get(cli: Callable[..., Run], payload: Path, bucket: str, tmp_path: Path) -> None:
    assert cli("put", str(payload), "-b", bucket, "--chunk-size", "64kb").code == 0
    run = cli("get", "photo.jpg", "-b", bucket)  # into the current directory, named after the fullname tag
    assert run.code == 0, run.err
    assert (tmp_path / "photo.jpg").samefile(run.out.split(" -> ")[1].split(" (")[0])

    (tmp_path / "dl").mkdir()
    run = cli("get", "photo.jpg", "-b", bucket, "-o", str(tmp_path / "dl"), "--json")
    doc = run.json()
    assert doc == {"bucket_id": bucket, "key": "photo.jpg", "path": str(tmp_path / "dl" / "photo.jpg"),
                   "size": 300_000}
    run = cli("get", "photo.jpg", "-b", bucket, "-o", str(tmp_path / "new" / "copy.bin"))
    assert run.code == 0 and (tmp_path / "new" / "copy.bin").read_bytes() == payload.read_bytes()


def test_get_errors(cli: Callable[..., Run], payload: Path, bucket: str, tmp_path: Path) -> None:
    run = cli("get", "missing", "-b", bucket)
    assert run.code == 1 and run.out == ""
    assert run.error_line().startswith("mictlanx-sync get: NotFoundError: ")
    doc = json.loads(cli("get", "missing", "-b", bucket, "--json").error_line())
    assert doc["command"] == "get" and doc["error"] == "NotFoundError" and doc["status_code"] == 404

    assert cli("put", str(payload), "-b", bucket, "--key", "k").code == 0
    target = tmp_path / "taken.bin"
    target.write_bytes(b"something else")
    run = cli("get", "k", "-b", bucket, "-o", str(target))  # never clobbers other content silently
    assert run.code == 1 and "AlreadyExistsError" in run.error_line()
    assert target.read_bytes() == b"something else"
    assert cli("get", "k", "-b", bucket, "-o", str(target), "--overwrite").code == 0
    assert target.read_bytes() == payload.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_ls(cli: Callable[..., Run], payload: Path, bucket: str) -> None:
    for key in ("b-key", "a-key"):
        assert cli("put", str(payload), "-b", bucket, "--key", key, "--chunk-size", "128kb").code == 0
    run = cli("ls", bucket)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert [line.split() for line in lines[:2]] == [["300000", "3", "a-key"], ["300000", "3", "b-key"]]
    assert lines[2] == f"2 objects, 600000 bytes in {bucket}"
    doc = cli("ls", "-b", bucket, "--json").json()  # the bucket as an option works too
    assert doc["bucket_id"] == bucket and doc["size"] == 600_000
    assert [(o["key"], o["chunks"], o["checksum"]) for o in doc["objects"]] == [
        ("a-key", 3, sha256(payload.read_bytes())), ("b-key", 3, sha256(payload.read_bytes()))]
    assert cli("ls", bucket + "-empty", "--json").json()["objects"] == []


def test_ls_errors(cli: Callable[..., Run], dead_uri: str) -> None:
    run = cli("ls", "bad..bucket")
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync ls: ValidationError: ")
    run = cli("ls", "b", "--retries", "1", uri=dead_uri)
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync ls: ConnectFailedError: ")


def test_stat(cli: Callable[..., Run], payload: Path, bucket: str) -> None:
    assert cli("put", str(payload), "-b", bucket, "--chunk-size", "256kb", "--tag", "owner=bob").code == 0
    run = cli("stat", "photo.jpg", "-b", bucket)
    assert run.code == 0, run.err
    assert f"key:          {bucket}/photo.jpg" in run.out and "size:         300000 bytes" in run.out
    assert f"sha256:       {sha256(payload.read_bytes())}" in run.out and "chunks:       2" in run.out
    assert "tag:          owner=bob" in run.out and "full_checksum" not in run.out
    doc = cli("stat", "photo.jpg", "-b", bucket, "--json").json()
    assert doc["tags"] == {"extension": "jpg", "fullname": "photo.jpg", "owner": "bob"}
    assert [c["key"] for c in doc["chunk_keys"]] == ["photo.jpg_0", "photo.jpg_1"]
    assert [c["size"] for c in doc["chunk_keys"]] == [256_000, 44_000]


def test_stat_errors(cli: Callable[..., Run], bucket: str) -> None:
    run = cli("stat", "missing", "-b", bucket)
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync stat: NotFoundError: ")
    assert json.loads(cli("stat", "missing", "-b", bucket, "--json").error_line())["code"] == 404


def test_rm(cli: Callable[..., Run], payload: Path, bucket: str) -> None:
    assert cli("put", str(payload), "-b", bucket, "--chunk-size", "100kb", "--rf", "2").code == 0
    run = cli("rm", "photo.jpg", "-b", bucket)
    assert run.code == 0 and run.out.strip() == f"removed {bucket}/photo.jpg (6 chunk copies)"
    assert cli("stat", "photo.jpg", "-b", bucket).code == 1

    assert cli("put", str(payload), "-b", bucket, "--key", "k").code == 0
    assert cli("rm", "k", "-b", bucket, "--json").json() == {"bucket_id": bucket, "key": "k", "n_deletes": 1,
                                                             "pending_peers": []}


def test_rm_errors(cli: Callable[..., Run], bucket: str) -> None:
    run = cli("rm", "missing", "-b", bucket)
    assert run.code == 1 and run.error_line().startswith(
        f"mictlanx-sync rm: NotFoundError: nothing removed: no object 'missing' in bucket '{bucket}'")
    assert run.error_line().endswith("(--missing-ok makes this a success)")
    run = cli("rm", "missing", "-b", bucket, "--missing-ok", "--json")
    assert run.code == 0 and run.json()["n_deletes"] == 0
    run = cli("rm", "metadata", "-b", bucket)  # a reserved key
    assert run.code == 1 and "ValidationError" in run.error_line()


def test_rm_bucket(cli: Callable[..., Run], payload: Path, bucket: str) -> None:
    for key in ("x", "y"):
        assert cli("put", str(payload), "-b", bucket, "--key", key, "--chunk-size", "200kb").code == 0
    run = cli("rm-bucket", bucket)
    assert run.code == 0 and run.out.strip() == f"removed 2 objects (4 chunks) from {bucket}"  # not "4 keys"
    assert cli("ls", bucket, "--json").json()["objects"] == []
    assert cli("put", str(payload), "-b", bucket, "--key", "z").code == 0
    doc = cli("rm-bucket", "-b", bucket, "--json").json()
    assert (doc["bucket_id"], doc["deleted"], doc["failed"], doc["total"], doc["keys"]) == (bucket, 1, 0, 1, ["z_0"])
    assert doc["objects"] == 1


def test_rm_bucket_errors(cli: Callable[..., Run], dead_uri: str) -> None:
    run = cli("rm-bucket", "-b", "no/slashes")
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync rm-bucket: ValidationError: ")
    run = cli("rm-bucket", "b", "--retries", "1", "--json", uri=dead_uri)
    assert run.code == 1 and json.loads(run.error_line())["error"] == "ConnectFailedError"


def test_peers(cli: Callable[..., Run], vss: LocalVSS) -> None:
    run = cli("peers")
    assert run.code == 0, run.err
    for peer_id, url in vss.peer_urls.items():
        assert any(line.split() == [peer_id, url, "available"] for line in run.out.splitlines()), run.out
    rows = cli("peers", "--json").json()
    assert sorted((r["peer_id"], r["status"]) for r in rows) == [
        ("mictlanx-peer-0", "available"), ("mictlanx-peer-1", "available")]
    assert {r["router"] for r in rows} == set(vss.router_urls)


def test_peers_errors(cli: Callable[..., Run], dead_uri: str) -> None:
    run = cli("peers", "--retries", "1", uri=dead_uri)
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync peers: ConnectFailedError: ")
    assert "connection refused; is the router running" in run.error_line()
    assert "Max retries" not in run.err and "NewConnectionError" not in run.err
    run = cli("peers", uri="not-a-uri")
    assert run.code == 2 and run.error_line().startswith("mictlanx-sync peers: UsageError: invalid URI")


def test_retries_stay_quiet_unless_verbose(cli: Callable[..., Run], dead_uri: str) -> None:
    """The client logs every retry at WARNING; the command line shows only the final error."""
    run = cli("ls", "b", "--retries", "2", uri=dead_uri)
    assert run.code == 1 and run.error_line().startswith("mictlanx-sync ls: ConnectFailedError: ")
    run = cli("ls", "b", "--retries", "2", "--verbose", uri=dead_uri)
    assert run.code == 1 and "attempt 1/2 failed" in run.err and run.err.count("\n") >= 2


def test_health(cli: Callable[..., Run], vss: LocalVSS) -> None:
    run = cli("health")
    assert run.code == 0 and run.err == ""
    assert run.out.strip() == f"mictlanx-router-0 {vss.router_urls[0]}: ok (2 peers available)"
    assert cli("health", "--json").json() == [{"router": vss.router_urls[0], "router_id": "mictlanx-router-0",
                                               "status": "ok", "available_peers": 2}]


def test_health_errors(cli: Callable[..., Run], vss: LocalVSS, dead_uri: str) -> None:
    dead_spec = dead_uri.split("://", 1)[1]
    both = f"{vss.uri.split('/?')[0]},{dead_spec}"
    dead_url = "http://" + dead_spec.split("@", 1)[1].split("/")[0]
    run = cli("health", uri=both)
    assert run.code == 1 and run.error_line() == "mictlanx-sync health: some routers are not healthy"
    assert "ok (2 peers available)" in run.out and f"{dead_url}: unreachable (ConnectFailedError" in run.out
    rows = cli("health", "--json", uri=both).json()
    assert [r["status"] for r in rows] == ["ok", "unreachable"] and rows[1]["error"] == "ConnectFailedError"


def test_uri_from_environment_and_default(cli: Callable[..., Run], vss: LocalVSS,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICTLANX_URI", vss.uri)
    assert cli("health", "--json", uri=None).json()[0]["router"] == vss.router_urls[0]
    monkeypatch.delenv("MICTLANX_URI")
    rows = cli("health", "--json", uri=None).json()  # the local VSS of `mictlanx-sync vss`
    assert rows[0]["router"] == "http://localhost:60666" and rows[0]["router_id"] == "mictlanx-router-0"
    assert DEFAULT_URI == "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"


def test_progress_bars(cli: Callable[..., Run], payload: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, transfers show tqdm bars on stderr; ``--no-progress`` hides them."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    run = cli("put", str(payload), "-b", bucket, "--chunk-size", "64kb")
    assert run.code == 0 and "put photo.jpg:" in run.err and "%|" in run.err and "B/s" in run.err
    run = cli("get", "photo.jpg", "-b", bucket, "-o", "copy.bin")
    assert run.code == 0 and "get photo.jpg:" in run.err and "B/s" in run.err
    run = cli("get", "photo.jpg", "-b", bucket, "-o", "copy2.bin", "--no-progress")
    assert run.code == 0 and run.err == ""


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = capsys.readouterr().out
    for command in ("put", "get", "ls", "stat", "rm", "rm-bucket", "peers", "health"):
        assert f"    {command}" in listed


def _entry_point(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MICTLANX_URI"}
    env.update(PYTHONPATH=str(REPO_ROOT), XDG_CACHE_HOME=str(cwd / ".cache"))
    return subprocess.run([sys.executable, "-m", "mictlanx_sync", *argv], cwd=cwd, env=env, capture_output=True,
                          timeout=60)


def test_entry_point_round_trip_through_stdout(vss: LocalVSS, payload: Path, bucket: str, tmp_path: Path) -> None:
    """The real command line: put a file, stream it back to stdout, fail cleanly on a missing key."""
    put = _entry_point("put", str(payload), "-b", bucket, "--chunk-size", "50kb", "--uri", vss.uri, cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    got = _entry_point("get", "photo.jpg", "-b", bucket, "-o", "-", "--uri", vss.uri, cwd=tmp_path)
    assert got.returncode == 0 and got.stdout == payload.read_bytes() and got.stderr == b""
    missing = _entry_point("get", "nope", "-b", bucket, "-o", "-", "--uri", vss.uri, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stdout == b""
    assert missing.stderr.decode().startswith("mictlanx-sync get: NotFoundError: ")
    assert missing.stderr.count(b"\n") == 1


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_readme_first_command_in_a_fresh_venv(tmp_path: Path) -> None:
    """``python3 -m venv .venv && .venv/bin/pip install ".[server]" && .venv/bin/mictlanx-sync demo``,
    from a copy of the checkout (so the build leaves nothing behind in it)."""
    readme = (REPO_ROOT / "README.md").read_text()
    first_command = readme.split("```bash\n", 1)[1].splitlines()[0]
    # The steps below are this command's; if the README changes, this test must follow it.
    assert first_command == 'python3 -m venv .venv && .venv/bin/pip install ".[server]" && .venv/bin/mictlanx-sync demo'
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "mictlanx-data"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=checkout, env=env, check=True, timeout=120)
    install = subprocess.run([".venv/bin/pip", "install", "-q", ".[server]"], cwd=checkout, env=env,
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    demo = subprocess.run([".venv/bin/mictlanx-sync", "demo"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "verified round trip: OK" in demo.stdout
    assert "local VSS stopped" in demo.stdout
