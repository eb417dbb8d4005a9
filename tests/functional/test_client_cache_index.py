"""The per-version index and the whole-object check (client-api §8.3, §8.6).

- A read served entirely from the cache through a verified index makes no data request
  and skips the ``full_checksum`` pass (each chunk is still re-hashed): the index is
  stored only after a read whose whole object hashed to ``full_checksum``.
- Any chunk from the network (a corrupt entry, an evicted one, a contradicting ETag)
  makes the pass run: a wrong index or a replaced chunk on the peers is caught.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from mictlanx_sync import Client
from mictlanx_sync.client.cache import _index_key
from mictlanx_sync.client.full_hash import FullHash
from mictlanx_sync.protocol.errors import IntegrityError
from mictlanx_sync.protocol.models import Chunk

from . import client_support
from .client_support import P5_GET_DATA, Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster

CHUNK = 64 * 1024  # above diskcache's 32 KiB: entries are files, read with readinto


@pytest.fixture()
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Optional[bool], bool]]:
    """``(verdict, computed)`` of every whole-object check: ``computed`` False = proven by the index."""
    seen: list[tuple[Optional[bool], bool]] = []
    original = FullHash.verdict

    def spy(self: FullHash) -> Optional[bool]:
        result = original(self)
        seen.append((result, self.computed))
        return result

    monkeypatch.setattr(FullHash, "verdict", spy)
    return seen


def _data_requests(cluster: Cluster) -> int:
    return cluster.log.count(method="GET", path=P5_GET_DATA)


def _peer_reads(cluster: Cluster, key: str) -> int:
    return cluster.log.count(server="mictlanx-peer", method="GET", path=rf"/api/v4/buckets/[^/]+/{key}")


def _index(client: Client, bucket: str, key: str, data: bytes, n: int) -> Any:
    return client.cache.get(_index_key((bucket, key, sha256(data), n)))


def test_full_hit_skips_the_pass_and_still_catches_a_corrupt_entry(
        cluster: Cluster, client: Client, bucket: str, tmp_path: Path,
        verdicts: list[tuple[Optional[bool], bool]]) -> None:
    data = os.urandom(4 * CHUNK + 5)
    assert client.put(bucket, "hit", data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "hit").unwrap().data.tobytes() == data
    assert verdicts[-1] == (True, True)  # the miss hashed the whole object, then stored the index
    assert _index(client, bucket, "hit", data, 5) is not None

    cluster.log.clear()
    assert client.get(bucket, "hit").unwrap().data.tobytes() == data
    assert _data_requests(cluster) == 0 and verdicts[-1] == (True, False)  # proven, not hashed

    # A corrupt entry (same size): re-hashed, deleted, fetched again; the pass runs.
    entry = f"chunk:{sha256(data[2 * CHUNK:3 * CHUNK])}"
    client.cache.set(entry, b"\x00" * CHUNK)
    cluster.log.clear()
    assert client.get(bucket, "hit").unwrap().data.tobytes() == data
    assert _peer_reads(cluster, "hit_2") == 1 and _data_requests(cluster) == 2  # peer + router, chunk 2 only
    assert verdicts[-1] == (True, True)
    assert client.cache.get(entry) == data[2 * CHUNK:3 * CHUNK]  # repaired

    # get_to_file reads through the same index: proven again, no data request.
    cluster.log.clear()
    path = client.get_to_file(bucket, "hit", str(tmp_path / "out"), fullname="hit.bin").unwrap()
    assert Path(path).read_bytes() == data
    assert _data_requests(cluster) == 0 and verdicts[-1] == (True, False)
    # ... and catches a corrupt entry the same way.
    client.cache.set(entry, b"\x01" * CHUNK)
    cluster.log.clear()
    path = client.get_to_file(bucket, "hit", str(tmp_path / "out2"), fullname="hit.bin").unwrap()
    assert Path(path).read_bytes() == data
    assert _peer_reads(cluster, "hit_2") == 1 and verdicts[-1] == (True, True)


def test_mixed_read_with_a_wrong_index_fails_the_full_checksum(
        cluster: Cluster, client: Client, bucket: str, verdicts: list[tuple[Optional[bool], bool]]) -> None:
    """An index naming another object's (cached, intact) chunk: chunk re-hashes pass, but one
    chunk comes from the network, so the whole object is hashed and the mismatch caught."""
    x, y = os.urandom(3 * CHUNK), os.urandom(3 * CHUNK)
    assert client.put(bucket, "x", x, chunk_size=CHUNK).unwrap()
    assert client.put(bucket, "y", y, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "x").unwrap().data.tobytes() == x
    assert client.get(bucket, "y").unwrap().data.tobytes() == y
    sums = [sha256(x[i:i + CHUNK]) for i in range(0, 3 * CHUNK, CHUNK)]
    key = _index_key((bucket, "x", sha256(x), 3))
    client.cache.set(key, "\n".join(["v2", sums[0], sha256(y[CHUNK:2 * CHUNK]), sums[2]]))
    client.cache.delete(f"chunk:{sums[2]}")  # the last chunk comes from the network
    cluster.log.clear()
    error = client.get(bucket, "x").unwrap_err()
    assert type(error) is IntegrityError and "full_checksum" in error.message
    assert verdicts[-1] == (False, True)
    assert _peer_reads(cluster, "x_2") == 1 and _peer_reads(cluster, "x_1") == 0  # chunk 1 came from the cache
    # The failed check dropped the index: the next read is right (and stores a good one).
    assert client.cache.get(key) is None
    assert client.get(bucket, "x").unwrap().data.tobytes() == x
    assert _index(client, bucket, "x", x, 3) == "\n".join([f"v2 {len(x)}", *sums])


def test_chunk_replaced_on_the_peers_is_caught(cluster: Cluster, client: Client, bucket: str,
                                               verdicts: list[tuple[Optional[bool], bool]]) -> None:
    """Chunk 1 rewritten on the peers with other, self-consistent bytes (ETag = its checksum)."""
    x, other = os.urandom(3 * CHUNK), os.urandom(CHUNK)
    assert client.put(bucket, "swap", x, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "swap").unwrap().data.tobytes() == x
    # Gone from the peers with no grace, then rewritten: pinned reads find no copy at the
    # object's version and read the newest (docs/consistency.md §3.2).
    assert cluster.remove_everywhere(bucket, "swap_1") >= 1
    assert client.put_single_chunk(bucket, "swap", Chunk("swap", 1, other), update=True).unwrap()
    client.cache.delete(f"chunk:{sha256(x[CHUNK:2 * CHUNK])}")
    error = client.get(bucket, "swap").unwrap_err()  # chunks 0 and 2 cached, chunk 1 not
    assert type(error) is IntegrityError and "full_checksum" in error.message
    assert verdicts[-1] == (False, True)
    assert _index(client, bucket, "swap", x, 3) is None  # contradicted by the ETag, then not re-stored
    # verify_full=False returns what the peers hold, and stores no index for it either.
    got = client.get(bucket, "swap", verify_full=False).unwrap().data.tobytes()
    assert got == x[:CHUNK] + other + x[2 * CHUNK:]
    assert _index(client, bucket, "swap", x, 3) is None
    with pytest.raises(IntegrityError):
        b"".join(v.tobytes() for _, v in client.get_chunks(bucket, "swap", order=True))


def test_verify_full_false_still_stores_a_checked_index(cluster: Cluster, client: Client, bucket: str,
                                                        verdicts: list[tuple[Optional[bool], bool]]) -> None:
    data = os.urandom(2 * CHUNK + 3)
    assert client.put(bucket, "unverified", data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "unverified", verify_full=False).unwrap().data.tobytes() == data
    assert verdicts[-1] == (True, True) and _index(client, bucket, "unverified", data, 3) is not None
    cluster.log.clear()
    assert client.get(bucket, "unverified", verify_full=False).unwrap().data.tobytes() == data
    assert _data_requests(cluster) == 0


def test_large_objects_and_small_pieces(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    """Objects above 1 MiB (result buffer not zeroed first), pieces smaller than chunks,
    with and without the cache (get_to_file: chunk buffer, or one staging piece)."""
    data = os.urandom(3 * 1024 * 1024 + 7)
    for capacity in ("0", "64MB"):
        with new_client(cluster.uri(), tmp_path / capacity, capacity_storage=capacity) as c:
            assert c.put(bucket, f"large-{capacity}", data, chunk_size=700_000).unwrap()
            for _ in range(2):  # a miss, then (with the cache) a hit
                got = c.get(bucket, f"large-{capacity}", chunk_size="64kb").unwrap()
                assert got.data.tobytes() == data and got.data.nbytes == len(data)
                out = tmp_path / f"out-{capacity}"
                path = c.get_to_file(bucket, f"large-{capacity}", str(out), fullname="f.bin", chunk_size="64kb",
                                     overwrite=True).unwrap()
                assert Path(path).read_bytes() == data
                Path(path).unlink()


# --- the index also gives the object's size: a hit needs only the R3 on chunk 0 -------------------
def _stats(cluster: Cluster, bucket: str, key: str) -> list[str]:
    return [s.path.rsplit("/", 1)[1] for s in cluster.log.select(
        server="mictlanx-router", method="GET", path=rf"/api/v4/buckets/{bucket}/metadata/{key}_\d+")]


def test_a_hit_asks_only_chunk_0(cluster: Cluster, client: Client, bucket: str) -> None:
    data = os.urandom(4 * CHUNK + 9)
    assert client.put(bucket, "one-r3", data, chunk_size=CHUNK).unwrap()
    cluster.log.clear()
    assert client.get(bucket, "one-r3").unwrap().data.tobytes() == data
    assert _stats(cluster, bucket, "one-r3") == ["one-r3_0", "one-r3_4"]  # a miss: chunk 0 and the last
    assert _index(client, bucket, "one-r3", data, 5).split("\n")[0] == f"v2 {len(data)}"
    cluster.log.clear()
    got = client.get(bucket, "one-r3").unwrap()
    assert got.data.tobytes() == data and got.metadatas[4].size == 9
    assert _stats(cluster, bucket, "one-r3") == ["one-r3_0"] and _data_requests(cluster) == 0
    # force=True neither reads the cache nor trusts its sizes.
    cluster.log.clear()
    assert client.get(bucket, "one-r3", force=True).unwrap().data.tobytes() == data
    assert _stats(cluster, bucket, "one-r3") == ["one-r3_0", "one-r3_4"]


def _cached_with_indexed_size(client: Client, bucket: str, key: str,
                              indexed: Callable[[int], int]) -> tuple[bytes, list[str]]:
    """Put and read a 4-chunk object (storing its index), then rewrite the size the index
    records; the object and the index's original lines."""
    data = os.urandom(3 * CHUNK + 100)
    assert client.put(bucket, key, data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, key).unwrap().data.tobytes() == data
    index_key = _index_key((bucket, key, sha256(data), 4))
    lines = client.cache.get(index_key).split("\n")
    client.cache.set(index_key, "\n".join([f"v2 {indexed(len(data))}", *lines[1:]]))
    return data, lines


@pytest.mark.parametrize("delta", [1, -1])
def test_an_index_with_a_wrong_size_is_dropped_and_the_read_restarts(
        cluster: Cluster, client: Client, bucket: str, delta: int,
        verdicts: list[tuple[Optional[bool], bool]]) -> None:
    key = f"wrong-size-{delta}"
    data, lines = _cached_with_indexed_size(client, bucket, key, lambda size: size + delta)
    cluster.log.clear()
    got = client.get(bucket, key).unwrap()  # the last chunk cannot match: restart, located afresh
    assert got.data.tobytes() == data and got.data.nbytes == len(data)
    assert _stats(cluster, bucket, key)[-2:] == [f"{key}_0", f"{key}_3"]
    assert verdicts[-1] == (True, True)  # hashed, and a right index stored again
    assert _index(client, bucket, key, data, 4) == "\n".join([f"v2 {len(data)}", *lines[1:]])


def test_an_index_of_the_older_format_is_ignored(cluster: Cluster, client: Client, bucket: str,
                                                 verdicts: list[tuple[Optional[bool], bool]]) -> None:
    data = os.urandom(3 * CHUNK)
    assert client.put(bucket, "old-format", data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "old-format").unwrap().data.tobytes() == data
    index_key = _index_key((bucket, "old-format", sha256(data), 3))
    sums = client.cache.get(index_key).split("\n")[1:]
    client.cache.set(index_key, "\n".join(sums))  # as stored before the size was kept
    cluster.log.clear()
    assert client.get(bucket, "old-format").unwrap().data.tobytes() == data
    assert _peer_reads(cluster, "old-format_1") == 1 and verdicts[-1] == (True, True)  # no index used
    assert _index(client, bucket, "old-format", data, 3) == "\n".join([f"v2 {len(data)}", *sums])


def test_hits_run_at_most_hit_parallel_at_once(cluster: Cluster, client: Client, bucket: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from mictlanx_sync.client import object_read
    from mictlanx_sync.client.cache import ChunkCache

    data = os.urandom(8 * CHUNK)
    assert client.put(bucket, "capped", data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "capped").unwrap().data.tobytes() == data  # the miss stores the index
    lock, running, peak = threading.Lock(), [0], [0]
    original = ChunkCache.read_into

    def counted(self: ChunkCache, *args: Any) -> bool:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        try:
            return original(self, *args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(ChunkCache, "read_into", counted)
    monkeypatch.setattr(object_read, "HIT_PARALLEL", 2)
    cluster.log.clear()
    assert client.get(bucket, "capped").unwrap().data.tobytes() == data
    assert peak[0] == 2 and _data_requests(cluster) == 0
    # Without the index (force=True reads no cache), max_parallel applies as before.
    assert client.get(bucket, "capped", force=True).unwrap().data.tobytes() == data


@pytest.mark.parametrize("extra", [10 ** 15, 10 ** 30])
def test_an_index_with_an_absurd_size_is_a_miss_not_a_crash(cluster: Cluster, client: Client, bucket: str,
                                                            extra: int) -> None:
    """A cache index is local state: a size no object of this layout can have must not make
    ``get`` allocate it (MemoryError/OverflowError raised out of a Result API)."""
    key = f"absurd-{len(str(extra))}"
    data, _ = _cached_with_indexed_size(client, bucket, key, lambda size: size + extra)
    got = client.get(bucket, key)
    assert got.is_ok, got
    assert got.unwrap().data.tobytes() == data


def test_an_empty_object_is_proven_by_its_index(cluster: Cluster, tmp_path: Path, bucket: str,
                                                verdicts: list[tuple[Optional[bool], bool]]) -> None:
    """The index of an empty object (one empty chunk) is valid: a hit uses it, it is not
    dropped and stored again on every read. (``inline_max=0``: else it comes with its R3.)"""
    with new_client(cluster.uri(), tmp_path, inline_max=0) as client:
        _empty_object_index(cluster, client, bucket, verdicts)


def _empty_object_index(cluster: Cluster, client: Client, bucket: str,
                        verdicts: list[tuple[Optional[bool], bool]]) -> None:
    assert client.put(bucket, "empty", b"").unwrap()
    assert client.get(bucket, "empty").unwrap().data.tobytes() == b""
    assert verdicts[-1] == (True, True)
    index_key = _index_key((bucket, "empty", sha256(b""), 1))
    assert client.cache.get(index_key) is not None
    cluster.log.clear()
    assert client.get(bucket, "empty").unwrap().data.tobytes() == b""
    assert cluster.log.count(method="GET", path=P5_GET_DATA) == 0
    assert verdicts[-1] == (True, False)  # proven by the index, as for any other object
