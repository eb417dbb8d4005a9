import hashlib
import logging
import multiprocessing
import os
import sqlite3

import diskcache
import pytest

from mictlanx_sync.client.cache import ChunkCache, default_cache_path, eviction_policy_name
from mictlanx_sync.protocol.errors import ValidationError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path):
    with ChunkCache(tmp_path / "chunks", "10MB", "LRU") as chunk_cache:
        yield chunk_cache


@pytest.mark.parametrize("name, expected", [
    ("LRU", "least-recently-used"), ("lru", "least-recently-used"), ("LFU", "least-frequently-used"),
    ("fifo", "least-recently-stored"), ("LRS", "least-recently-stored"), ("None", None),
])
def test_policy_names(name, expected):
    assert eviction_policy_name(name) == expected


def test_unknown_policy_or_size_is_rejected(tmp_path):
    with pytest.raises(ValidationError):
        ChunkCache(tmp_path, "1GB", "MRU")
    with pytest.raises(ValidationError):
        ChunkCache(tmp_path, "lots", "LRU")


def test_hit_and_miss(cache):
    data = os.urandom(1000)
    assert cache.get(sha(data)) is None
    assert cache.put(sha(data), data)
    assert cache.get(sha(data)) == data
    assert cache.get(sha(data).upper()) == data  # checksums are case-insensitive
    assert cache.get(f'"{sha(data)}"') == data  # an ETag may be quoted


def test_memoryview_and_large_chunks_round_trip(cache):
    data = os.urandom(300_000)  # stored as a file by diskcache
    view = memoryview(data)[1000:]
    assert cache.put(sha(view.tobytes()), view)
    assert cache.get(sha(view.tobytes())) == view.tobytes()


def test_put_with_verified_false_checks_the_hash(cache):
    assert not cache.put(sha(b"other"), b"data", verified=False)
    assert cache.get(sha(b"other")) is None
    assert cache.put(sha(b"data"), b"data", verified=False)


def test_bad_checksums_are_misses(cache):
    assert not cache.put("not-a-sha", b"x")
    assert cache.get("not-a-sha") is None
    assert cache.get(None) is None  # type: ignore[arg-type]


def test_a_tampered_entry_is_detected_and_deleted(cache, caplog):
    data = b"original chunk"
    cache.put(sha(data), data)
    cache.disk.set(f"chunk:{sha(data)}", b"tampered chunk")
    with caplog.at_level(logging.WARNING):
        assert cache.get(sha(data)) is None
    assert f"chunk:{sha(data)}" not in cache.disk
    assert "SHA-256" in caplog.text


def test_index_round_trip_and_drop(cache):
    checksums = [sha(bytes([i])) for i in range(3)]
    version = ("bucket", "key", sha(b"full"), 3)
    assert cache.get_index(version) is None
    assert cache.put_index(version, checksums)
    assert cache.get_index(version) == checksums
    assert cache.get_index(("bucket", "key", sha(b"full"), 4)) is None  # another version
    cache.drop_index(version)
    assert cache.get_index(version) is None


def test_index_with_wrong_count_or_bad_checksums_is_not_stored(cache):
    version = ("b", "k", sha(b"full"), 2)
    assert not cache.put_index(version, [sha(b"a")])
    assert not cache.put_index(version, [sha(b"a"), "nope"])
    assert not cache.put_index(("b", "k", sha(b"full"), 0), [])


def test_capacity_is_never_exceeded(tmp_path):
    limit = 2_000_000
    with ChunkCache(tmp_path / "c", limit, "LRU") as small:
        stored = []
        for i in range(60):
            data = os.urandom(64_000 + 997 * i)  # mixed sizes
            assert small.put(sha(data), data)
            stored.append(data)
            assert small.volume() <= limit
        assert small.get(sha(stored[-1])) == stored[-1]  # the newest survives
        assert small.get(sha(stored[0])) is None  # the oldest was evicted
        assert not small.put(sha(b"x" * (limit + 1)), b"x" * (limit + 1))  # larger than the cache


def test_lru_keeps_recently_read_chunks(tmp_path):
    with ChunkCache(tmp_path / "c", 1_000_000, "LRU") as lru:
        first = os.urandom(100_000)
        lru.put(sha(first), first)
        for _ in range(30):
            assert lru.get(sha(first)) == first  # keeps it recently used
            data = os.urandom(100_000)
            lru.put(sha(data), data)
        assert lru.get(sha(first)) == first


@pytest.mark.parametrize("capacity, policy", [("0", "LRU"), (0, "LFU"), ("1GB", "NONE")])
def test_disabled_cache_stores_nothing_and_creates_nothing(tmp_path, capacity, policy):
    path = tmp_path / "never"
    with ChunkCache(path, capacity, policy) as disabled:
        assert not disabled.enabled
        assert not disabled.put(sha(b"x"), b"x")
        assert disabled.get(sha(b"x")) is None
        assert disabled.disk is None and disabled.volume() == 0
    assert not path.exists()


def test_directory_is_created_on_first_use_not_at_construction(tmp_path):
    path = tmp_path / "lazy" / "chunks"
    with ChunkCache(path, "1MB", "LRU") as lazy:
        assert not path.exists()
        lazy.get(sha(b"x"))
        assert path.is_dir()


def test_default_path():
    assert default_cache_path().endswith(os.path.join("mictlanx_sync", "chunks"))
    assert ChunkCache().path == default_cache_path()


def test_an_unusable_directory_is_tolerated(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    with caplog.at_level(logging.WARNING), ChunkCache(blocker / "chunks", "1MB", "LRU") as broken:
        assert not broken.put(sha(b"x"), b"x")
        assert broken.get(sha(b"x")) is None
        assert broken.get_index(("b", "k", sha(b"f"), 1)) is None
        broken.drop_index(("b", "k", sha(b"f"), 1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning, then quiet until a reopen is due
    assert "continuing without it" in warnings[0].getMessage()


def test_sqlite_failures_are_misses(cache, monkeypatch, caplog):
    data = b"chunk"
    cache.put(sha(data), data)

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database disk image is malformed")

    monkeypatch.setattr(diskcache.Cache, "get", broken)
    monkeypatch.setattr(diskcache.Cache, "set", broken)
    with caplog.at_level(logging.WARNING):
        assert cache.get(sha(data)) is None
        assert not cache.put(sha(b"y"), b"y")
        assert cache.get_index(("b", "k", sha(b"f"), 1)) is None
    assert caplog.text.count("continuing without it") == 3


def test_closed_cache_misses(tmp_path):
    closing = ChunkCache(tmp_path / "c", "1MB", "LRU")
    closing.put(sha(b"x"), b"x")
    closing.close()
    closing.close()
    assert closing.get(sha(b"x")) is None and not closing.put(sha(b"y"), b"y")


def test_reopen_gives_a_fresh_handle(cache):
    cache.put(sha(b"x"), b"x")
    old = cache.disk
    cache.reopen()
    old.close()
    assert cache.disk is not old
    assert cache.get(sha(b"x")) == b"x"


def _child_puts_and_reads(path, payloads, known):
    with ChunkCache(path, "10MB", "LRU") as child:
        for data in payloads:
            assert child.put(sha(data), data)
        return [child.get(sha(data)) == data for data in known]


def test_two_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "shared")
    mine = [os.urandom(50_000) for _ in range(5)]
    theirs = [os.urandom(50_000) for _ in range(5)]
    with ChunkCache(path, "10MB", "LRU") as parent:
        for data in mine:
            parent.put(sha(data), data)
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            seen = pool.starmap(_child_puts_and_reads, [(path, theirs[:3], mine), (path, theirs[3:], mine)])
        assert seen == [[True] * 5, [True] * 5]
        assert all(parent.get(sha(data)) == data for data in theirs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reopens_by_itself(cache):
    import warnings

    data = b"from the parent"
    cache.put(sha(data), data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        ok = cache.get(sha(data)) == data and cache.put(sha(b"child"), b"child")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get(sha(b"child")) == b"child"
