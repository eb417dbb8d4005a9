"""Acceptance 5: the chunk cache (client-api §8.3).

- A second read of an object makes no data request (P5) to any peer, nor R11 to a router.
- A tampered entry is detected (re-hashed on every hit), deleted and fetched again.
- The cache never exceeds ``capacity_storage``.
- Two processes sharing one ``cache_path`` both work, and share entries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mictlanx_sync import Client

from . import client_support
from .client_support import P5_GET_DATA, Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster

CHUNK = 64 * 1024


def _data_requests(cluster: Cluster) -> int:
    """P5 at peers plus R11 at routers."""
    return cluster.log.count(method="GET", path=P5_GET_DATA)


def _peer_reads(cluster: Cluster, key: str) -> int:
    return cluster.log.count(server="mictlanx-peer", method="GET", path=rf"/api/v4/buckets/[^/]+/{key}")


def test_second_get_is_served_from_the_cache(cluster: Cluster, client: Client, bucket: str,
                                             tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 17)
    assert client.put(bucket, "cached", data, chunk_size=CHUNK, rf=2).unwrap()
    cluster.log.clear()
    first = client.get(bucket, "cached").unwrap().data.tobytes()
    assert first == data
    assert cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA) == 6
    cluster.log.clear()
    second = client.get(bucket, "cached").unwrap()
    assert second.data.tobytes() == data
    assert [m.checksum for m in second.metadatas] == [sha256(data[i:i + CHUNK]) for i in range(0, len(data), CHUNK)]
    assert _data_requests(cluster) == 0
    # get_to_file reads through the same cache.
    path = client.get_to_file(bucket, "cached", str(tmp_path / "out"), fullname="c.bin").unwrap()
    assert Path(path).read_bytes() == data
    assert _data_requests(cluster) == 0
    # force=True skips the cache and says so to the router.
    assert client.get(bucket, "cached", force=True).unwrap().data.tobytes() == data
    forced = cluster.log.select(server="mictlanx-router", method="GET", path=P5_GET_DATA)
    assert len(forced) == 6 and all(s.headers.get("force-get") == "1" for s in forced)


def test_cache_is_per_content_not_per_key(cluster: Cluster, client: Client, bucket: str) -> None:
    """An update is read fresh: the cache is keyed by checksums, never stale."""
    old, new = os.urandom(3 * CHUNK), os.urandom(3 * CHUNK)
    assert client.put(bucket, "versioned", old, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "versioned").unwrap().data.tobytes() == old
    assert client.put(bucket, "versioned", new, chunk_size=CHUNK, update=True).unwrap()
    cluster.log.clear()
    assert client.get(bucket, "versioned").unwrap().data.tobytes() == new
    assert cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA) == 3


def test_tampered_entry_is_detected_and_fetched_again(cluster: Cluster, client: Client,
                                                      bucket: str) -> None:
    data = os.urandom(3 * CHUNK)
    assert client.put(bucket, "tamper", data, chunk_size=CHUNK).unwrap()
    assert client.get(bucket, "tamper").unwrap().data.tobytes() == data
    disk = client.cache
    digest = sha256(data[CHUNK:2 * CHUNK])
    entry = f"chunk:{digest}"
    assert disk.get(entry) == data[CHUNK:2 * CHUNK]
    disk.set(entry, b"\x00" * CHUNK)  # same size, other bytes
    cluster.log.clear()
    assert client.get(bucket, "tamper").unwrap().data.tobytes() == data
    assert _peer_reads(cluster, "tamper_1") == 1  # only the tampered chunk was fetched again
    assert _peer_reads(cluster, "tamper_0") == 0 and _peer_reads(cluster, "tamper_2") == 0
    assert disk.get(entry) == data[CHUNK:2 * CHUNK]  # repaired
    # An entry tampered to another length is also a miss, not a short read.
    disk.set(entry, b"short")
    cluster.log.clear()
    assert client.get(bucket, "tamper").unwrap().data.tobytes() == data
    assert _peer_reads(cluster, "tamper_1") == 1


def _cache_files_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_cache_never_exceeds_capacity(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    capacity = 1_000_000
    with new_client(cluster.uri(), tmp_path, capacity_storage="1MB") as c:
        objects = {f"fill-{i}": os.urandom(4 * CHUNK) for i in range(8)}  # 2 MB in all
        for key, data in objects.items():
            assert c.put(bucket, key, data, chunk_size=CHUNK).unwrap()
        for key, data in objects.items():
            assert c.get(bucket, key).unwrap().data.tobytes() == data
            assert c.cache.volume() <= capacity
            assert _cache_files_bytes(tmp_path / "cache") - _sqlite_bytes(tmp_path / "cache") <= capacity
        # The most recent object is still cached (LRU), the first ones were evicted.
        cluster.log.clear()
        last = list(objects)[-1]
        assert c.get(bucket, last).unwrap().data.tobytes() == objects[last]
        assert cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA) == 0
        first = list(objects)[0]
        assert c.get(bucket, first).unwrap().data.tobytes() == objects[first]
        assert cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA) > 0
        assert c.cache.volume() <= capacity


def _sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("cache.db*"))


def test_cache_disabled(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    # inline_max=0: a 3-byte object would otherwise come with its R3, never through P5
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", inline_max=0) as c:
        assert c.cache is None
        assert c.put(bucket, "nocache", b"abc").unwrap()
        cluster.log.clear()
        for _ in range(2):
            assert c.get(bucket, "nocache").unwrap().data.tobytes() == b"abc"
        assert cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA) == 2
    assert not (tmp_path / "cache").exists()  # never created
    with new_client(cluster.uri(), tmp_path, eviction_policy="NONE") as c:
        assert c.cache is None


_CHILD = textwrap.dedent("""
    import hashlib, sys
    from mictlanx_sync import Client
    uri, cache, bucket = sys.argv[1:4]
    with Client(uri, cache_path=cache, progress=False) as c:
        for i in range(5):
            for key in ("shared-a", "shared-b"):
                got = c.get(bucket, key).unwrap()
                print(key, hashlib.sha256(got.data).hexdigest(), flush=True)
""")


def test_two_processes_share_one_cache_path(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    cache_dir = tmp_path / "shared"
    a, b = os.urandom(4 * CHUNK), os.urandom(3 * CHUNK + 1)
    expected = {"shared-a": sha256(a), "shared-b": sha256(b)}
    with Client(cluster.uri(), cache_path=str(cache_dir), progress=False) as c:
        assert c.put(bucket, "shared-a", a, chunk_size=CHUNK).unwrap()
        assert c.put(bucket, "shared-b", b, chunk_size=CHUNK).unwrap()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, cluster.uri(), str(cache_dir), bucket],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            for _ in range(5):  # at the same time as the child
                assert c.get(bucket, "shared-a").unwrap().data.tobytes() == a
                assert c.get(bucket, "shared-b").unwrap().data.tobytes() == b
            out, err = child.communicate(timeout=45)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 0, err
        lines = [line.split() for line in out.splitlines()]
        assert len(lines) == 10 and all(expected[k] == d for k, d in lines)
        # Entries the two processes filled are visible to both: no data request now.
        cluster.log.clear()
        assert c.get(bucket, "shared-a").unwrap().data.tobytes() == a
        assert cluster.log.count(method="GET", path=P5_GET_DATA) == 0


def test_get_chunks_uses_and_fills_the_cache(cluster: Cluster, client: Client, bucket: str) -> None:
    data = os.urandom(4 * CHUNK + 5)
    assert client.put(bucket, "gc-cache", data, chunk_size=CHUNK).unwrap()
    assert b"".join(v.tobytes() for _, v in client.get_chunks(bucket, "gc-cache", order=True)) == data
    cluster.log.clear()
    # Filled by get_chunks (ordered, fully verified): both read paths now hit the cache.
    assert b"".join(v.tobytes() for _, v in client.get_chunks(bucket, "gc-cache", order=True)) == data
    assert client.get(bucket, "gc-cache").unwrap().data.tobytes() == data
    unordered = {int(m.tags["index"]): v.tobytes() for m, v in client.get_chunks(bucket, "gc-cache")}
    assert b"".join(unordered[i] for i in range(5)) == data
    assert _data_requests(cluster) == 0


def test_index_contradicted_by_an_etag_is_dropped(cluster: Cluster, client: Client, bucket: str) -> None:
    """Same content re-cut into the same number of chunks: the cached index is stale."""
    data = os.urandom(25)
    assert client.put(bucket, "recut", data, chunk_size=10).unwrap()  # 10 + 10 + 5
    assert client.get(bucket, "recut").unwrap().data.tobytes() == data  # caches chunks + index
    # The same content is a no-op whatever the chunk size (issue 11): deleting first makes
    # the re-cut a new version that the cached index of (bucket, key, checksum, 3) misnames.
    assert client.delete(ball_id="recut", bucket_id=bucket).unwrap()
    assert client.put(bucket, "recut", data, chunk_size=9).unwrap()  # 9 + 9 + 7
    got = client.get(bucket, "recut").unwrap()
    assert got.data.tobytes() == data
    assert [m.size for m in got.metadatas] == [9, 9, 7]
    cluster.log.clear()
    assert client.get(bucket, "recut").unwrap().data.tobytes() == data  # the new index serves it
    assert _data_requests(cluster) == 0
