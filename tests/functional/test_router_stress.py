"""One in-process router over 2 peers hammered by 16 threads (R5/R7/R11, rf=2), with uploads
aborted mid-body, client-side timeouts and reads dropped half way, for a bounded time.

Afterwards every successful put reads back byte-exact, the router answers ``/health`` within
2 s, and it holds no more connections to its peers than its idle pool allows (every cancelled
request closed its connection). ``MICTLANX_STRESS_SECONDS`` changes the duration (default 12).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

from mictlanx_sync.server.router.rawhttp import MAX_IDLE_PER_PEER

from .client_support import Cluster

pytestmark = pytest.mark.timeout(240)

THREADS = 16
SECONDS = float(os.environ.get("MICTLANX_STRESS_SECONDS", "12"))
BUCKET = "stress"
NORMAL_TIMEOUT = (5.0, 60.0)  # a healthy router answers well within this, even on a loaded 2-core box


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(peers=2, routers=1) as instance:
        yield instance


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _put_meta(session: requests.Session, url: str, key: str, data: bytes,
              timeout: tuple[float, float] = NORMAL_TIMEOUT) -> str:
    body = {"key": key, "size": len(data), "checksum": hashlib.sha256(data).hexdigest(), "replication_factor": 2}
    resp = session.post(f"{url}/api/v4/buckets/{BUCKET}/metadata", json=body, timeout=timeout)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["tasks_ids"][0])


def _aborted_body(data: bytes, cut: int) -> Iterator[bytes]:
    yield data[:cut]
    raise OSError("the client gave up mid-upload")


class Worker:
    """One thread's loop of operations; records the puts that succeeded and unexpected errors."""

    def __init__(self, index: int, url: str, deadline: float) -> None:
        self.index = index
        self.url = url
        self.deadline = deadline
        self.rng = random.Random(index)
        self.session = requests.Session()
        self.stored: dict[str, tuple[int, int]] = {}  # key -> (seed, size)
        self.errors: list[str] = []
        self.counts = {"put": 0, "get": 0, "aborted": 0, "timeout": 0, "half-read": 0, "abandoned": 0}

    def run(self) -> None:
        j = 0
        try:
            while time.monotonic() < self.deadline:
                j += 1
                key = f"t{self.index}-{j}"
                op = self.rng.choices(["put", "get", "aborted", "timeout", "half-read", "abandoned"],
                                      [8, 6, 2, 1, 2, 1])[0] if self.stored else "put"
                try:
                    getattr(self, "_" + op.replace("-", "_"))(key)
                    self.counts[op] += 1
                except Exception as exc:  # noqa: BLE001 - every unexpected failure is reported
                    self.errors.append(f"{key} {op}: {type(exc).__name__}: {exc}")
        finally:
            self.session.close()

    def _size(self) -> int:
        return self.rng.choice([0, 1, 1024, 64 * 1024, 1024 * 1024 - 3, 1024 * 1024 + 17])

    def _put(self, key: str) -> None:
        seed, size = self.rng.randrange(1 << 30), self._size()
        data = _data(seed, size)
        group = _put_meta(self.session, self.url, key, data)
        resp = self.session.post(f"{self.url}/api/v4/buckets/data/{group}/chunked", data=data,
                                 timeout=NORMAL_TIMEOUT)
        assert resp.status_code == 200, resp.text
        self.stored[key] = (seed, size)

    def _get(self, key: str) -> None:
        name = self.rng.choice(sorted(self.stored))
        seed, size = self.stored[name]
        resp = self.session.get(f"{self.url}/api/v4/buckets/{BUCKET}/{name}", timeout=NORMAL_TIMEOUT)
        assert resp.status_code == 200, resp.text
        assert hashlib.sha256(resp.content).digest() == hashlib.sha256(_data(seed, size)).digest(), name

    def _aborted(self, key: str) -> None:
        """Phase 2 cut by the client mid-body: the router cancels its replica uploads."""
        data = _data(self.rng.randrange(1 << 30), 2 * 1024 * 1024)
        group = _put_meta(self.session, self.url, key, data)
        with requests.Session() as once, pytest.raises((requests.RequestException, OSError)):
            once.post(f"{self.url}/api/v4/buckets/data/{group}/chunked", timeout=NORMAL_TIMEOUT,
                      data=_aborted_body(data, self.rng.randrange(1, len(data))))

    def _timeout(self, key: str) -> None:
        """A client that waits only a few ms for phase 2: the outcome is unknown, never checked."""
        data = _data(self.rng.randrange(1 << 30), self._size())
        group = _put_meta(self.session, self.url, key, data)
        with requests.Session() as once:
            try:
                once.post(f"{self.url}/api/v4/buckets/data/{group}/chunked", data=data, timeout=(5.0, 0.005))
            except requests.RequestException:
                pass

    def _half_read(self, key: str) -> None:
        """R11 read a little, then the client closes: the router drops its peer stream."""
        name = self.rng.choice(sorted(self.stored))
        with requests.Session() as once:
            resp = once.get(f"{self.url}/api/v4/buckets/{BUCKET}/{name}", stream=True, timeout=NORMAL_TIMEOUT)
            assert resp.status_code == 200, resp.text
            next(resp.iter_content(1024), b"")
            resp.close()

    def _abandoned(self, key: str) -> None:
        """Phase 1 only: the group is never claimed."""
        _put_meta(self.session, self.url, key, _data(self.rng.randrange(1 << 30), self._size()))


def _peer_connections(ports: set[int]) -> Optional[int]:
    """ESTABLISHED IPv4 connections to ``ports`` (from /proc; None where unavailable)."""
    path = Path("/proc/net/tcp")
    if not path.exists():
        return None
    count = 0
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) in ports:
            count += 1
    return count


def test_sixteen_threads_hammer_one_router(cluster: Cluster) -> None:
    url = cluster.routers[0].url
    deadline = time.monotonic() + SECONDS
    workers = [Worker(i, url, deadline) for i in range(THREADS)]
    threads = [threading.Thread(target=w.run, name=f"stress-{w.index}") for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "workers still running long after the deadline"
    errors = [e for w in workers for e in w.errors]
    assert errors == [], errors[:20]
    totals = {op: sum(w.counts[op] for w in workers) for op in workers[0].counts}
    print(f"operations in {SECONDS:.0f} s: {totals}")
    assert all(totals.values()), totals  # every kind of operation ran

    started = time.monotonic()
    health = requests.get(f"{url}/health", timeout=2)
    assert health.status_code == 200 and health.json()["available_peers"] == 2
    assert time.monotonic() - started < 2.0

    with requests.Session() as session:
        for worker in workers:
            for key, (seed, size) in worker.stored.items():
                resp = session.get(f"{url}/api/v4/buckets/{BUCKET}/{key}", timeout=NORMAL_TIMEOUT)
                assert resp.status_code == 200, (key, resp.text)
                assert resp.content == _data(seed, size), key
                assert len(cluster.holders(BUCKET, key)) == 2, key

    # No request is left running in the router (a cancelled upload once waited forever for its pieces).
    state = getattr(cluster.routers[0].server.server, "server_state", None)
    if state is not None:
        for _ in range(100):
            if not state.tasks:
                break
            time.sleep(0.1)
        assert len(state.tasks) == 0, f"{len(state.tasks)} router requests still running"

    # Cancelled requests closed their connections: what is left fits the idle pools (plus health checks).
    ports = {p.port for p in cluster.peers}
    for _ in range(50):
        count = _peer_connections(ports)
        if count is None or count <= 2 * MAX_IDLE_PER_PEER + 4:
            break
        time.sleep(0.1)
    assert count is None or count <= 2 * MAX_IDLE_PER_PEER + 4, count
