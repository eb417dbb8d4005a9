"""Acceptance 3: corrupted replicas on disk (protocol §3.1 layout, client-api §8.6).

One replica of a chunk has bytes flipped in its version file (rf=2): every read path
returns the right bytes from the other replica. Both replicas flipped: a typed
``IntegrityError``, and ``get_to_file`` leaves neither the file nor a ``.part`` behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync import Client, RetryPolicy
from mictlanx_sync.protocol.errors import IntegrityError

from . import client_support
from .client_support import Cluster, flip_bytes, new_client, sha256

pytestmark = pytest.mark.timeout(60)
cluster = client_support.cluster

CHUNK = 64 * 1024
RETRY = RetryPolicy(retries=3, initial_delay=0.05, max_delay=0.2, deadline=20)


def _serving_peer(cluster: Cluster, bucket: str, key: str) -> str:
    """The peer a router's R11 reads ``key`` from (the highest-ranked holder)."""
    resp = requests.get(f"{cluster.routers[0].url}/api/v4/buckets/{bucket}/{key}", timeout=10)
    assert resp.status_code == 200
    return resp.headers["Peer-Id"]


def _store(cluster: Cluster, client: Client, bucket: str, key: str) -> bytes:
    data = os.urandom(4 * CHUNK - 100)
    assert client.put(bucket, key, data, chunk_size=CHUNK, rf=2).unwrap()
    assert len(cluster.holders(bucket, f"{key}_1")) == 2
    return data


def _corrupt(cluster: Cluster, peer_id: str, bucket: str, chunk_key: str) -> None:
    files = cluster.version_files(peer_id, bucket, chunk_key)
    assert len(files) == 1, files
    flip_bytes(files[0], offset=100, count=8)


@pytest.fixture()
def reader(cluster: Cluster, tmp_path: Path) -> Iterator[Client]:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", retry=RETRY) as c:
        yield c


def test_one_bad_replica_is_skipped(cluster: Cluster, reader: Client, bucket: str, tmp_path: Path) -> None:
    data = _store(cluster, reader, bucket, "one-bad")
    bad = _serving_peer(cluster, bucket, "one-bad_1")
    _corrupt(cluster, bad, bucket, "one-bad_1")
    (good,) = [p for p in cluster.holders(bucket, "one-bad_1") if p != bad]
    # The router still serves the corrupted copy (it does not verify): the client must.
    assert sha256(requests.get(f"{cluster.routers[0].url}/api/v4/buckets/{bucket}/one-bad_1",
                               timeout=10).content) != sha256(data[CHUNK:2 * CHUNK])
    cluster.log.clear()
    assert reader.get(bucket, "one-bad").unwrap().data.tobytes() == data
    pinned = cluster.log.select(server="mictlanx-router", method="GET", path=f"/api/v4/buckets/{bucket}/one-bad_1",
                                where=lambda s: s.headers.get("peer-id") == good)
    assert len(pinned) == 1 and pinned[0].status == 200  # re-read from the other replica, pinned with Peer-Id

    path = reader.get_to_file(bucket, "one-bad", str(tmp_path / "out")).unwrap()
    assert Path(path).read_bytes() == data
    ordered = b"".join(v.tobytes() for _, v in reader.get_chunks(bucket, "one-bad", order=True))
    assert ordered == data
    assert reader.get_chunk(bucket, "one-bad", 1).unwrap()[0].data == data[CHUNK:2 * CHUNK]


def test_bad_chunk_zero_replica(cluster: Cluster, reader: Client, bucket: str) -> None:
    data = _store(cluster, reader, bucket, "bad-zero")
    _corrupt(cluster, _serving_peer(cluster, bucket, "bad-zero_0"), bucket, "bad-zero_0")
    assert reader.get(bucket, "bad-zero").unwrap().data.tobytes() == data


def test_every_replica_bad_is_integrity_error(cluster: Cluster, reader: Client, bucket: str,
                                              tmp_path: Path) -> None:
    _store(cluster, reader, bucket, "all-bad")
    for peer_id in cluster.holders(bucket, "all-bad_2"):
        _corrupt(cluster, peer_id, bucket, "all-bad_2")

    error = reader.get(bucket, "all-bad").unwrap_err()
    assert type(error) is IntegrityError and (error.status_code, error.code) == (400, 501), repr(error)
    assert error.bucket_id == bucket

    out = tmp_path / "out"
    error = reader.get_to_file(bucket, "all-bad", str(out), fullname="result.bin").unwrap_err()
    assert type(error) is IntegrityError and (error.status_code, error.code) == (400, 501)
    assert list(out.iterdir()) == []  # neither result.bin nor .result.bin.*.part

    with pytest.raises(IntegrityError):
        for _ in reader.get_chunks(bucket, "all-bad", order=True):
            pass
    assert type(reader.get_chunk(bucket, "all-bad", 2).unwrap_err()) is IntegrityError
    # The other chunks are still fine.
    assert reader.get_chunk(bucket, "all-bad", 1).is_ok


def test_tampered_object_checksum_is_integrity_error(cluster: Cluster, reader: Client, bucket: str) -> None:
    """Chunks that are each valid but belong to different versions fail ``full_checksum``."""
    data = _store(cluster, reader, bucket, "mixed")
    # Replace chunk 3 through the raw router API with the same size but other bytes and
    # the same tags (a writer that broke the layout rules).
    meta = reader.get_metadata_by_key(bucket, "mixed_3").unwrap().metadata
    other = os.urandom(meta.size)
    # Gone at the object's version first: otherwise pinned reads keep reading it for the
    # version grace (docs/consistency.md §3.2) and never see the intruder.
    assert cluster.remove_everywhere(bucket, "mixed_3") >= 1
    body = {"key": "mixed_3", "size": len(other), "checksum": sha256(other), "tags": meta.tags,
            "ball_id": "mixed", "replication_factor": 2}
    router = cluster.routers[0].url
    r5 = requests.post(f"{router}/api/v4/buckets/{bucket}/metadata", json=body, headers={"Update": "1"}, timeout=10)
    assert r5.status_code == 200, r5.text
    r7 = requests.post(f"{router}/api/v4/buckets/data/{r5.json()['tasks_ids'][0]}/chunked", data=other, timeout=10)
    assert r7.status_code == 200, r7.text
    error = reader.get(bucket, "mixed").unwrap_err()
    assert type(error) is IntegrityError, repr(error)
    assert reader.get(bucket, "mixed", verify_full=False).unwrap().data.tobytes()[:3 * CHUNK] == data[:3 * CHUNK]


def test_truncated_replica_is_skipped(cluster: Cluster, reader: Client, bucket: str) -> None:
    """A short version file on the serving peer (a short body, not a checksum mismatch)."""
    data = _store(cluster, reader, bucket, "short")
    bad = _serving_peer(cluster, bucket, "short_1")
    (path,) = cluster.version_files(bad, bucket, "short_1")
    with open(path, "r+b") as handle:
        handle.truncate(CHUNK // 2)
    started = time.monotonic()
    assert reader.get(bucket, "short").unwrap().data.tobytes() == data
    assert time.monotonic() - started < 10


def test_router_without_etag_reads_checksums_from_r12(cluster: Cluster, reader: Client, bucket: str,
                                                       tmp_path: Path) -> None:
    """Upstream routers send no ``ETag``: each chunk is checked against R12's listing (client-api §8.6)."""
    data = _store(cluster, reader, bucket, "no-etag")
    cluster.router_strip_headers = {b"etag"}
    try:
        cluster.log.clear()
        assert reader.get(bucket, "no-etag").unwrap().data.tobytes() == data
        listings = cluster.log.count(server="mictlanx-router", method="GET",
                                     path=rf"/api/v4/buckets/{bucket}/metadata/no-etag/chunks")
        assert listings == 1  # once per read, whatever the number of chunks
        assert b"".join(v.tobytes() for _, v in reader.get_chunks(bucket, "no-etag", order=True)) == data
        assert Path(reader.get_to_file(bucket, "no-etag", str(tmp_path / "o")).unwrap()).read_bytes() == data
        # A bad replica is still caught and skipped, with the listing's checksum.
        _corrupt(cluster, _serving_peer(cluster, bucket, "no-etag_2"), bucket, "no-etag_2")
        assert reader.get(bucket, "no-etag").unwrap().data.tobytes() == data
    finally:
        cluster.router_strip_headers = set()
