"""Bounded soak: 8 threads mixing put / get / delete of 1 KB-8 MB objects through 2 routers.

``LocalVSS(peers=2, routers=2, mode="process")``: every server is a subprocess, so its file
descriptors and memory can be read from ``/proc/<pid>``. After a warm-up (same workload),
the baseline is taken; then the soak runs (CI: 10 s; ``MICTLANX_LONG_TESTS=1``: 60 s).

Checked: 0 errors; every read byte-identical to what was written (SHA-256); a deleted object
is ``NotFoundError`` afterwards; per server, open fds back within +10 of the baseline and
VmRSS growth < 50 MB after the run.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from mictlanx_sync import Client, LocalVSS
from mictlanx_sync.errors import NotFoundError

from .conftest import child_server_pids, fd_count, pick, rss_bytes

pytestmark = pytest.mark.timeout(pick(300, 1800))

THREADS = 8
WARMUP = pick(3.0, 5.0)
DURATION = pick(10.0, 60.0)
FD_TOLERANCE = 10
RSS_TOLERANCE = 50 * 1024 * 1024
MIN_SIZE, MAX_SIZE = 1_000, 8_000_000
LIVE_PER_THREAD = 4


@dataclass
class Tally:
    ops: dict[str, int] = field(default_factory=lambda: {"put": 0, "get": 0, "delete": 0})
    bytes_moved: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: str, nbytes: int = 0) -> None:
        with self.lock:
            self.ops[op] += 1
            self.bytes_moved += nbytes

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def worker(client: Client, index: int, seed: int, pool: bytes, until: float, tally: Tally, phase: str) -> None:
    rng = random.Random(seed * 1000 + index)
    live: dict[str, str] = {}  # key -> sha256
    counter = 0
    while time.monotonic() < until and len(tally.errors) < 20:
        roll = rng.random()
        try:
            if not live or (roll < 0.45 and len(live) < LIVE_PER_THREAD):
                size = int(round(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random()))
                offset = rng.randrange(len(pool) - size + 1)
                data = counter.to_bytes(8, "big") + rng.randbytes(8) + pool[offset:offset + size - 16]
                key = f"{phase}-t{index}-{counter}"
                counter += 1
                result = client.put("soak", key, data, rf=rng.choice([1, 2]), chunk_size="1MB")
                if result.is_err:
                    tally.error(f"put {key} ({size} B): {result.unwrap_err()!r}")
                    continue
                live[key] = hashlib.sha256(data).hexdigest()
                tally.add("put", size)
            elif roll < 0.85 or len(live) == 1:
                key = rng.choice(sorted(live))
                got = client.get("soak", key)
                if got.is_err:
                    tally.error(f"get {key}: {got.unwrap_err()!r}")
                    continue
                data = got.unwrap().data
                if hashlib.sha256(data).hexdigest() != live[key]:
                    tally.error(f"get {key}: checksum mismatch ({data.nbytes} B)")
                tally.add("get", data.nbytes)
            else:
                key = rng.choice(sorted(live))
                deleted = client.delete(key, "soak")
                if deleted.is_err:
                    tally.error(f"delete {key}: {deleted.unwrap_err()!r}")
                    continue
                del live[key]
                after = client.get("soak", key)
                if after.is_ok or not isinstance(after.unwrap_err(), NotFoundError):
                    tally.error(f"get after delete {key}: {after!r}")
                tally.add("delete")
        except Exception as exc:  # a raise from the client is an error of the run, not a crash of the test
            tally.error(f"{type(exc).__name__}: {exc}")


def run_phase(client: Client, seed: int, pool: bytes, seconds: float, phase: str) -> tuple[Tally, float]:
    tally = Tally()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(client, i, seed, pool, started + seconds, tally, phase))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 300)
    assert not any(t.is_alive() for t in threads), "a soak thread hangs"
    return tally, time.monotonic() - started


def readings(pids: dict[int, str]) -> dict[int, tuple[int, int]]:
    return {pid: (fd_count(pid), rss_bytes(pid)) for pid in pids}


def test_soak_two_routers(seed: int) -> None:
    pool = random.Random(seed).randbytes(MAX_SIZE)
    with LocalVSS(peers=2, routers=2, mode="process", health_interval=0.5) as vss:
        pids = child_server_pids()
        assert sorted(pids.values()) == ["peer", "peer", "router", "router"], pids
        with Client(vss.uri, eviction_policy="NONE", progress=False, max_workers=8) as client:
            warm, _ = run_phase(client, seed, pool, WARMUP, "warm")
            assert not warm.errors, "\n".join(warm.errors[:10])
            time.sleep(1.0)
            before = readings(pids)
            tally, elapsed = run_phase(client, seed, pool, DURATION, "soak")
            time.sleep(1.5)
            after = readings(pids)
    total = sum(tally.ops.values())
    lines = [f"seed={seed}: {total} ops in {elapsed:.1f}s = {total / elapsed:.1f} ops/s "
             f"({tally.bytes_moved / elapsed / 1e6:.1f} MB/s), {tally.ops}, {len(tally.errors)} errors"]
    growth: list[str] = []
    for pid, kind in sorted(pids.items(), key=lambda item: item[1]):
        (fd0, rss0), (fd1, rss1) = before[pid], after[pid]
        lines.append(f"  {kind} pid {pid}: fds {fd0} -> {fd1}; RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB")
        if fd1 > fd0 + FD_TOLERANCE:
            growth.append(f"{kind} {pid}: fds {fd0} -> {fd1}")
        if rss1 - rss0 > RSS_TOLERANCE:
            growth.append(f"{kind} {pid}: RSS +{(rss1 - rss0) / 2**20:.1f} MiB")
    print("\n" + "\n".join(lines))
    assert not tally.errors, f"seed={seed}: {len(tally.errors)} errors:\n" + "\n".join(tally.errors[:20])
    assert tally.ops["put"] and tally.ops["get"] and tally.ops["delete"], f"the mix did not run: {tally.ops}"
    assert not growth, f"seed={seed}: resource growth beyond tolerance: {growth}"
