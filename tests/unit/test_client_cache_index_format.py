"""The stored format of a version's index (client-api §8.3): ``v2 [size]`` then the checksums.

The size lets a hit skip the R3 on the last chunk; entries of the older format (no
header) are ignored as if absent, malformed ones are deleted, and every chunk read from
the cache is read in pieces straight into the caller's memory and re-hashed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mictlanx_sync.client.cache import READ_PIECE, ChunkCache, IndexEntry, _index_key
from mictlanx_sync.client.sinks import BufferChunkSink, _advise_huge_pages, unfilled_bytearray


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def cache(tmp_path: Path) -> ChunkCache:
    with ChunkCache(tmp_path / "c", "64MB", "LRU") as instance:
        yield instance


VERSION = ("bucket", "key", sha(b"full"), 3)
SUMS = [sha(bytes([i])) for i in range(3)]


def test_size_round_trip(cache: ChunkCache) -> None:
    assert cache.put_index(VERSION, SUMS, size=1234)
    assert cache.get_index_entry(VERSION) == IndexEntry(SUMS, 1234)
    assert cache.get_index(VERSION) == SUMS
    assert cache.disk.get(_index_key(VERSION)) == "\n".join(["v2 1234", *SUMS])
    assert cache.put_index(VERSION, SUMS)  # no size known: still an index
    assert cache.get_index_entry(VERSION) == IndexEntry(SUMS, None)
    for bad in (-1, True, 1.5):
        assert not cache.put_index(VERSION, SUMS, size=bad)  # type: ignore[arg-type]


def test_older_format_is_ignored_not_deleted(cache: ChunkCache) -> None:
    cache.disk.set(_index_key(VERSION), "\n".join(SUMS))
    assert cache.get_index_entry(VERSION) is None and cache.get_index(VERSION) is None
    assert _index_key(VERSION) in cache.disk  # replaced by the next verified read


@pytest.mark.parametrize("head", ["v2 12 13", "v2 x", "v2 -4", "v2 "])
def test_malformed_header_is_deleted(cache: ChunkCache, head: str) -> None:
    cache.disk.set(_index_key(VERSION), "\n".join([head, *SUMS]))
    assert cache.get_index_entry(VERSION) is None
    assert _index_key(VERSION) not in cache.disk


def test_wrong_count_is_deleted(cache: ChunkCache) -> None:
    cache.disk.set(_index_key(VERSION), "\n".join(["v2 5", *SUMS[:2]]))
    assert cache.get_index_entry(VERSION) is None
    assert _index_key(VERSION) not in cache.disk


class _Counting(BufferChunkSink):
    def __init__(self, view: memoryview) -> None:
        super().__init__(view)
        self.pieces: list[int] = []

    def commit(self, position: int, size: int) -> None:
        self.pieces.append(size)


def test_a_hit_is_read_in_pieces_into_the_sink(cache: ChunkCache) -> None:
    data = os.urandom(2 * READ_PIECE + 17)
    assert cache.put(sha(data), data)
    buffer = unfilled_bytearray(len(data))
    sink = _Counting(memoryview(buffer))
    assert cache.read_into(sha(data), len(data), sink)
    assert bytes(buffer) == data and sink.pieces == [READ_PIECE, READ_PIECE, 17]


@pytest.mark.parametrize("size", [0, 100, 3 * 1024 * 1024, 9 * 1024 * 1024 + 5])
def test_unfilled_buffers_of_every_size_are_usable(size: int) -> None:
    """Large buffers get huge-page advice (no effect on contents or length)."""
    buffer = unfilled_bytearray(size)
    assert type(buffer) is bytearray and len(buffer) == size
    buffer[:] = b"\x5a" * size
    assert buffer.count(0x5A) == size
    _advise_huge_pages(buffer)  # again, on touched memory: harmless
    buffer.extend(b"x")  # no buffer export left behind
    assert len(buffer) == size + 1
