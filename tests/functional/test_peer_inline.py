"""Small versions kept in the peer's index (``--inline-ball-max``, docs/storage.md), on real peers.

Round trips through every read, superseded versions pinned during their grace, deletes and
the GC freeing the bytes, P12 pushes, the disk a small ball takes, a SIGKILL in the middle of
many small writes, and a start-up that lists no ball.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest
import requests

from mictlanx_sync.server.peer import storage as storage_module
from mictlanx_sync.server.peer.storage import Ball, Storage
from tests.functional.test_peer_server import (
    API,
    TIMEOUT,
    _node,
    assert_error,
    data_files,
    get,
    indexed_files,
    inline_blobs,
    put,
    running_peer,
    sha,
)
from tests.functional.test_peer_versions import FAST_GC, delete, pinned, used, v, vput, wait_for
from tests.support.servers import start_peer

pytestmark = pytest.mark.timeout(120)
KIB = 1024


def assert_layout(data_dir: Path, files: int, blobs: int) -> None:
    """``balls/`` and ``blobs`` hold exactly what the records name, in these numbers."""
    named = indexed_files(data_dir)
    on_disk = set(os.listdir(data_dir / "balls"))
    assert on_disk == {n for n in named if not n.startswith("inline:")} and len(on_disk) == files
    assert inline_blobs(data_dir) == {n for n in named if n.startswith("inline:")} and len(named - on_disk) == blobs


def test_the_threshold_option_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from mictlanx_sync.server.peer.cli import add_arguments, config_from_args

    def config(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return config_from_args(parser.parse_args(list(argv))).inline_ball_max

    assert config() == 4000
    assert config("--inline-ball-max", "1KiB") == 1024 and config("--inline-ball-max", "0") == 0
    monkeypatch.setenv("MICTLANX_PEER_INLINE_BALL_MAX", "2KiB")
    assert config() == 2048
    for bad in ("2MiB", "-1", "lots"):
        with pytest.raises(SystemExit, match="--inline-ball-max"):
            config("--inline-ball-max", bad)


def test_small_balls_round_trip_through_every_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "p"
    with running_peer(data_dir, "peer-i", "--inline-ball-max", "1KiB") as server:
        url = server.url
        small, edge, big, empty = os.urandom(500), os.urandom(1024), os.urandom(1025), b""
        put(url, "b", "small", small, tags={"t": "1"})  # P1 + P3
        put(url, "b", "edge", edge, multipart=True)  # P1 + P2, exactly the threshold
        put(url, "b", "big", big)  # one byte over: a file
        put(url, "b", "empty", empty)
        body = {"key": "one", "size": len(small), "checksum": sha(small),
                "data_base64": base64.b64encode(small).decode()}
        one = requests.post(f"{url}{API}/buckets/b/metadata", json=body, timeout=TIMEOUT)  # P1 with the bytes
        assert one.status_code == 201 and one.json()["committed"] is True, one.text
        assert_layout(data_dir, files=1, blobs=4)
        assert used(url) == 500 + 1024 + 1025 + 0 + 500
        for key, data in (("small", small), ("edge", edge), ("big", big), ("empty", empty), ("one", small)):
            whole = get(url, f"/buckets/b/{key}")
            assert whole.status_code == 200 and whole.content == data and whole.headers["ETag"] == f'"{sha(data)}"'
            assert int(whole.headers["Content-Length"]) == len(data)
            head = requests.head(f"{url}{API}/buckets/b/{key}", timeout=TIMEOUT)
            assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) == len(data)
            assert get(url, f"/buckets/b/{key}/size").json()["size"] == len(data)
            meta = get(url, f"/buckets/b/metadata/{key}", headers={"Mictlanx-Inline-Max": "65536"}).json()
            assert base64.b64decode(meta["data_base64"]) == data
            if data:
                part = get(url, f"/buckets/b/{key}", headers={"Range": "bytes=10-99"})
                assert part.status_code == 206 and part.content == data[10:100]
                assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
                tail = get(url, f"/buckets/b/{key}", headers={"Range": "bytes=-7"})
                assert tail.status_code == 206 and tail.content == data[-7:]
        assert_error(get(url, "/buckets/b/small", headers={"Range": "bytes=600-700"}), 416, 400)
        # A restart serves them alike (and the index still names exactly what is stored).
        server.restart()
        assert get(server.url, "/buckets/b/small").content == small
        assert get(server.url, "/buckets/b/edge", headers={"Range": "bytes=1000-"}).content == edge[1000:]
        assert_layout(data_dir, files=1, blobs=4)


def test_superseded_small_versions_stay_pinned_readable_then_gc_frees_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "p"
    with running_peer(data_dir, "peer-g", "--version-grace", "3", "--gc-interval", "0.2") as server:
        url = server.url
        vput(url, "b", "k", b"first", v(1))
        vput(url, "b", "k", b"second", v(2))  # v1 superseded, readable when pinned for the grace
        assert get(url, "/buckets/b/k").content == b"second"
        assert pinned(url, "b", "k", v(1)).content == b"first"
        assert pinned(url, "b", "k", v(1), "meta").json()["metadata"]["version"] == v(1)
        assert_layout(data_dir, files=0, blobs=2)
        # Identical content at a newer version shares the blob (no copy).
        vput(url, "b", "k", b"second", v(3))
        assert_layout(data_dir, files=0, blobs=2)
        wait_for(lambda: pinned(url, "b", "k", v(1)).status_code == 404, timeout=15)
        assert_layout(data_dir, files=0, blobs=1)
        assert used(url) == len(b"second")


def test_deletes_tombstones_and_gc_remove_the_bytes(tmp_path: Path) -> None:
    data_dir = tmp_path / "p"
    with running_peer(data_dir, "peer-d", *FAST_GC) as server:
        url = server.url
        put(url, "b", "plain", b"unversioned")
        vput(url, "b", "vk", b"versioned", v(1))
        vput(url, "b", "obj_0", b"chunk", v(1), ball_id="obj")
        assert_layout(data_dir, files=0, blobs=3)
        assert delete(url, "/buckets/b/plain").status_code == 200  # no version: gone at once
        assert_layout(data_dir, files=0, blobs=2)
        assert delete(url, "/buckets/b/vk", **{"Mictlanx-Version": v(2)}).status_code == 200  # tombstone
        assert delete(url, "/buckets/b/bid/obj", **{"Mictlanx-Version": v(2)}).status_code == 200
        assert get(url, "/buckets/b/vk").headers["Mictlanx-Tombstone"] == v(2)
        wait_for(lambda: not inline_blobs(data_dir), timeout=15)
        assert indexed_files(data_dir) == set() and used(url) == 0
        assert data_files(data_dir) == set()


def test_p12_pushes_an_inline_ball(tmp_path: Path) -> None:
    with running_peer(tmp_path / "a", "peer-a") as a, running_peer(tmp_path / "b", "peer-b", *("--inline-ball-max",
                                                                                                  "0")) as b:
        data = os.urandom(3000)
        put(a.url, "b", "rep", data, tags={"x": "y"})
        assert requests.post(f"{a.url}{API}/nodes", json=_node(b, "peer-b"), timeout=TIMEOUT).status_code == 201
        response = requests.post(f"{a.url}{API}/buckets/b/rep/replicate?to=peer-b", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        assert get(b.url, "/buckets/b/rep").content == data  # a file there: the layouts need not agree
        assert len(os.listdir(tmp_path / "b" / "balls")) == 1 and inline_blobs(tmp_path / "a")


def _disk(data_dir: Path, names: tuple[str, ...]) -> int:
    """Allocated bytes (st_blocks) of the files of ``data_dir`` so named."""
    return sum(path.stat().st_blocks * 512 for path in data_dir.rglob("*") if path.is_file() and path.name in names)


BALLS = 2000


def test_disk_per_small_ball(tmp_path: Path) -> None:
    """2,000 balls of 1 KiB, written with P1 carrying the bytes (one request each), 8 threads."""
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-s")
    try:
        url = server.url
        session = threading.local()

        def write(i: int) -> int:
            http = getattr(session, "http", None) or requests.Session()
            session.http = http
            data = (f"{i:08d}".encode() * 128)[:KIB]
            body = {"key": f"k{i:06d}", "size": KIB, "checksum": sha(data), "tags": {},
                    "data_base64": base64.b64encode(data).decode()}
            return http.post(f"{url}{API}/buckets/b/metadata", json=body, timeout=TIMEOUT).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(write, range(BALLS))) == {201}
        assert server.stop() == 0  # a clean stop checkpoints the WAL into the database
        index = ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm")
        on_disk = _disk(data_dir, index) + sum(p.stat().st_blocks * 512 for p in (data_dir / "balls").iterdir())
        per_ball = on_disk / BALLS
        print(f"\n{BALLS} balls of 1 KiB, inline: {on_disk} bytes allocated for the index and balls/, "
              f"{per_ball:.0f} bytes per ball (the 4 MiB index reserve not counted)")
        assert not os.listdir(data_dir / "balls")
        assert per_ball < 2 * KIB
    finally:
        server.stop()


def test_sigkill_while_many_small_balls_are_written(tmp_path: Path) -> None:
    """Every acknowledged write is there and verified after the restart; the others are all or nothing."""
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-k", fsync=True)
    rng = random.Random()
    acknowledged: dict[str, bytes] = {}
    attempted: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        http = requests.Session()
        i = 0
        while not stop.is_set():
            key = f"w{n}-{i:05d}"
            data = os.urandom(rng.randint(0, 4000))  # at most the default --inline-ball-max
            with lock:
                attempted[key] = data
            try:
                if i % 2:  # P1 with the bytes
                    body = {"key": key, "size": len(data), "checksum": sha(data),
                            "data_base64": base64.b64encode(data).decode()}
                    ok = http.post(f"{server.url}{API}/buckets/b/metadata", json=body, timeout=10).status_code == 201
                else:  # P1 then P3
                    first = http.post(f"{server.url}{API}/buckets/b/metadata", timeout=10,
                                      json={"key": key, "size": len(data), "checksum": sha(data)})
                    ok = first.status_code == 201 and http.post(
                        f"{server.url}{API}/buckets/data/{first.json()['task_id']}/chunked", data=data,
                        timeout=10).status_code == 201
            except requests.RequestException:
                ok = False
            if ok:
                with lock:
                    acknowledged[key] = data
            i += 1

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        server.kill()  # SIGKILL with writes in flight
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(acknowledged) >= 100, len(acknowledged)
        server.restart()
        url = server.url
        http = requests.Session()
        present = 0
        for key, data in attempted.items():
            got = http.get(f"{url}{API}/buckets/b/{key}", timeout=TIMEOUT)
            if key in acknowledged:
                assert got.status_code == 200, (key, got.status_code)
            if got.status_code == 404:
                continue
            assert got.status_code == 200 and got.content == data and got.headers["ETag"] == f'"{sha(data)}"', key
            meta = http.get(f"{url}{API}/buckets/b/metadata/{key}", timeout=TIMEOUT).json()["metadata"]
            assert (meta["size"], meta["checksum"]) == (len(data), sha(data))
            present += 1
        stats_len = http.get(f"{url}{API}/balls/len", timeout=TIMEOUT).json()["len"]
        assert stats_len == present
        assert used(url) == sum(len(attempted[k]) for k in attempted
                                if http.get(f"{url}{API}/buckets/b/{k}/size", timeout=TIMEOUT).status_code == 200)
        assert not os.listdir(data_dir / "tmp") and not os.listdir(data_dir / "balls")
        assert_layout(data_dir, files=0, blobs=present)
        print(f"\n{len(acknowledged)} acknowledged, {len(attempted)} attempted, {present} present after SIGKILL")
    finally:
        stop.set()
        server.stop()


def test_start_up_lists_no_ball_with_inline_balls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = os.scandir

    def counting(path: object = ".") -> object:
        seen.append(os.path.basename(os.fspath(path)))  # type: ignore[arg-type]
        return real(path)  # type: ignore[arg-type]

    data_dir = tmp_path / "p"
    storage = Storage(data_dir, fsync=False, inline_max=4 * KIB)
    items: list[tuple[Ball, bytes]] = []
    for i in range(3000):
        data = os.urandom(100 if i % 3 else 5000)  # a third are files
        items.append((Ball("b", f"k{i:05d}", len(data), sha(data), version=f"v{i:06d}"), data))
    storage.bulk_load(items)
    storage.db.close()  # as a SIGKILL leaves it: no clean-shutdown record
    monkeypatch.setattr(storage_module.os, "scandir", counting)
    again: Optional[Storage] = Storage(data_dir, fsync=False, inline_max=4 * KIB)
    try:
        assert again is not None and again.startup == "intents" and "balls" not in seen
        assert again.used == sum(len(data) for _, data in items)
        blob = again.get("b", "k00001")
        assert blob is not None and blob.inline and again.blob(blob.file) == items[1][1]
        file = again.get("b", "k00000")
        assert file is not None and not file.inline and again.path(file.file).read_bytes() == items[0][1]
        again.close()
        again = None
        # The full check (--fsck) sees inline versions as present, not as missing files.
        checked = Storage(data_dir, fsync=False, fsck=True)
        assert checked.startup == "fsck" and checked.count(include_disabled=True) == 3000
        assert checked.used == sum(len(data) for _, data in items)
        checked.close()
    finally:
        if again is not None:
            again.close()


def test_fsck_checks_inline_versions_against_the_blobs(tmp_path: Path) -> None:
    """Damage no crash can make (both change in one transaction), repaired by the full check."""
    data_dir = tmp_path / "p"
    storage = Storage(data_dir, fsync=False, inline_max=4 * KIB)
    items = [(Ball("b", f"k{i}", 100, sha(bytes([i]) * 100), version=f"v{i}"), bytes([i]) * 100) for i in range(3)]
    storage.bulk_load(items)
    lost = storage.get("b", "k1")
    assert lost is not None and lost.inline
    storage.db.execute("DELETE FROM blobs WHERE id = ?", (int(lost.file.split(":", 1)[1]),))
    storage.db.execute("INSERT INTO blobs (data) VALUES (?)", (b"named by no record",))
    storage.close()
    checked = Storage(data_dir, fsync=False, fsck=True)
    try:
        assert checked.get("b", "k1") is None and checked.count(include_disabled=True) == 2
        assert checked.used == 200
        assert inline_blobs(data_dir) == {ball.file for ball in (checked.get("b", "k0"), checked.get("b", "k2"))
                                          if ball is not None}
    finally:
        checked.close()
