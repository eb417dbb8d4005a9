"""Pure tests of the put sources (``mictlanx_sync.client.sources``): splitting and hashing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mictlanx_sync.client.sources import (
    BytesSource,
    FileSource,
    IterableSource,
    ListSource,
    check_chunk_id,
    num_chunks_for,
)
from mictlanx_sync.protocol.errors import ValidationError
from mictlanx_sync.protocol.models import Chunk, Chunks


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("size", "chunk", "expected"), [
    (0, 10, 1), (1, 10, 1), (9, 10, 1), (10, 10, 1), (11, 10, 2), (100, 10, 10), (101, 10, 11),
])
def test_num_chunks_is_strict_ceiling(size: int, chunk: int, expected: int) -> None:
    assert num_chunks_for(size, chunk) == expected


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 35])
def test_bytes_source_strict_zero_copy_slices(size: int) -> None:
    data = os.urandom(size)
    source = BytesSource(data, 10)
    assert source.size == size and source.full_checksum == sha(data)
    pieces = [source.chunk(i) for i in range(source.num_chunks)]
    assert all(isinstance(p, memoryview) for p in pieces)
    assert b"".join(bytes(p) for p in pieces) == data
    assert all(len(p) == 10 for p in pieces[:-1]) and 0 < len(pieces[-1]) <= 10 or size == 0
    source.finish()


def test_bytes_source_accepts_any_buffer_format() -> None:
    import array

    values = array.array("i", range(100))
    source = BytesSource(memoryview(values), 64)
    assert source.size == values.itemsize * 100
    assert b"".join(bytes(source.chunk(i)) for i in range(source.num_chunks)) == values.tobytes()


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_file_source_two_passes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    source = FileSource(path, 1024)
    try:
        assert (source.size, source.num_chunks, source.full_checksum) == (size, num_chunks_for(size, 1024), sha(data))
        assert b"".join(source.chunk(i) for i in range(source.num_chunks)) == data
        source.finish()
        with pytest.raises(RuntimeError):
            source.chunk(0)  # index order only
    finally:
        source.close()
    source.close()  # idempotent


def test_file_source_detects_a_change(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 3000)
    source = FileSource(path, 1024)
    try:
        source.chunk(0)
        with open(path, "r+b") as handle:
            handle.seek(2000)
            handle.write(b"b")
        source.chunk(1)
        source.chunk(2)
        with pytest.raises(ValidationError, match="changed"):
            source.finish()
    finally:
        source.close()


def test_file_source_detects_growth(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    source = FileSource(path, 1024)
    try:
        source.chunk(0)
        with open(path, "ab") as handle:
            handle.write(b"more")
        with pytest.raises(ValidationError):
            source.finish()
    finally:
        source.close()


def test_file_source_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        FileSource(tmp_path / "missing", 10)


def test_list_source_layout_rules() -> None:
    source = ListSource([b"ab", b"cd", b"e"])
    assert (source.size, source.num_chunks, source.full_checksum) == (5, 3, sha(b"abcde"))
    assert bytes(source.chunk(2)) == b"e"
    assert ListSource([]).num_chunks == 1 and ListSource([]).size == 0
    assert ListSource([Chunk("g", 0, b"xyz")]).full_checksum == sha(b"xyz")
    for ragged in ([b"ab", b"c", b"de"], [b"ab", b"cde"], [b"", b"a"]):
        with pytest.raises(ValidationError):
            ListSource(ragged)
    with pytest.raises(TypeError):
        ListSource(["text"])


@pytest.mark.parametrize("size", [0, 1, 10, 25])
def test_iterable_source_matches_list_source(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    lazy = IterableSource(Chunks.from_file(path, 10, "k"), "k")
    eager = ListSource(list(Chunks.from_bytes(data, 10, "k")))
    assert (lazy.size, lazy.num_chunks, lazy.full_checksum) == (eager.size, eager.num_chunks, eager.full_checksum)
    assert b"".join(bytes(lazy.chunk(i)) for i in range(lazy.num_chunks)) == data
    lazy.finish()


def test_iterable_source_checks_ids_and_changes(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="chunk_id"):
        IterableSource(Chunks.from_list([Chunk("k", 0, b"a", chunk_id="other_0")]), "k")
    path = tmp_path / "f"
    path.write_bytes(b"x" * 30_000)  # larger than the reader's buffer
    source = IterableSource(Chunks.from_file(path, 10_000, "k"), "k")
    source.chunk(0)
    path.write_bytes(b"y" * 30_000)
    source.chunk(1)
    source.chunk(2)
    with pytest.raises(ValidationError, match="changed"):
        source.finish()


def test_check_chunk_id() -> None:
    check_chunk_id(Chunk("key", 3, b""), "key", 3)
    check_chunk_id(Chunk("group", 3, b""), "key", 3)  # its own group's numbering
    check_chunk_id(b"raw bytes have no id", "key", 3)
    with pytest.raises(ValidationError):
        check_chunk_id(Chunk("key", 2, b""), "key", 3)
