"""Issue 16: a peer's start-up checks temp files and pending intents, never every ball.

A crash can leave two kinds of unnamed version files: one renamed into ``balls/`` whose commit
never ran, and one whose last record was removed but which was not yet unlinked. Both are
recorded in the ``intents`` table before the step that could orphan them, so the next start
finds them without listing ``balls/`` (docs/reliability.md "Listings at scale").
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from mictlanx_sync.server.peer import storage as storage_module
from mictlanx_sync.server.peer import upload
from mictlanx_sync.server.peer.app import PeerApp
from mictlanx_sync.server.peer.config import PeerConfig
from mictlanx_sync.server.peer.storage import Ball, Storage
from tests.functional.test_peer_server import API, data_files, get, put
from tests.support.servers import start_peer


def _crash(storage: Storage) -> None:
    """What a SIGKILL leaves: the index as committed, no clean-shutdown record."""
    storage.db.close()


def _intents(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        rows = [row[0] for row in db.execute("SELECT name FROM intents")]
    db.close()
    return rows


def _ball(i: int, bucket: str = "b") -> tuple[Ball, bytes]:
    data = f"ball {i}".encode()
    return Ball(bucket, f"k{i:06d}", len(data), hashlib.sha256(data).hexdigest(), version=f"v{i:06d}"), data


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The directories the storage layer lists (``os.scandir``) while the test runs."""
    seen: list[str] = []
    real = os.scandir

    def counting(path: Any = ".") -> Any:
        seen.append(os.path.basename(os.fspath(path)))
        return real(path)

    monkeypatch.setattr(storage_module.os, "scandir", counting)
    yield seen


def test_upload_crash_after_rename_leaves_no_orphan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     scans: list[str]) -> None:
    """The real upload path: the file is renamed into balls/, then the process dies before the commit."""
    data_dir = tmp_path / "p"
    app = PeerApp(PeerConfig(data_dir=data_dir, fsync=False, inline_ball_max=0))  # a version file
    storage = app.peer.storage
    data = b"renamed, never committed"

    class Killed(BaseException):
        pass

    def die(*_: Any) -> bool:  # the commit check: the process "dies" here, after the rename
        raise Killed()

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peer") as client:
            body = {"key": "k", "size": len(data), "checksum": hashlib.sha256(data).hexdigest()}
            first = await client.post(f"{API}/buckets/b/metadata", json=body)
            monkeypatch.setattr(upload, "_recheck", die)
            monkeypatch.setattr(storage, "unlink", lambda name: None)  # no cleanup runs in a dead process
            await client.post(f"{API}/buckets/data/{first.json()['task_id']}/chunked", content=data)

    with pytest.raises(Killed):
        asyncio.run(scenario())
    orphans = os.listdir(data_dir / "balls")
    assert len(orphans) == 1 and _intents(data_dir) == orphans  # renamed, unnamed, but intended
    _crash(storage)
    del scans[:]
    again = Storage(data_dir, fsync=False)
    try:
        assert again.startup == "intents" and "balls" not in scans
        assert os.listdir(data_dir / "balls") == [] and _intents(data_dir) == [] and again.used == 0
    finally:
        again.close()


def test_crash_between_commit_and_unlink_leaves_no_orphan(tmp_path: Path, scans: list[str]) -> None:
    data_dir = tmp_path / "p"
    storage = Storage(data_dir, fsync=False)
    storage.bulk_load([_ball(1), _ball(2)])
    storage.unlink = lambda name: None  # type: ignore[method-assign]  # dies before unlinking
    storage.delete("b", "k000001")
    assert len(os.listdir(data_dir / "balls")) == 2 and len(_intents(data_dir)) == 1
    _crash(storage)
    del scans[:]
    again = Storage(data_dir, fsync=False)
    try:
        assert again.startup == "intents" and "balls" not in scans
        assert os.listdir(data_dir / "balls") == [again.get("b", "k000002").file]  # type: ignore[union-attr]
        assert again.used == len(b"ball 2") == again.count_used() and _intents(data_dir) == []
    finally:
        again.close()


def test_settled_intents_do_not_accumulate(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "p", fsync=False)
    try:
        storage.bulk_load([_ball(i) for i in range(10)])
        for i in range(10):
            storage.delete("b", f"k{i:06d}")
        storage.bulk_load([_ball(i) for i in range(10, 12)])  # the next transaction settles the unlinks
        assert _intents(tmp_path / "p") == []
    finally:
        storage.close()


def test_start_up_does_not_scan_the_balls(tmp_path: Path, scans: list[str]) -> None:
    """0 vs 20,000 balls: no listing of balls/, and about the same time (generous bound)."""
    timings = {}
    for n in (0, 20_000):
        data_dir = tmp_path / f"n{n}"
        storage = Storage(data_dir, fsync=False)
        storage.bulk_load(_ball(i) for i in range(n))
        storage.close()
        for _ in range(3):
            del scans[:]
            started = time.perf_counter()
            storage = Storage(data_dir, fsync=False)
            elapsed = time.perf_counter() - started
            assert storage.startup == "intents" and scans == ["tmp"], scans
            assert storage.used == sum(len(f"ball {i}") for i in range(n)) and storage.count(include_disabled=True) == n
            storage.close()
            timings[n] = min(timings.get(n, elapsed), elapsed)
    print({n: f"{t * 1000:.1f} ms" for n, t in timings.items()})
    assert timings[20_000] < timings[0] + 0.25, timings
    # asked for (--fsck), the full check lists balls/ and finds nothing to do
    del scans[:]
    storage = Storage(tmp_path / "n20000", fsync=False, fsck=True)
    try:
        assert storage.startup == "fsck" and "balls" in scans
        assert len(os.listdir(tmp_path / "n20000" / "balls")) == 20_000
    finally:
        storage.close()


def test_index_without_used_runs_the_full_check_once(tmp_path: Path) -> None:
    """An index from before issue 16 (no persisted ``used``): the first start scans and records it."""
    data_dir = tmp_path / "p"
    storage = Storage(data_dir, fsync=False)
    storage.bulk_load([_ball(1)])
    storage.db.execute("DELETE FROM meta")
    storage.db.close()
    (data_dir / "balls" / ("0" * 64 + ".orphan")).write_bytes(b"orphan")
    storage = Storage(data_dir, fsync=False)
    assert storage.startup == "fsck" and storage.used == len(b"ball 1")
    assert len(os.listdir(data_dir / "balls")) == 1
    storage.close()
    storage = Storage(data_dir, fsync=False)
    assert storage.startup == "intents" and storage.used == len(b"ball 1")
    storage.close()


def test_sigkill_mid_upload_then_start_cleans_without_a_scan(tmp_path: Path) -> None:
    """A real peer process: SIGKILL with an upload in tmp/ and a finished one, then restart."""
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-s")
    try:
        put(server.url, "b", "keep", b"committed before")
        (data_dir / "tmp" / "inflight.part").write_bytes(b"half an upload")  # as a crash leaves it
        server.kill()
        server.restart()
        assert get(server.url, "/buckets/b/keep").content == b"committed before"
        assert not any((data_dir / "tmp").iterdir())
        assert len(data_files(data_dir)) == 1 and _intents(data_dir) == []
        assert get(server.url, "/stats/ufs").json()["used_disk"] == len(b"committed before")
    finally:
        assert server.stop() == 0
