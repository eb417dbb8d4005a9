"""``FullHash``: the whole-object check fed as bytes land, restarted by refills, or proven by the index."""

from __future__ import annotations

import hashlib
import os
import random
import threading

import pytest

from mictlanx_sync.client.full_hash import FullHash
from mictlanx_sync.client.layout import ObjectLayout
from mictlanx_sync.client.locate import ObjectInfo
from mictlanx_sync.client.sinks import BufferChunkSink
from mictlanx_sync.protocol.models import Metadata

STRIDE = 1000


def make(data: bytes, stride: int = STRIDE, wanted: bool = True) -> tuple[FullHash, bytearray, ObjectInfo]:
    n = max(1, -(-len(data) // stride))
    chunk0 = Metadata(key="k_0", size=min(stride, len(data)), checksum=hashlib.sha256(data[:stride]).hexdigest())
    info = ObjectInfo("b", "k", chunk0, ObjectLayout(n, hashlib.sha256(data).hexdigest(), stride), len(data))
    buffer = bytearray(len(data))
    view = memoryview(buffer)
    hashed: list[int] = []

    def region(start: int, size: int) -> memoryview:
        hashed.append(size)
        return view[start:start + size]

    full = FullHash(info, region, wanted)
    full.hashed_sizes = hashed  # type: ignore[attr-defined]
    return full, buffer, info


def fill(full: FullHash, buffer: bytearray, info: ObjectInfo, index: int, data: bytes, piece: int = 300) -> None:
    """What a chunk task does: refill from 0, piece by piece, reporting each commit."""
    start = info.layout.offset(index)
    size = info.chunk_size(index)
    sink = full.tracked(index, BufferChunkSink(memoryview(buffer)[start:start + size]))
    position = 0
    while position < size:
        view = sink.region(position, min(piece, size - position))
        view[:] = data[start + position:start + position + len(view)]
        sink.commit(position, len(view))
        position += len(view)


def test_hash_follows_landed_bytes_in_any_chunk_order() -> None:
    data = os.urandom(5 * STRIDE + 17)
    full, buffer, info = make(data)
    for i in (3, 1, 5, 0, 4, 2):
        fill(full, buffer, info, i, data)
    assert full.verdict() is True and full.computed
    assert sum(full.hashed_sizes) == len(data)  # type: ignore[attr-defined]  # each byte hashed once


def test_chunk0_is_hashed_while_it_lands() -> None:
    data = os.urandom(3 * STRIDE)
    full, buffer, info = make(data)
    fill(full, buffer, info, 0, data, piece=100)
    assert full.hashed_sizes == [100] * 10  # type: ignore[attr-defined]  # piece by piece, not at the end


def test_refill_of_a_hashed_chunk_restarts_the_hash() -> None:
    """Attempt 1 of chunk 1 lands bad bytes (hashed), attempt 2 refills it: only final bytes count."""
    data = os.urandom(3 * STRIDE)
    full, buffer, info = make(data)
    fill(full, buffer, info, 0, data)
    bad = bytearray(data)
    bad[STRIDE + 5] ^= 0xFF
    fill(full, buffer, info, 1, bytes(bad))  # hashed as it lands
    fill(full, buffer, info, 1, data)  # the retry
    fill(full, buffer, info, 2, data)
    assert full.verdict() is True


def test_refill_before_the_hash_reaches_a_chunk_costs_nothing() -> None:
    data = os.urandom(3 * STRIDE)
    full, buffer, info = make(data)
    bad = bytes(b ^ 1 for b in data)
    fill(full, buffer, info, 2, bad)
    fill(full, buffer, info, 2, data)
    fill(full, buffer, info, 0, data)
    fill(full, buffer, info, 1, data)
    assert full.verdict() is True
    assert sum(full.hashed_sizes) == len(data)  # type: ignore[attr-defined]


def test_wrong_bytes_fail_the_verdict() -> None:
    data = os.urandom(2 * STRIDE)
    full, buffer, info = make(data)
    fill(full, buffer, info, 0, data)
    fill(full, buffer, info, 1, bytes(b ^ 1 for b in data))
    assert full.verdict() is False


def test_lazy_is_proven_without_hashing_unless_required() -> None:
    data = os.urandom(3 * STRIDE)
    full, buffer, info = make(data)
    full.begin(lazy=True)
    for i in range(3):
        fill(full, buffer, info, i, data)
    assert full.verdict() is True and not full.computed
    assert full.hashed_sizes == []  # type: ignore[attr-defined]
    # One chunk from elsewhere: the pass runs from byte 0 and catches a mismatch.
    full.begin(lazy=True)
    fill(full, buffer, info, 0, data)
    fill(full, buffer, info, 1, bytes(b ^ 1 for b in data))
    full.require()
    fill(full, buffer, info, 2, data)
    assert full.verdict() is False and full.computed


def test_not_wanted_is_not_checked() -> None:
    data = os.urandom(STRIDE)
    full, buffer, info = make(data, wanted=False)
    fill(full, buffer, info, 0, b"\0" * STRIDE)
    full.require()
    assert full.verdict() is None and not full.computed


def test_empty_object() -> None:
    full, _, _ = make(b"")
    assert full.verdict() is True


@pytest.mark.parametrize("seed", range(20))
def test_concurrent_chunks_with_retries(seed: int) -> None:
    """Chunks land from threads, some after a bad first attempt; the verdict is always exact."""
    rng = random.Random(seed)
    data = os.urandom(8 * STRIDE + rng.randrange(STRIDE))
    full, buffer, info = make(data)
    n = info.layout.num_chunks
    bad = bytes(b ^ 0x5A for b in data)

    def task(i: int) -> None:
        for _ in range(rng.randrange(3)):
            fill(full, buffer, info, i, bad, piece=rng.choice((50, 300, STRIDE)))
        fill(full, buffer, info, i, data, piece=rng.choice((50, 300, STRIDE)))

    threads = [threading.Thread(target=task, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert full.verdict() is True
