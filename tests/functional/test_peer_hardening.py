"""Peer hardening, issue 12 points 5 and 8 (docs/reliability.md "Disk, capacity and reservations").

A real peer (subprocess) on a small tmpfs: filling it answers 507, never 500, and leaves no
orphan file; deletes, tombstones and metadata updates work when the file system is full
(even filled by someone else); a disk that fills between P1 and P3 gives 507 and no orphan.
Reservations of tasks whose phase 2 has not started expire after ``--reserve-timeout`` and
are capped per client (``--max-reserved-per-client``).
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests

from tests.functional.test_peer_server import API, TIMEOUT, get, indexed_files, inline_blobs, p1, p3, sha
from tests.support.servers import REPO_ROOT, ServerProcess, start_peer

pytestmark = pytest.mark.timeout(120)

KIB = 1024
TMPFS_SIZE = 4 * 1024 * KIB
HEADROOM = 512 * KIB  # 256 KiB held as index.sqlite3-reserve, 256 KiB kept free
TOMBSTONES = int(os.environ.get("MICTLANX_TEST_TOMBSTONES", "100"))


def _mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture()
def disk() -> Iterator[Path]:
    """A fresh 4 MiB tmpfs, unmounted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mictlanx-tmpfs-"))
    _mount_tmpfs(root, TMPFS_SIZE)
    try:
        yield root
    finally:
        _umount(root)
        root.rmdir()


@pytest.fixture()
def small_peer(disk: Path) -> Iterator[tuple[ServerProcess, Path]]:
    data_dir = disk / "peer"
    server = start_peer(data_dir, "peer-h", "--index-headroom", str(HEADROOM), "--gc-interval", "0.2")
    try:
        yield server, data_dir
    finally:
        server.stop()


def statuses_ok(*responses: requests.Response) -> None:
    for resp in responses:
        assert resp.status_code != 500, resp.text


def assert_no_orphans(data_dir: Path) -> None:
    """``tmp/`` is empty, ``balls/`` holds exactly the files the index names and ``blobs`` the inline versions."""
    assert sorted(os.listdir(data_dir / "tmp")) == []
    named = indexed_files(data_dir)
    assert set(os.listdir(data_dir / "balls")) == {name for name in named if not name.startswith("inline:")}
    assert inline_blobs(data_dir) == {name for name in named if name.startswith("inline:")}


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full (to the last byte); the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as out:
        for piece in (64 * KIB, 4 * KIB, 1):
            block = b"\xa5" * piece
            while True:
                try:
                    written += out.write(block) or 0
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    assert os.statvfs(path).f_bavail == 0
    return written


def put(url: str, key: str, data: bytes, **headers: str) -> tuple[int, Optional[requests.Response]]:
    """P1 then P3; (status of the step that failed or of P3, the P3 answer if it ran)."""
    first = p1(url, "b", key, data, headers=headers or None)
    statuses_ok(first)
    if first.status_code != 201:
        return first.status_code, None
    second = p3(url, first.json()["task_id"], data)
    statuses_ok(second)
    return second.status_code, second


def delete(url: str, key: str, **headers: str) -> requests.Response:
    return requests.delete(f"{url}{API}/buckets/b/{key}", headers=headers, timeout=TIMEOUT)


def version(n: int) -> str:
    return f"{n:016x}-w"


# --- point 5: a full disk ------------------------------------------------------------------------------
def test_filling_a_tmpfs_gives_507_never_500_and_delete_makes_room(small_peer: tuple[ServerProcess, Path]) -> None:
    server, data_dir = small_peer
    size = 300 * KIB
    stored: list[str] = []
    status = 201
    for i in range(40):
        status, _ = put(server.url, f"k{i}", os.urandom(size))
        if status != 201:
            break
        stored.append(f"k{i}")
    assert status == 507, "the peer never said 507"
    assert 5 <= len(stored) < 14, stored  # 4 MiB less the index and the 512 KiB headroom
    refused = p1(server.url, "b", "again", os.urandom(size))
    assert refused.status_code == 507 and refused.json()["detail"]["code"] == 502
    assert_no_orphans(data_dir)
    assert (data_dir / "index.sqlite3-reserve").stat().st_size == HEADROOM // 2
    # A delete frees the space and the next put of the same size fits.
    gone = delete(server.url, stored[0])
    assert gone.status_code == 200, gone.text
    assert put(server.url, "after-delete", os.urandom(size))[0] == 201
    assert_no_orphans(data_dir)
    assert get(server.url, "/buckets/b/after-delete").status_code == 200


def test_disk_full_between_phase1_and_phase2_gives_507_and_no_orphan(
        small_peer: tuple[ServerProcess, Path], disk: Path) -> None:
    server, data_dir = small_peer
    assert put(server.url, "before", os.urandom(100 * KIB))[0] == 201
    data = os.urandom(600 * KIB)
    first = p1(server.url, "b", "late", data)
    assert first.status_code == 201
    filler = disk / "filler"
    fill(filler)  # someone else takes every byte after P1 admitted the write
    second = p3(server.url, first.json()["task_id"], data)
    assert second.status_code == 507, second.text
    assert second.json()["detail"]["code"] == 502
    assert_no_orphans(data_dir)
    assert get(server.url, "/buckets/b/late/size").status_code == 404
    # Stats and reads still work on the full disk.
    assert get(server.url, "/stats").status_code == 200
    assert get(server.url, "/buckets/b/before").status_code == 200
    filler.unlink()
    retry = p1(server.url, "b", "late", data)
    assert retry.status_code == 201
    assert p3(server.url, retry.json()["task_id"], data).status_code == 201
    assert_no_orphans(data_dir)


def test_a_small_ball_on_a_full_disk_gives_201_or_507_never_500(small_peer: tuple[ServerProcess, Path],
                                                                 disk: Path) -> None:
    """An inline ball admitted before the disk filled: its commit is the index transaction,
    which either fits in the index's free pages and WAL (201) or fails whole (507)."""
    server, data_dir = small_peer
    assert put(server.url, "before", os.urandom(1000))[0] == 201
    blobs = [os.urandom(3000) for _ in range(20)]
    tasks = [(p1(server.url, "b", f"late{i}", data), data) for i, data in enumerate(blobs)]
    assert {first.status_code for first, _ in tasks} == {201}
    filler = disk / "filler"
    fill(filler)
    try:
        answers = [p3(server.url, first.json()["task_id"], data) for first, data in tasks]
        statuses_ok(*answers)
        print("statuses on the full disk:", [answer.status_code for answer in answers])
        for (first, data), answer in zip(tasks, answers, strict=True):
            key = first.json()["key"]
            stored = get(server.url, f"/buckets/b/{key}")
            if answer.status_code == 201:
                assert stored.content == data
            else:
                assert answer.status_code == 507 and answer.json()["detail"]["code"] == 502, answer.text
                assert stored.status_code == 404
        assert_no_orphans(data_dir)
        assert get(server.url, "/buckets/b/before").status_code == 200
    finally:
        filler.unlink()
    assert put(server.url, "after", os.urandom(1000))[0] == 201
    assert_no_orphans(data_dir)


def test_small_balls_fill_a_tmpfs_with_507_and_a_delete_makes_room_in_the_index(
        small_peer: tuple[ServerProcess, Path]) -> None:
    """Inline balls: a delete frees index pages, not file system space; the next small put uses them."""
    server, data_dir = small_peer
    stored: list[str] = []
    status = 201
    for i in range(2000):
        status, _ = put(server.url, f"s{i}", os.urandom(3000))
        if status != 201:
            break
        stored.append(f"s{i}")
    assert status == 507, "the peer never said 507"
    assert len(stored) > 100 and not os.listdir(data_dir / "balls")
    assert_no_orphans(data_dir)
    for key in stored[:20]:
        assert delete(server.url, key).status_code == 200
    assert put(server.url, "after-delete", os.urandom(3000))[0] == 201
    assert get(server.url, "/buckets/b/after-delete").status_code == 200
    assert_no_orphans(data_dir)


def test_deletes_tombstones_and_metadata_updates_work_on_a_full_disk(
        small_peer: tuple[ServerProcess, Path], disk: Path) -> None:
    server, data_dir = small_peer
    blobs = {f"k{i}": os.urandom(64 * KIB) for i in range(6)}
    for key, blob in blobs.items():
        assert put(server.url, key, blob)[0] == 201
    v1 = p1(server.url, "b", "vk", b"versioned", headers={"Mictlanx-Version": version(10)})
    assert p3(server.url, v1.json()["task_id"], b"versioned").status_code == 201
    filler = disk / "filler"
    fill(filler)
    try:
        answers: list[requests.Response] = []
        # No new data is admitted ...
        answers.append(p1(server.url, "b", "new", b"x" * 1000))
        assert answers[-1].status_code == 507
        # ... but metadata updates, disables and many tombstones (each one new index rows,
        # none freeing a file) all work, through the released reserve if SQLite needs it.
        key0 = "k0"
        update = p1(server.url, "b", key0, blobs[key0], headers={"Update": "1"}, tags={"t": "x" * 2000})
        answers.append(update)
        assert update.status_code == 201 and update.json()["exists"] is True, update.text
        disabled = requests.post(f"{server.url}{API}/buckets/b/k1/disable", timeout=TIMEOUT)
        answers.append(disabled)
        assert disabled.status_code == 204, disabled.text
        for i in range(TOMBSTONES):
            name = f"gone-{i:04d}-" + "n" * 100  # long names: the index must grow
            answers.append(delete(server.url, name, **{"Mictlanx-Version": version(100 + i)}))
            assert answers[-1].status_code == 404, (i, answers[-1].text)  # a tombstone, nothing to remove
        buried = delete(server.url, "vk", **{"Mictlanx-Version": version(50)})
        answers.append(buried)
        assert buried.status_code == 200, buried.text
        statuses_ok(*answers)
        assert not (data_dir / "index.sqlite3-reserve").exists(), "the full disk never needed the reserve"
        # A plain delete removes the row and the file: space comes back.
        for key in ("k2", "k3", "k4", "k5"):
            gone = delete(server.url, key)
            assert gone.status_code == 200, gone.text
        assert_no_orphans(data_dir)
        assert get(server.url, "/buckets/b/k2/size").status_code == 404
        meta = get(server.url, "/buckets/b/metadata/k0").json()["metadata"]
        assert meta["tags"] == {"t": "x" * 2000}
    finally:
        filler.unlink()
    # With room again, the reserve is held again (after the next index change or GC sweep).
    deadline = time.monotonic() + 10
    while not (data_dir / "index.sqlite3-reserve").exists():
        assert time.monotonic() < deadline, "the reserve was not held again"
        time.sleep(0.1)
    assert put(server.url, "after", os.urandom(64 * KIB))[0] == 201
    assert_no_orphans(data_dir)


# --- point 8: reservations -----------------------------------------------------------------------------
@pytest.fixture()
def quick_peer(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_peer(tmp_path / "q", "peer-q", "--capacity", "1MB", "--reserve-timeout", "1",
                        "--max-reserved-per-client", "100%")
    try:
        yield server
    finally:
        server.stop()


def test_a_reservation_whose_phase2_never_starts_is_released(quick_peer: ServerProcess) -> None:
    url = quick_peer.url
    big = os.urandom(900_000)
    idle = p1(url, "b", "idle", big)
    assert idle.status_code == 201
    assert p1(url, "b", "blocked", big).status_code == 507  # the idle reservation holds the capacity
    time.sleep(1.5)  # --reserve-timeout 1
    taker = p1(url, "b", "taker", big)
    assert taker.status_code == 201, taker.text
    # The idle task still exists (task_ttl), but its phase 2 re-checks the capacity: no room now.
    late = p3(url, idle.json()["task_id"], big)
    assert late.status_code == 507 and late.json()["detail"]["code"] == 502, late.text
    assert p3(url, taker.json()["task_id"], big).status_code == 201
    assert get(url, "/buckets/b/idle/size").status_code == 404
    # A timed-out task whose phase 2 starts when there is room still completes.
    assert delete(url, "taker").status_code == 200
    small = os.urandom(1000)
    slow = p1(url, "b", "slow", small)
    time.sleep(1.5)
    assert p3(url, slow.json()["task_id"], small).status_code == 201
    assert get(url, "/buckets/b/slow").content == small


def _p1_from(url: str, source: str, key: str, size: int, headers: Optional[dict[str, str]] = None) -> Any:
    """P1 sent from the loopback address ``source`` (127.0.0.x): (status, body)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT, source_address=(source, 0))
    try:
        body = json.dumps({"key": key, "size": size, "checksum": sha(key.encode())})
        conn.request("POST", f"{API}/buckets/b/metadata", body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_not_yet_streaming_reservations_are_capped_per_client(tmp_path: Path, token: Optional[str]) -> None:
    extra = ["--capacity", "10MB", "--max-reserved-per-client", "1MB"] + (["--token", token] if token else [])
    server = start_peer(tmp_path / "c", "peer-c", *extra)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        url = server.url
        # A client's first pending reservation is always allowed (bounded by --reserve-timeout).
        assert _p1_from(url, "127.0.0.1", "a1", 1_500_000, auth)[0] == 201
        status, body = _p1_from(url, "127.0.0.1", "a2", 1000, auth)
        assert status == 507 and body["detail"]["code"] == 502 and "cap" in body["detail"]["msg"], body
        # Another address has its own budget.
        assert _p1_from(url, "127.0.0.2", "b1", 600_000, auth)[0] == 201
        assert _p1_from(url, "127.0.0.2", "b2", 300_000, auth)[0] == 201
        assert _p1_from(url, "127.0.0.2", "b3", 200_000, auth)[0] == 507
        # A router forwards its client's address; the peer trusts it only when it requires a token.
        forwarded = {**auth, "Mictlanx-Client": "10.0.0.9"}
        status, body = _p1_from(url, "127.0.0.1", "c1", 1000, forwarded)
        assert status == (201 if token else 507), body
        # Once a task streams, it no longer counts against its client's cap.
        data = os.urandom(500_000)
        assert _p1_from(url, "127.0.0.2", "b3", 200_000, auth)[0] == 507
        resp = requests.delete(f"{url}{API}/tasks", headers=auth, timeout=TIMEOUT)  # P20: drop pending tasks
        assert resp.status_code == 204
        first = p1(url, "b", "s1", data, headers=auth or None)
        assert first.status_code == 201
        assert p3(url, first.json()["task_id"], data, headers=auth or None).status_code == 201
        second = p1(url, "b", "s2", data, headers=auth or None)
        assert second.status_code == 201
        assert p1(url, "b", "s3", data, headers=auth or None).status_code == 201  # 1,000,000 <= 1MB
        assert p1(url, "b", "s4", data, headers=auth or None).status_code == 507
    finally:
        server.stop()


def test_limits_have_cli_options_with_environment_variables_and_defaults() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    text = subprocess.run([sys.executable, "-m", "mictlanx_sync", "peer", "--help"], capture_output=True,
                          text=True, timeout=60, env=env).stdout
    flat = " ".join(text.split())
    for option, variable, default in (
            ("--index-headroom", "MICTLANX_PEER_INDEX_HEADROOM", "default 8MiB"),
            ("--reserve-timeout", "MICTLANX_PEER_RESERVE_TIMEOUT", "default 30"),
            ("--max-reserved-per-client", "MICTLANX_PEER_MAX_RESERVED_PER_CLIENT", "default 100%"),
            ("--inline-ball-max", "MICTLANX_PEER_INLINE_BALL_MAX", "default 4000")):
        assert option in flat and variable in flat and default in flat, option


# --- the index failing under a commit (in process, the failure injected) ---------------------------------
class _FullAt:
    """A connection proxy whose statement ``sql`` fails ``times`` times with SQLITE_FULL."""

    def __init__(self, db: sqlite3.Connection, sql: str, times: int = 1) -> None:
        self._db, self._sql, self.left = db, sql, times

    def execute(self, sql: str, *args: Any) -> Any:
        if self.left and sql.strip().upper().startswith(self._sql):
            self.left -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_failed_commit_is_rolled_back_and_deletes_retry_with_the_reserve(tmp_path: Path) -> None:
    from mictlanx_sync.server.peer.storage import Ball, Storage

    storage = Storage(tmp_path / "s", fsync=False, reserve=64 * KIB)
    try:
        reserve = tmp_path / "s" / "index.sqlite3-reserve"
        assert reserve.stat().st_size == 64 * KIB
        real = storage.db
        storage.path("f1").write_bytes(b"abc")
        storage.db = _FullAt(real, "COMMIT")  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError):
            storage.put(Ball("b", "k", 3, sha(b"abc"), file="f1"))
        assert not real.in_transaction  # not left open: the next change works
        storage.db = real
        storage.put(Ball("b", "k", 3, sha(b"abc"), file="f1"))
        # A delete whose COMMIT finds the disk full releases the reserve and runs again.
        storage.db = _FullAt(real, "COMMIT")  # type: ignore[assignment]
        assert storage.essential(storage.delete, "b", "k") is not None
        storage.db = real
        assert storage.get("b", "k") is None and not storage.path("f1").exists()
        assert reserve.stat().st_size == 64 * KIB  # held again: there is room
    finally:
        storage.close()


@pytest.mark.parametrize("size", [10_000, 1000], ids=["file", "inline"])
def test_an_index_full_at_phase2_commit_gives_507_and_no_orphan(tmp_path: Path, size: int) -> None:
    import asyncio

    import httpx

    from mictlanx_sync.server.peer.app import PeerApp
    from mictlanx_sync.server.peer.config import PeerConfig

    data_dir = tmp_path / "p"
    app = PeerApp(PeerConfig(data_dir=data_dir, fsync=False, index_headroom=256 * KIB))
    storage = app.peer.storage
    data = os.urandom(size)

    async def scenario() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://peer") as client:
            body = {"key": "k", "size": len(data), "checksum": sha(data)}
            first = await client.post(f"{API}/buckets/b/metadata", json=body)
            storage.db = _FullAt(storage.db, "COMMIT")  # type: ignore[assignment]
            second = await client.post(f"{API}/buckets/data/{first.json()['task_id']}/chunked", content=data)
            code = second.json()["detail"]["code"]
            # The index was left as it was and works: the same put succeeds now.
            again = await client.post(f"{API}/buckets/b/metadata", json=body)
            third = await client.post(f"{API}/buckets/data/{again.json()['task_id']}/chunked", content=data)
            return second.status_code, code, third.status_code

    orphans: list[str] = []
    try:
        failed, code, retried = asyncio.run(scenario())
        orphans = sorted(os.listdir(data_dir / "tmp"))
    finally:
        storage.close()
    assert (failed, code, retried) == (507, 502, 201)
    assert orphans == []
    assert_no_orphans(data_dir)
    assert len(indexed_files(data_dir)) == 1 and len(inline_blobs(data_dir)) == (size <= 4000)
