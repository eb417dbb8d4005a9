"""``get_chunks`` is held to the client-wide buffer budget (client-api §8.2, issue 15).

A client keeps at most ``max_workers`` chunk buffers in flight, whatever the number of calls:
every chunk task takes one buffer token before it is queued and gives it back when it ends.
``get_chunks`` used to submit its chunk tasks without a token, so it read chunks while other
calls held the whole budget. These tests count the buffers: the budget is replaced by a
counting semaphore, and each chunk fetch checks that a token stands behind it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from mictlanx_sync import Client
from mictlanx_sync.client.chunk_fetch import ChunkFetcher

from . import client_support
from .client_support import P5_GET_DATA, Cluster, new_client

pytestmark = pytest.mark.timeout(60)
cluster = client_support.cluster

CHUNK = 96 * 1024  # above the inline limit: every chunk is its own R11
WORKERS = 2


class CountingBudget:
    """A ``BoundedSemaphore`` that counts the tokens taken now and at most."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.held = 0
        self.peak = 0

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        taken = self.inner.acquire(blocking, timeout) if timeout is not None else self.inner.acquire(blocking)
        if taken:
            with self.lock:
                self.held += 1
                self.peak = max(self.peak, self.held)
        return bool(taken)

    def release(self) -> None:
        with self.lock:
            self.held -= 1
        self.inner.release()


@pytest.fixture()
def counted(tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client with max_workers=2 and a counting budget; each chunk fetch records how many
    fetches run and how many tokens are taken at that moment."""
    client = new_client(cluster.uri(), tmp_path, max_workers=WORKERS, capacity_storage="0")
    budget = CountingBudget(client._executor._budget)
    client._executor._budget = budget
    fetching = [0]
    seen: list[tuple[int, int]] = []  # (fetches running, tokens taken) at each fetch's start
    lock = threading.Lock()
    original = ChunkFetcher.fetch

    def fetch(self: ChunkFetcher, *args: Any, **kwargs: Any) -> Any:
        with lock:
            fetching[0] += 1
            seen.append((fetching[0], budget.held))
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                fetching[0] -= 1

    monkeypatch.setattr(ChunkFetcher, "fetch", fetch)
    try:
        yield client, budget, seen
    finally:
        client.close()


def test_every_chunk_get_chunks_reads_holds_a_buffer_of_the_budget(counted: Any, bucket: str) -> None:
    client, budget, seen = counted
    data = os.urandom(8 * CHUNK)
    assert client.put(bucket, "k", data, chunk_size=CHUNK).unwrap()
    seen.clear()
    got = b"".join(view.tobytes() for _, view in client.get_chunks(bucket, "k", max_parallel_gets=10, order=True))
    assert got == data
    assert len(seen) == 8
    assert all(running <= held for running, held in seen), seen  # a token behind every buffer being filled
    assert budget.peak <= WORKERS and budget.held == 0


def test_get_chunks_reads_nothing_while_other_calls_hold_the_whole_budget(counted: Any, cluster: Cluster,
                                                                           bucket: str) -> None:
    client, budget, seen = counted
    data = os.urandom(4 * CHUNK)
    assert client.put(bucket, "k", data, chunk_size=CHUNK).unwrap()
    results: list[bytes] = []
    with contextlib.ExitStack() as held:
        for _ in range(WORKERS):  # another call's buffers: the whole budget
            held.enter_context(client._executor.reserve())
        cluster.log.clear()
        reader = threading.Thread(target=lambda: results.append(
            b"".join(v.tobytes() for _, v in client.get_chunks(bucket, "k", order=True))))
        reader.start()
        time.sleep(1.0)
        data_reads = cluster.log.count(server="mictlanx-router", method="GET", path=P5_GET_DATA)
        assert data_reads == 0, "get_chunks read chunks while the budget was spent"
    reader.join(30)
    assert results == [data]
    assert budget.held == 0


def test_concurrent_puts_and_get_chunks_share_one_budget(counted: Any, bucket: str) -> None:
    client, budget, seen = counted
    data = os.urandom(6 * CHUNK)
    assert client.put(bucket, "read-me", data, chunk_size=CHUNK).unwrap()
    seen.clear()
    errors: list[BaseException] = []

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    def read() -> None:
        for _ in range(3):
            assert b"".join(v.tobytes() for _, v in client.get_chunks(bucket, "read-me")) != b""

    def write(i: int) -> None:
        assert client.put(bucket, f"w{i}", os.urandom(6 * CHUNK), chunk_size=CHUNK).unwrap()

    threads = [threading.Thread(target=run, args=(read,)) for _ in range(2)]
    threads += [threading.Thread(target=run, args=(lambda i=i: write(i),)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(running <= held for running, held in seen), seen
    assert budget.peak <= WORKERS and budget.held == 0


def test_a_closed_client_ends_get_chunks_with_client_closed_error(tmp_path: Path, cluster: Cluster,
                                                                   bucket: str) -> None:
    client: Client = new_client(cluster.uri(), tmp_path, capacity_storage="0")
    assert client.put(bucket, "k", os.urandom(2 * CHUNK), chunk_size=CHUNK).unwrap()
    chunks = client.get_chunks(bucket, "k")
    client.close()
    from mictlanx_sync.errors import ClientClosedError
    with pytest.raises(ClientClosedError):
        next(chunks)
