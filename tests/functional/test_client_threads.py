"""Acceptance 6: one ``Client`` shared by many threads, and used again after ``os.fork()``."""

from __future__ import annotations

import os
import random
import threading
import time
import warnings
from pathlib import Path

import pytest

from mictlanx_sync import Err, Ok
from mictlanx_sync.protocol.errors import MictlanXError, NotFoundError

from . import client_support
from .client_support import Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(120)
cluster = client_support.cluster

THREADS = 16
OPERATIONS = 400
CHUNK = 32 * 1024


def test_sixteen_threads_share_one_client(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    shared = os.urandom(5 * CHUNK + 3)
    errors: list[str] = []
    counts = {"put": 0, "get": 0, "delete": 0, "shared": 0}
    lock = threading.Lock()
    with new_client(cluster.uri(), tmp_path, max_workers=8) as c:
        assert c.put(bucket, "shared", shared, chunk_size=CHUNK, rf=2).unwrap()
        barrier = threading.Barrier(THREADS)

        def worker(t: int) -> None:
            rng = random.Random(t)
            mine: dict[str, bytes] = {}
            deleted: list[str] = []
            barrier.wait(10)
            for j in range(OPERATIONS // THREADS):
                op = rng.choice(["put", "put", "get", "get", "delete", "shared"]) if mine else "put"
                try:
                    if op == "put":
                        key = f"t{t}-{j}"
                        data = os.urandom(rng.choice([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7]))
                        c.put(bucket, key, data, chunk_size=CHUNK, rf=rng.choice([1, 2])).unwrap()
                        mine[key] = data
                    elif op == "get":
                        key = rng.choice(sorted(mine))
                        got = c.get(bucket, key).unwrap()
                        if sha256(got.data) != sha256(mine[key]):
                            errors.append(f"{key}: checksum mismatch")
                    elif op == "delete":
                        key = rng.choice(sorted(mine))
                        c.delete(key, bucket).unwrap()
                        del mine[key]
                        deleted.append(key)
                        missing = c.get(bucket, key)
                        if not (missing.is_err and type(missing.unwrap_err()) is NotFoundError):
                            errors.append(f"{key}: still readable after delete: {missing}")
                    else:
                        if sha256(c.get(bucket, "shared").unwrap().data) != sha256(shared):
                            errors.append("shared: checksum mismatch")
                    with lock:
                        counts[op] += 1
                except MictlanXError as error:
                    errors.append(f"thread {t} {op}: {error!r}")
            # Every object this thread still owns reads back right.
            for key, data in mine.items():
                final = c.get(bucket, key)
                if final.is_err or final.unwrap().data.tobytes() != data:
                    errors.append(f"{key}: final read {final}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(100)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert sum(counts.values()) == OPERATIONS
        assert all(counts[op] > 0 for op in counts), counts
        assert time.monotonic() - started < 100


def test_forked_child_uses_the_parents_client(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    with new_client(cluster.uri(), tmp_path) as c:
        parent_data = os.urandom(3 * CHUNK)
        assert c.put(bucket, "before-fork", parent_data, chunk_size=CHUNK).unwrap()
        assert c.get(bucket, "before-fork").unwrap().data.tobytes() == parent_data  # pools, sessions, cache in use
        child_data = os.urandom(2 * CHUNK + 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() in a threaded process
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            status = 1
            try:
                c.put(bucket, "from-child", child_data, chunk_size=CHUNK).unwrap()
                ok = c.get(bucket, "from-child").unwrap().data.tobytes() == child_data
                ok = ok and c.get(bucket, "before-fork").unwrap().data.tobytes() == parent_data
                status = 0 if ok else 1
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        deadline = time.monotonic() + 45
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        # The parent's client still works, and sees what the child wrote.
        assert c.get(bucket, "from-child").unwrap().data.tobytes() == child_data
        assert c.put(bucket, "after-fork", b"parent").unwrap()


def test_close_while_other_threads_are_busy(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    """close() with operations in flight: every caller returns promptly, no pool thread survives."""
    data = os.urandom(20 * CHUNK)
    # Short timeouts: this test is about close() never leaving a caller blocked beyond its own
    # timeouts. A request already in flight when close() runs may wait for its answer; with the
    # default 120 s read timeout a stalled server would look like a close() bug. (One CI run saw
    # a caller waiting on an upload in flight for > 30 s: see _stacks' output if it recurs.)
    c = new_client(cluster.uri(), tmp_path, client_id="client-closing", max_workers=4, timeout=(2.0, 10.0))
    assert c.put(bucket, "busy", data, chunk_size=CHUNK).unwrap()
    outcomes: list[object] = []
    stop = threading.Event()

    def worker(t: int) -> None:
        j = 0
        while not stop.is_set():
            j += 1
            got = c.get(bucket, "busy", force=True)
            put = c.put(bucket, f"busy-{t}-{j}", data, chunk_size=CHUNK)
            outcomes.extend([got, put])
            if got.is_ok:
                assert got.unwrap().data.tobytes() == data
            if got.is_err and put.is_err:
                return

    cluster.data_delay = 0.01
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        c.close()
        stop.set()
        for thread in threads:
            thread.join(30)
        stuck = [thread for thread in threads if thread.is_alive()]
        assert not stuck, "callers still running after close():\n" + _stacks(stuck)
    finally:
        cluster.data_delay = 0.0
        stop.set()
    for outcome in outcomes:
        assert isinstance(outcome, (Ok, Err))
        if isinstance(outcome, Err):
            assert isinstance(outcome.unwrap_err(), MictlanXError)
    assert any(isinstance(o, Err) and "closed" in str(o.unwrap_err()) for o in outcomes)
    time.sleep(0.5)
    leftovers = [t.name for t in threading.enumerate() if "client-closing" in t.name]
    assert leftovers == []


def _stacks(threads: list[threading.Thread]) -> str:
    """Where every thread is (callers, pool workers, in-process servers), so a hang after
    close() can be diagnosed from the CI log."""
    import sys
    import traceback

    frames = sys._current_frames()
    stuck = {t.ident for t in threads}
    return "\n".join(f"--- {'STUCK ' if t.ident in stuck else ''}{t.name}\n"
                     + "".join(traceback.format_stack(frames[t.ident]))
                     for t in threading.enumerate() if t.ident is not None and t.ident in frames)
