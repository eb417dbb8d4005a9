"""Acceptance 9: every error type reaches the caller unchanged (type, status, code).

Also: a closed client answers ``Err(ClientClosedError)`` (a ``ValidationError``), and validation failures are
reported before any request is sent.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mictlanx_sync import BreakerPolicy, Client, RetryPolicy
from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    CircuitOpenError,
    ClientClosedError,
    ConnectFailedError,
    MaxAvailabilityReachedError,
    MictlanXError,
    NotFoundError,
    RequestTimeoutError,
    ValidationError,
)
from mictlanx_sync.protocol.file_errors import LocalFileNotFoundError

from . import client_support
from .client_support import HOST, Cluster, StallingServer, new_client, reserve_port

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster

FAST = RetryPolicy(retries=3, initial_delay=0.05, max_delay=0.1, jitter=False, deadline=10)


def _exactly(error: MictlanXError, cls: type, status: int, code: int) -> None:
    assert type(error) is cls, repr(error)
    assert (error.status_code, error.code) == (status, code), repr(error)


def test_not_found(client: Client, bucket: str) -> None:
    _exactly(client.get(bucket, "missing").unwrap_err(), NotFoundError, 404, 404)
    _exactly(client.get_metadata(bucket, "missing").unwrap_err(), NotFoundError, 404, 404)
    _exactly(client.get_metadata_by_key(bucket, "missing_0").unwrap_err(), NotFoundError, 404, 404)
    _exactly(client.get_chunk(bucket, "missing", 0).unwrap_err(), NotFoundError, 404, 404)
    with pytest.raises(NotFoundError):
        next(client.get_chunks(bucket, "missing"))


def test_not_found_is_not_retried(cluster: Cluster, client: Client, bucket: str) -> None:
    cluster.log.clear()
    assert type(client.get(bucket, "missing-once").unwrap_err()) is NotFoundError
    # One R3 for chunk 0, on one router: a 404 is final.
    assert cluster.log.count(server="mictlanx-router", method="GET",
                             path=f"/api/v4/buckets/{bucket}/metadata/missing-once_0") == 1


def test_already_exists(client: Client, bucket: str, tmp_path: Path) -> None:
    assert client.put(bucket, "taken", b"one").unwrap()
    _exactly(client.put(bucket, "taken", b"two").unwrap_err(), AlreadyExistsError, 409, 405)
    # A local file with other content is an AlreadyExistsError too (unless overwrite=True).
    (tmp_path / "taken").write_bytes(b"other")
    _exactly(client.get_to_file(bucket, "taken", str(tmp_path)).unwrap_err(), AlreadyExistsError, 409, 405)
    assert client.get_to_file(bucket, "taken", str(tmp_path), overwrite=True).unwrap() == str(tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"one"


def test_max_availability_reached(cluster: Cluster, client: Client, bucket: str) -> None:
    cluster.log.clear()
    error = client.put(bucket, "rf4", os.urandom(100), rf=4).unwrap_err()
    _exactly(error, MaxAvailabilityReachedError, 404, 666)
    # R5's 404/666 is final: one R5, no retry, and nothing written.
    assert cluster.log.count(server="mictlanx-router", method="POST", path=f"/api/v4/buckets/{bucket}/metadata") == 1
    assert cluster.holders(bucket, "rf4_0") == []


def test_validation_errors_send_nothing(cluster: Cluster, client: Client, bucket: str) -> None:
    cluster.log.clear()
    cases = [
        client.put("bad bucket", "k", b"x"),
        client.put(bucket, "k" * 241, b"x"),
        client.put(bucket, "k", b"x", tags={"index": "3"}),
        client.put(bucket, "k", b"x", tags={"n": 1}),  # type: ignore[dict-item]
        client.put(bucket, "k", b"x", rf=0),
        client.put(bucket, "k", b"x", chunk_size="lots"),
        client.get(bucket, "bad/key"),
        client.get(bucket, "k", max_delay=1, max_backoff=2),  # two spellings, two values
    ]
    for result in cases:
        error = result.unwrap_err()
        _exactly(error, ValidationError, 400, 400)
    # issue 14: a missing file is a ValidationError (400) that is also a FileNotFoundError
    missing = client.put_file(bucket, "k", "/nonexistent/file").unwrap_err()
    _exactly(missing, LocalFileNotFoundError, 400, 400)
    assert isinstance(missing, ValidationError) and isinstance(missing, FileNotFoundError)
    assert cluster.log.all() == []


def test_closed_client_answers_validation_error(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    c = new_client(cluster.uri(), tmp_path)
    assert c.put(bucket, "before-close", b"x").unwrap()
    c.close()
    c.close()  # idempotent
    results = [
        c.put(bucket, "k", b"x"), c.get(bucket, "before-close"), c.put_file(bucket, "k", __file__),
        c.get_to_file(bucket, "before-close", str(tmp_path)), c.delete("before-close", bucket),
        c.delete_by_key("before-close_0", bucket), c.get_metadata(bucket, "before-close"),
        c.get_bucket_metadata(bucket), c.delete_bucket(bucket), c.put_bulk("bulk1", []), c.await_bulk("bulk1"),
        c.get_metadata_by_key(bucket, "before-close_0"), c.get_chunk(bucket, "before-close", 0),
        c.put_chunks(bucket, "k", [b"x"]), c.get_chunks_by_bucket_id(bucket),
    ]
    for result in results:
        error = result.unwrap_err()
        assert type(error) is ClientClosedError and "closed" in error.message, repr(error)
        assert isinstance(error, ValidationError) and (error.status_code, error.code) == (1008, 1008)
    with pytest.raises(ValidationError):
        next(c.get_chunks(bucket, "before-close"))


def test_circuit_open_when_every_breaker_is_open(tmp_path: Path) -> None:
    ports = [reserve_port(), reserve_port()]  # nothing listens there: connection refused
    uri = ",".join(f"r{i}@{HOST}:{p}" for i, p in enumerate(ports))
    with new_client(f"mictlanx://{uri}/?protocol=http", tmp_path, retry=FAST,
                    breaker=BreakerPolicy(fail_max=1, reset_timeout=60)) as c:
        first = c.get("b", "k").unwrap_err()
        assert isinstance(first, (ConnectFailedError, CircuitOpenError)), repr(first)
        assert [c.breaker_state(r) for r in c.routers] == ["open", "open"]
        started = time.monotonic()
        error = c.get("b", "k").unwrap_err()
        _exactly(error, CircuitOpenError, 1003, 1003)
        assert time.monotonic() - started < 2  # no backoff wait beyond the policy's tiny delays
        _exactly(c.put("b", "k", b"x").unwrap_err(), CircuitOpenError, 1003, 1003)


def test_connect_refused_is_connect_failed(tmp_path: Path) -> None:
    port = reserve_port()
    with new_client(f"mictlanx://r@{HOST}:{port}/?protocol=http", tmp_path, retry=FAST, breaker=None) as c:
        _exactly(c.get("b", "k").unwrap_err(), ConnectFailedError, 1001, 1001)


def test_read_timeout_against_a_stalling_server(tmp_path: Path) -> None:
    with StallingServer() as stall, new_client(stall.uri, tmp_path, timeout=(1, 1),
                                               retry=RetryPolicy(retries=1), breaker=None) as c:
        started = time.monotonic()
        error = c.get("b", "k").unwrap_err()
        elapsed = time.monotonic() - started
        _exactly(error, RequestTimeoutError, 1004, 1004)
        assert 0.9 <= elapsed < 5, elapsed
        assert len(stall.accepted) == 1  # retries=1: exactly one attempt
        _exactly(c.put("b", "k", b"x").unwrap_err(), RequestTimeoutError, 1004, 1004)


def test_an_object_too_large_for_memory_is_an_err(client: Client, bucket: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``get`` holds the object in memory: when the process cannot allocate it, the Result API
    answers ``ValidationError`` pointing at ``get_to_file`` instead of raising ``MemoryError``."""
    import mictlanx_sync.client.result_buffers as buffers

    data = os.urandom(4096)
    assert client.put(bucket, "too-large", data, chunk_size=1024).unwrap()

    def no_memory(size: int) -> bytearray:
        raise MemoryError(size)

    monkeypatch.setattr(buffers, "unfilled_bytearray", no_memory)
    result = client.get(bucket, "too-large", force=True)  # force: the size is the servers', not the cache's
    assert result.is_err
    error = result.unwrap_err()
    _exactly(error, ValidationError, 400, 400)
    assert "get_to_file" in error.message and isinstance(error.__cause__, MemoryError)
    monkeypatch.undo()
    assert client.get(bucket, "too-large").unwrap().data.tobytes() == data
