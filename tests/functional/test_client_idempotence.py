"""Acceptance 8: idempotent puts, conflicts, and updates that remove leftover chunks.

Requests are counted at the routers (``CountingMiddleware``): R5 is phase 1, R7 is the
phase-2 data upload of one chunk (client-api §8.5).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mictlanx_sync import Client
from mictlanx_sync.protocol.errors import AlreadyExistsError, NotFoundError

from . import client_support
from .client_support import R5_PUT_METADATA, R7_PUT_DATA, Cluster, sha256

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster


def _r7(cluster: Cluster) -> int:
    return cluster.log.count(server="mictlanx-router", method="POST", path=R7_PUT_DATA)


def _r5(cluster: Cluster) -> int:
    return cluster.log.count(server="mictlanx-router", method="POST", path=R5_PUT_METADATA)


def test_same_put_twice_sends_no_data_the_second_time(cluster: Cluster, client: Client,
                                                        bucket: str) -> None:
    data = os.urandom(10 * 1000 + 7)
    cluster.log.clear()
    assert client.put(bucket, "twice", data, chunk_size=1000, rf=2).unwrap() is True
    # One request per chunk the first time: chunks this small go inline with their R5.
    assert _r5(cluster) == 11 and _r7(cluster) == 0
    cluster.log.clear()
    assert client.put(bucket, "twice", data, chunk_size=1000, rf=2).unwrap() is True
    assert _r7(cluster) == 0
    assert _r5(cluster) == 0  # the existence check (R3 of chunk 0, then R12) found the complete object
    assert client.get(bucket, "twice").unwrap().data.tobytes() == data


def test_same_file_twice_sends_no_data(cluster: Cluster, client: Client, bucket: str,
                                       tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(5000))
    assert client.put_file(bucket, "file-twice", source, chunk_size=1024).unwrap() is True
    cluster.log.clear()
    assert client.put_file(bucket, "file-twice", source, chunk_size=1024).unwrap() is True
    assert _r7(cluster) == 0


def test_incomplete_object_is_repaired_by_the_same_put(
        cluster: Cluster, client: Client, bucket: str) -> None:
    """A chunk lost after a put (deleted on every peer): the same put repairs the object."""
    data = os.urandom(4000)
    assert client.put(bucket, "holey", data, chunk_size=1000, rf=1).unwrap() is True
    assert cluster.remove_everywhere(bucket, "holey_2") == 1  # no grace: a hole at once
    assert client.get(bucket, "holey").is_err
    cluster.log.clear()
    assert client.put(bucket, "holey", data, chunk_size=1000, rf=1).unwrap() is True
    # Chunk 0 is there with the same content, but the listing shows a hole: the put writes
    # a whole new version instead of calling the object stored (docs/consistency.md §3.1):
    # chunks 1-3 staged, then chunk 0, each one R5 carrying its bytes (chunks this small go
    # inline), and no R7.
    assert _r5(cluster) == 4 and _r7(cluster) == 0
    assert client.get(bucket, "holey").unwrap().data.tobytes() == data


def test_other_content_without_update_is_already_exists(cluster: Cluster, client: Client,
                                                         bucket: str) -> None:
    first = os.urandom(3000)
    assert client.put(bucket, "conflict", first, chunk_size=1000).unwrap() is True
    cluster.log.clear()
    result = client.put(bucket, "conflict", os.urandom(3000), chunk_size=1000)
    error = result.unwrap_err()
    assert type(error) is AlreadyExistsError
    assert (error.status_code, error.code) == (409, 405)
    assert _r7(cluster) == 0 and _r5(cluster) == 0  # nothing uploaded
    assert client.get(bucket, "conflict").unwrap().data.tobytes() == first


def test_update_replaces_and_removes_leftover_chunks(cluster: Cluster, client: Client,
                                                     bucket: str) -> None:
    old = os.urandom(5000)  # 5 chunks
    assert client.put(bucket, "upd", old, chunk_size=1000, rf=2).unwrap() is True
    assert all(len(cluster.holders(bucket, f"upd_{i}")) == 2 for i in range(5))
    new = os.urandom(2500)  # 3 chunks
    assert client.put(bucket, "upd", new, chunk_size=1000, rf=2, update=True).unwrap() is True
    assert client.get(bucket, "upd").unwrap().data.tobytes() == new
    for i in range(3):
        assert len(cluster.holders(bucket, f"upd_{i}")) == 2
    for i in (3, 4):  # leftovers of the old version, gone from every peer
        assert cluster.holders(bucket, f"upd_{i}") == []
        assert type(client.get_metadata_by_key(bucket, f"upd_{i}").unwrap_err()) is NotFoundError
    ball = client.get_metadata(bucket, "upd").unwrap()
    assert [m.key for m in ball.chunks] == ["upd_0", "upd_1", "upd_2"]
    assert ball.checksum == sha256(new) and ball.size == len(new)


def test_update_with_more_chunks(client: Client, bucket: str) -> None:
    old = os.urandom(1500)
    new = os.urandom(4500)
    assert client.put(bucket, "grow", old, chunk_size=1000).unwrap()
    assert client.put(bucket, "grow", new, chunk_size=1000, update=True).unwrap()
    assert client.get(bucket, "grow").unwrap().data.tobytes() == new
    assert len(client.get_metadata(bucket, "grow").unwrap().chunks) == 5


def test_same_put_reenables_a_disabled_object(cluster: Cluster, client: Client, bucket: str) -> None:
    data = os.urandom(3000)
    assert client.put(bucket, "disabled", data, chunk_size=1000, rf=2).unwrap()
    router = client.routers[0]
    assert router.disable(bucket, "disabled_1").unwrap() is True
    assert client.get(bucket, "disabled").is_err  # a disabled chunk makes the object unreadable
    assert client.put(bucket, "disabled", data, chunk_size=1000, rf=2).unwrap() is True
    assert client.get(bucket, "disabled").unwrap().data.tobytes() == data  # a new version, enabled
    # Other content over a disabled object is still a conflict.
    assert router.disable(bucket, "disabled_0").unwrap() is True
    assert type(client.put(bucket, "disabled", os.urandom(3000), chunk_size=1000).unwrap_err()) is AlreadyExistsError


@pytest.mark.parametrize("rf", [1, 2])
def test_concurrent_puts_of_other_content_never_mix(cluster: Cluster, tmp_path: Path, bucket: str, rf: int) -> None:
    import threading

    from .client_support import new_client

    def run(barrier: threading.Barrier, results: list, i: int, c: Client, key: str, data: bytes) -> None:
        barrier.wait(5)
        results[i] = c.put(bucket, key, data, chunk_size=1000, rf=rf)

    with new_client(cluster.uri(), tmp_path / "a") as a, new_client(cluster.uri(), tmp_path / "b") as b:
        for round_ in range(6):
            key = f"race-{rf}-{round_}"
            datas = [os.urandom(8 * 1000), os.urandom(8 * 1000)]
            results: list = [None, None]
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=run, args=(barrier, results, i, c, key, datas[i]))
                       for i, c in enumerate((a, b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            # Two creates racing are ordered by version (docs/consistency.md §3.1): both may
            # be acknowledged, one may find the other and answer AlreadyExists; never both
            # failing, and the object is always one acknowledged write, never a mix.
            winners = [i for i, r in enumerate(results) if r.is_ok]
            assert winners, results
            for r in results:
                if r.is_err:
                    assert type(r.unwrap_err()) is AlreadyExistsError, r
            got = a.get(bucket, key, force=True)
            assert got.is_ok, got
            assert got.unwrap().data.tobytes() in [datas[i] for i in winners]
