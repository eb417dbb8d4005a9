"""Acceptance 4: retries per the policy (client-api §8.1), counted at the servers.

- A router that is down for the first second of an operation: the operation succeeds,
  within the policy (attempts and time).
- 4xx answers (404, 400, 409) are never retried: the server sees exactly one request.
- Retryable answers (503/666 while a peer is down) are retried exactly ``retries`` times.
- ``deadline`` bounds a retried operation, waits included.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync import RetryPolicy
from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    ConnectFailedError,
    MaxAvailabilityReachedError,
    NotFoundError,
    ValidationError,
)

from .client_support import HOST, R5_PUT_METADATA, R7_PUT_DATA, Cluster, new_client, reserve_port, sha256

pytestmark = pytest.mark.timeout(60)

POLICY = RetryPolicy(retries=6, initial_delay=0.3, backoff_factor=2.0, max_delay=2.0, jitter=False, deadline=20)


@pytest.fixture(scope="module")
def one_router() -> Iterator[Cluster]:
    with Cluster(peers=2, routers=1) as instance:
        yield instance


def _start_later(cluster: Cluster, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, cluster.start_router, args=(0,))
    timer.start()
    return timer


@pytest.mark.parametrize("operation", ["put", "get"])
def test_router_down_for_the_first_second(one_router: Cluster, tmp_path: Path, bucket: str, operation: str) -> None:
    data = os.urandom(200_000)
    with new_client(one_router.uri(), tmp_path, retry=POLICY, breaker=None, capacity_storage="0") as c:
        if operation == "get":
            assert c.put(bucket, "late", data, chunk_size=64 * 1024).unwrap()
        one_router.stop_router(0)
        one_router.log.clear()
        timer = _start_later(one_router, 1.0)
        try:
            started = time.monotonic()
            if operation == "put":
                result = c.put(bucket, "late", data, chunk_size=64 * 1024)
            else:
                result = c.get(bucket, "late")
            elapsed = time.monotonic() - started
        finally:
            timer.join(20)
        assert result.is_ok, result
        if operation == "get":
            assert sha256(result.unwrap().data) == sha256(data)
        else:
            assert sha256(c.get(bucket, "late").unwrap().data) == sha256(data)
        # Attempts at 0, 0.3, 0.9, 2.1 s (no jitter): the router is back after ~1 s.
        assert 1.0 <= elapsed < 5.0, elapsed
        # The failed attempts never reached a server; the first request the router saw is
        # the operation's first step (R3 of chunk 0, for a put as for a get).
        first = one_router.log.select(server="mictlanx-router")[0]
        assert first.path == f"/api/v4/buckets/{bucket}/metadata/late_0", first


def test_router_never_back_ends_within_the_policy(tmp_path: Path) -> None:
    port = reserve_port()
    policy = RetryPolicy(retries=4, initial_delay=0.2, backoff_factor=2.0, max_delay=1.0, jitter=False, deadline=30)
    with new_client(f"mictlanx://r@{HOST}:{port}/?protocol=http", tmp_path, retry=policy, breaker=None) as c:
        started = time.monotonic()
        error = c.get("b", "k").unwrap_err()
        elapsed = time.monotonic() - started
    assert type(error) is ConnectFailedError
    assert 0.2 + 0.4 + 0.8 <= elapsed < 3.0, elapsed  # three waits, none after the last attempt


def test_deadline_bounds_the_operation(tmp_path: Path) -> None:
    port = reserve_port()
    policy = RetryPolicy(retries=100, initial_delay=0.2, max_delay=0.2, jitter=False, deadline=1.5)
    with new_client(f"mictlanx://r@{HOST}:{port}/?protocol=http", tmp_path, retry=policy, breaker=None) as c:
        started = time.monotonic()
        assert type(c.get("b", "k").unwrap_err()) is ConnectFailedError
        assert time.monotonic() - started < 2.5


def test_client_errors_are_not_retried(one_router: Cluster, tmp_path: Path, bucket: str) -> None:
    one_router.wait_ready()
    with new_client(one_router.uri(), tmp_path, retry=POLICY, breaker=None) as c:
        one_router.log.clear()
        assert type(c.get(bucket, "nope").unwrap_err()) is NotFoundError
        assert one_router.log.count(server="mictlanx-router", path=rf"/api/v4/buckets/{bucket}/metadata/nope_0") == 1

        one_router.log.clear()
        huge = {"big": "x" * (1 << 20)}  # R5's JSON body over the router's 1 MiB limit: 413/400
        error = c.put(bucket, "huge-tags", b"x", tags=huge).unwrap_err()
        assert type(error) is ValidationError and error.status_code == 413, repr(error)
        assert one_router.log.count(server="mictlanx-router", method="POST", path=R5_PUT_METADATA) == 1

        assert c.put(bucket, "exists", b"one").unwrap()
        one_router.log.clear()
        assert type(c.put(bucket, "exists", b"two").unwrap_err()) is AlreadyExistsError
        # One request, refused by the router's create-only check (Mictlanx-If-Absent), not retried.
        assert one_router.log.count(server="mictlanx-router", method="POST", path=R5_PUT_METADATA) == 1
        assert one_router.log.count(server="mictlanx-router", path=r"/api/v4/buckets/.*/chunked") == 0
        assert c.get(bucket, "exists").unwrap().data.tobytes() == b"one"


def test_unavailable_peer_answers_are_retried(one_router: Cluster, tmp_path: Path, bucket: str) -> None:
    """While a peer is down, R3 of a missing key answers 503/666: retried ``retries`` times."""
    policy = RetryPolicy(retries=3, initial_delay=0.05, max_delay=0.1, jitter=False, deadline=20)
    with new_client(one_router.uri(), tmp_path, retry=policy, breaker=None) as c:
        one_router.stop_peer("mictlanx-peer-1")
        try:
            deadline = time.monotonic() + 10
            while one_router.routers[0].running:
                if requests.get(f"{one_router.routers[0].url}/health", timeout=2).json()["available_peers"] == 1:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            one_router.log.clear()
            error = c.get(bucket, "absent").unwrap_err()
            assert type(error) is MaxAvailabilityReachedError and (error.status_code, error.code) == (503, 666)
            stat = rf"/api/v4/buckets/{bucket}/metadata/absent_0"
            assert one_router.log.count(server="mictlanx-router", path=stat) == 3
        finally:
            one_router.start_peer("mictlanx-peer-1")
            one_router.wait_ready()


def test_lost_write_group_restarts_the_chunk_from_r5(tmp_path: Path, bucket: str) -> None:
    """R7 answers 404 when the group expired (or its router restarted): the chunk upload
    starts again from R5 (client-api §8.1), instead of failing the put."""
    with Cluster(peers=2, routers=1, router_task_ttl=0.3) as short:
        delayed: list[str] = []

        def first_r7_late(method: str, path: str) -> float:
            if method == "POST" and re.fullmatch(R7_PUT_DATA, path) and not delayed:
                delayed.append(path)
                return 0.6  # the group expires meanwhile
            return 0.0

        short.router_delay = first_r7_late
        data = os.urandom(3 * 1000)
        with new_client(short.uri(), tmp_path, retry=POLICY, breaker=None, inline_max=0) as c:  # R5 + R7
            assert c.put(bucket, "regroup", data, chunk_size=1000).unwrap() is True
            assert c.get(bucket, "regroup").unwrap().data.tobytes() == data
        r7 = short.log.select(server="mictlanx-router", method="POST", path=R7_PUT_DATA)
        assert [s.status for s in r7].count(404) == 1 and [s.status for s in r7].count(200) == 3
        assert short.log.count(server="mictlanx-router", method="POST", path=R5_PUT_METADATA) == 4
