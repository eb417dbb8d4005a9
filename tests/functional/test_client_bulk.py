"""``put_bulk``/``await_bulk``, ``delete``/``delete_bucket`` and the metadata reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mictlanx_sync import Client
from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    MaxAvailabilityReachedError,
    NotFoundError,
    PutChunksError,
    RequestTimeoutError,
    ValidationError,
)

from . import client_support
from .client_support import Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster

CHUNK = 16 * 1024


def test_bulk_success_bytes_and_files(client: Client, bucket: str, tmp_path: Path) -> None:
    items = {f"bulk-{i}": os.urandom(i * 10_000) for i in range(6)}
    source = tmp_path / "doc.txt"
    source.write_bytes(os.urandom(50_000))
    balls = [{"bucket_id": bucket, "key": k, "source": v, "chunk_size": CHUNK, "rf": 2} for k, v in items.items()]
    balls.append({"bucket_id": bucket, "key": "bulk-file", "source": str(source), "chunk_size": CHUNK,
                  "tags": {"owner": "me"}})
    assert client.put_bulk("job-ok", balls).unwrap() is True
    assert type(client.put_bulk("job-ok", balls).unwrap_err()) is AlreadyExistsError  # a known bulk id
    result = client.await_bulk("job-ok", remove_on_completion=True).unwrap()
    assert result.failures == []
    assert sorted(s["item"]["key"] for s in result.successes) == sorted([*items, "bulk-file"])
    for key, data in items.items():
        assert client.get(bucket, key).unwrap().data.tobytes() == data
    assert client.get(bucket, "bulk-file").unwrap().data.tobytes() == source.read_bytes()
    meta = client.get_metadata(bucket, "bulk-file").unwrap()
    assert (meta.fullname, meta.extension) == ("doc.txt", "txt")
    assert meta.chunks[0].tags["owner"] == "me"
    # Removed on completion: the id is unknown now.
    assert type(client.await_bulk("job-ok").unwrap_err()) is NotFoundError


def test_bulk_validation_error_starts_nothing(cluster: Cluster, client: Client, bucket: str) -> None:
    good = {"bucket_id": bucket, "key": "never-0", "source": b"data"}
    cases = [
        [good, {"bucket_id": bucket, "key": "bad key!", "source": b"x"}],
        [good, {"bucket_id": bucket, "source": b"x"}],
        [good, {"bucket_id": bucket, "key": "k", "source": "/no/such/file"}],
        [good, {"bucket_id": bucket, "key": "k", "source": b"x", "tags": {"index": "1"}}],
        [good, {"bucket_id": bucket, "key": "k", "source": b"x", "rf": "2"}],
        [good, "not a dict"],
    ]
    cluster.log.clear()
    for i, balls in enumerate(cases):
        error = client.put_bulk(f"job-invalid-{i}", balls).unwrap_err()
        assert type(error) is ValidationError, (i, error)
        assert type(client.await_bulk(f"job-invalid-{i}").unwrap_err()) is NotFoundError  # never registered
    assert type(client.put_bulk("bad id!", [good]).unwrap_err()) is ValidationError
    assert cluster.log.all() == []  # nothing started, no request sent
    assert type(client.get(bucket, "never-0").unwrap_err()) is NotFoundError


def test_await_unknown_bulk(client: Client) -> None:
    error = client.await_bulk("no-such-job").unwrap_err()
    assert type(error) is NotFoundError and (error.status_code, error.code) == (404, 404)


def test_bulk_stop_on_failure(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    with new_client(cluster.uri(), tmp_path, max_bulk_workers=1) as c:
        balls = [{"bucket_id": bucket, "key": "sof-0", "source": b"first", "rf": 9}]  # fails: only 3 peers
        balls += [{"bucket_id": bucket, "key": f"sof-{i}", "source": os.urandom(100)} for i in range(1, 5)]
        assert c.put_bulk("job-stop", balls, max_concurrency=1, stop_on_failure=True).unwrap()
        result = c.await_bulk("job-stop", timeout=30).unwrap()
        assert result.successes == []
        errors = {f["item"]["key"]: f["error"] for f in result.failures}
        assert type(errors["sof-0"]) is MaxAvailabilityReachedError
        for i in range(1, 5):
            assert type(errors[f"sof-{i}"]) is PutChunksError and "not started" in errors[f"sof-{i}"].message
            assert cluster.holders(bucket, f"sof-{i}_0") == []
        # Without stop_on_failure the others run.
        assert c.put_bulk("job-go-on", balls, max_concurrency=1).unwrap()
        result = c.await_bulk("job-go-on").unwrap()
        assert [f["item"]["key"] for f in result.failures] == ["sof-0"]
        assert sorted(s["item"]["key"] for s in result.successes) == [f"sof-{i}" for i in range(1, 5)]


def test_await_bulk_timeout_keeps_the_job_running(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    # inline_max=0: every chunk goes up in an R7, which the cluster delays (an inline chunk
    # travels in its R5, undelayed, and the job could finish within the 0.1 s wait).
    with new_client(cluster.uri(), tmp_path, max_bulk_workers=1, inline_max=0) as c:
        cluster.data_delay = 0.05
        try:
            balls = [{"bucket_id": bucket, "key": f"slow-{i}", "source": os.urandom(3 * CHUNK), "chunk_size": CHUNK}
                     for i in range(4)]
            assert c.put_bulk("job-slow", balls).unwrap()
            error = c.await_bulk("job-slow", timeout=0.1).unwrap_err()
            assert type(error) is RequestTimeoutError
            result = c.await_bulk("job-slow").unwrap()
        finally:
            cluster.data_delay = 0.0
        assert len(result.successes) == 4 and result.failures == []


def test_metadata_and_bucket_metadata(client: Client, bucket: str) -> None:
    objects = {"m-a": os.urandom(3 * CHUNK + 1), "m-b": b"", "m-c": os.urandom(10)}
    for key, data in objects.items():
        assert client.put(bucket, key, data, chunk_size=CHUNK, tags={"kind": key}).unwrap()
    ball = client.get_metadata(bucket, "m-a").unwrap()
    assert (ball.bucket_id, ball.ball_id, ball.size, ball.checksum) == (bucket, "m-a", 3 * CHUNK + 1,
                                                                        sha256(objects["m-a"]))
    assert [m.key for m in ball.chunks] == [f"m-a_{i}" for i in range(4)]
    assert ball.chunks[0].tags["kind"] == "m-a"
    stat = client.get_metadata_by_key(bucket, "m-a_3").unwrap()
    assert stat.metadata.size == 1 and stat.metadata.checksum == sha256(objects["m-a"][-1:])

    listed = client.get_bucket_metadata(bucket).unwrap()
    assert listed.bucket_id == bucket
    assert sorted(listed.balls) == ["m-a", "m-b", "m-c"]
    assert listed.size_bytes() == sum(len(d) for d in objects.values())
    for key, data in objects.items():
        assert listed.balls[key].checksum == sha256(data) and listed.balls[key].size == len(data)
    chunks = client.get_chunks_by_bucket_id(bucket).unwrap()
    assert sorted(m.key for m in chunks.balls) == ["m-a_0", "m-a_1", "m-a_2", "m-a_3", "m-b_0", "m-c_0"]
    assert client.get_bucket_metadata("empty-bucket-x").unwrap().balls == {}


def test_delete_and_delete_bucket(cluster: Cluster, client: Client, bucket: str) -> None:
    for i in range(3):
        assert client.put(bucket, f"d-{i}", os.urandom(2 * CHUNK + i), chunk_size=CHUNK, rf=2).unwrap()
    deleted = client.delete("d-0", bucket).unwrap()
    assert deleted.n_deletes >= 3 and deleted.ball_id == "d-0"  # 3 chunks (x2 replicas)
    assert type(client.get(bucket, "d-0").unwrap_err()) is NotFoundError
    assert client.delete("d-0", bucket).unwrap().n_deletes == 0  # idempotent
    assert client.delete_by_key("missing_0", bucket).unwrap().n_deletes == 0

    result = client.delete_bucket(bucket).unwrap()
    assert (result.bucket_id, result.total, result.deleted, result.failed) == (bucket, 6, 6, 0)
    assert sorted(result.keys) == [f"d-{i}_{j}" for i in (1, 2) for j in range(3)]
    assert result.response_time >= 0
    assert client.get_bucket_metadata(bucket).unwrap().balls == {}
    for i in (1, 2):
        assert cluster.holders(bucket, f"d-{i}_0") == []
    empty = client.delete_bucket(bucket).unwrap()
    assert (empty.total, empty.deleted, empty.failed, empty.keys) == (0, 0, 0, [])


@pytest.mark.slow
def test_listing_and_delete_bucket_page_through_more_than_1000_keys(cluster: Cluster, tmp_path: Path,
                                                                     bucket: str) -> None:
    data = os.urandom(1001)
    with new_client(cluster.uri(), tmp_path, max_workers=16) as c:
        assert c.put(bucket, "many", data, chunk_size=1, max_concurrency=16).unwrap()
        assert c.put(bucket, "zz-last", b"z").unwrap()
        listed = c.get_chunks_by_bucket_id(bucket).unwrap()
        assert len(listed.balls) == 1002 and len({m.key for m in listed.balls}) == 1002
        cluster.log.clear()
        bucket_meta = c.get_bucket_metadata(bucket).unwrap()
        assert bucket_meta.balls["many"].size == 1001 and len(bucket_meta.balls["many"].chunks) == 1001
        assert bucket_meta.balls["many"].checksum == sha256(data)
        pages = cluster.log.select(server="mictlanx-router", method="GET", path=rf"/api/v4/buckets/{bucket}/metadata")
        assert len(pages) == 2  # keyset pages of 1000
        result = c.delete_bucket(bucket).unwrap()
        assert (result.total, result.deleted, result.failed) == (1002, 1002, 0)
        assert c.get_chunks_by_bucket_id(bucket).unwrap().balls == []
