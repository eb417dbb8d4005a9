"""Chunk 0's manifest of the chunk checksums (``chunks_sha256``, issue 13): the tag, its
parsing, and ``FullHash`` proving the object from verified chunk checksums without a pass."""

from __future__ import annotations

import hashlib
import os

import attrs
import pytest

from mictlanx_sync.client.full_hash import FullHash
from mictlanx_sync.client.layout import (
    MANIFEST_TAG,
    REQUIRED_TAGS,
    ObjectLayout,
    chunks_manifest,
    validate_tags,
)
from mictlanx_sync.client.locate import ObjectInfo
from mictlanx_sync.client.sinks import BufferChunkSink
from mictlanx_sync.protocol.errors import ValidationError
from mictlanx_sync.protocol.models import Metadata

STRIDE = 1000


def sums(data: bytes, stride: int = STRIDE) -> list[str]:
    return [hashlib.sha256(data[i:i + stride]).hexdigest() for i in range(0, len(data), stride)]


def test_manifest_is_the_hash_of_the_concatenated_checksums() -> None:
    checksums = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    assert chunks_manifest(checksums) == hashlib.sha256("".join(checksums).encode()).hexdigest()
    assert chunks_manifest([c.upper() for c in checksums]) == chunks_manifest(checksums)
    assert chunks_manifest(checksums[::-1]) != chunks_manifest(checksums)  # the order is bound


def test_the_tag_is_not_a_required_one_and_is_reserved() -> None:
    assert MANIFEST_TAG not in REQUIRED_TAGS
    with pytest.raises(ValidationError):
        validate_tags({MANIFEST_TAG: "0" * 64})
    assert validate_tags({"other": "x"}) == {"other": "x"}


@pytest.mark.parametrize("value, n, expected", [
    ("ab" * 32, 3, "ab" * 32),
    ("AB" * 32, 3, "ab" * 32),  # lowercased
    ("ab" * 32, 1, None),  # one chunk: its checksum is full_checksum already
    ("ab" * 31, 3, None),  # not 64 hex digits: ignored (the data pass decides)
    ("zz" * 32, 3, None),
    (None, 3, None),
])
def test_layout_reads_the_manifest_of_chunk0(value: object, n: int, expected: object) -> None:
    tags = {"num_chunks": str(n), "full_checksum": "f" * 64, **({MANIFEST_TAG: value} if value else {})}
    assert ObjectLayout.from_chunk0(tags, STRIDE, bucket_id="b", key="k").manifest == expected


def make(data: bytes, manifest: object) -> tuple[FullHash, bytearray, ObjectInfo, list[int]]:
    n = -(-len(data) // STRIDE)
    chunk0 = Metadata(key="k_0", size=STRIDE, checksum=hashlib.sha256(data[:STRIDE]).hexdigest(),
                      tags={MANIFEST_TAG: str(manifest)})
    layout = ObjectLayout(n, hashlib.sha256(data).hexdigest(), STRIDE, manifest)  # type: ignore[arg-type]
    info = ObjectInfo("b", "k", chunk0, layout, len(data))
    buffer = bytearray(len(data))
    view = memoryview(buffer)
    hashed: list[int] = []

    def region(start: int, size: int) -> memoryview:
        hashed.append(size)
        return view[start:start + size]

    return FullHash(info, region, True), buffer, info, hashed


def fill(full: FullHash, buffer: bytearray, info: ObjectInfo, data: bytes) -> None:
    for index in range(info.layout.num_chunks):
        start, size = info.layout.offset(index), info.chunk_size(index)
        sink = full.tracked(index, BufferChunkSink(memoryview(buffer)[start:start + size]))
        view = sink.region(0, size)
        view[:] = data[start:start + size]
        sink.commit(0, size)
        full.require()  # as a network chunk does


def test_manifest_proves_the_object_without_a_pass() -> None:
    data = os.urandom(5 * STRIDE + 17)
    full, buffer, info, hashed = make(data, chunks_manifest(sums(data)))
    full.begin(lazy=False)
    fill(full, buffer, info, data)
    full.verified_chunks(sums(data))
    assert full.verdict() is True and full.proven and full.computed
    assert hashed == []  # not one byte hashed again


def test_a_manifest_mismatch_falls_back_to_the_pass() -> None:
    data = os.urandom(4 * STRIDE)
    # A manifest that names other chunks (a foreign tag): the pass over the landed bytes decides.
    full, buffer, info, hashed = make(data, "0" * 64)
    full.begin(lazy=False)
    fill(full, buffer, info, data)
    full.verified_chunks(sums(data))
    assert full.verdict() is True and not full.proven and full.computed
    assert sum(hashed) == len(data)
    # A replaced chunk (self-consistent: its own checksum verified): manifest and pass both fail.
    other = data[:STRIDE] + os.urandom(STRIDE) + data[2 * STRIDE:]
    full, buffer, info, hashed = make(data, chunks_manifest(sums(data)))
    full.begin(lazy=False)
    fill(full, buffer, info, other)
    full.verified_chunks(sums(other))
    assert full.verdict() is False and not full.proven


def test_no_checksums_no_proof() -> None:
    data = os.urandom(3 * STRIDE)
    full, buffer, info, hashed = make(data, chunks_manifest(sums(data)))
    full.begin(lazy=False)
    fill(full, buffer, info, data)
    assert full.verdict() is True and not full.proven  # hashed instead
    assert sum(hashed) == len(data)


def test_index_reads_proven_by_the_manifest_do_not_restore_the_index() -> None:
    data = os.urandom(3 * STRIDE)
    full, buffer, info, _ = make(data, chunks_manifest(sums(data)))
    full.begin(lazy=True)  # every chunk from the verified index: no require()
    for index in range(3):
        start = info.layout.offset(index)
        sink = full.tracked(index, BufferChunkSink(memoryview(buffer)[start:start + STRIDE]))
        sink.region(0, STRIDE)[:] = data[start:start + STRIDE]
        sink.commit(0, STRIDE)
    full.verified_chunks(sums(data))
    assert full.verdict() is True and full.proven and not full.computed


def test_chunk_metadata_of_other_chunks_lacks_the_manifest() -> None:
    data = os.urandom(2 * STRIDE)
    _, _, info, _ = make(data, chunks_manifest(sums(data)))
    info = attrs.evolve(info, chunk0=attrs.evolve(info.chunk0, tags={**info.chunk0.tags, "num_chunks": "2"}))
    assert MANIFEST_TAG in info.chunk_metadata(0, STRIDE, "x").tags
    assert MANIFEST_TAG not in info.chunk_metadata(1, STRIDE, "x").tags
