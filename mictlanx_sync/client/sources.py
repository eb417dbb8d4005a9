"""What a put reads its chunks from: bytes, a file, or caller-made chunks (protocol §P5).

A source knows the chunk count and the whole-object SHA-256 before the first chunk is
sent (every chunk carries ``full_checksum``), and hands out chunk ``i`` when asked, in
index order, from the caller's thread.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from ..protocol.errors import LocalStorageError, ValidationError
from ..protocol.file_errors import LocalFileNotFoundError

__all__ = ["ChunkSource", "BytesSource", "FileSource", "ListSource", "IterableSource", "num_chunks_for",
           "check_chunk_id"]

BytesLike = Union[bytes, bytearray, memoryview]
_READ_PIECE = 1024 * 1024


def num_chunks_for(size: int, chunk_size: int) -> int:
    """Strict splitting: ceil(size / chunk_size), and one empty chunk for empty data."""
    return max(1, -(-size // chunk_size))


class ChunkSource:
    """Base: ``size``, ``num_chunks``, ``full_checksum``, ``chunk(i)``, ``finish()``, ``close()``."""

    size: int
    num_chunks: int
    full_checksum: str

    def chunk(self, index: int) -> BytesLike:
        raise NotImplementedError

    def first_chunk(self) -> BytesLike:
        """Chunk 0 again, after every chunk was read: the writer sends it last, as the
        commit point (docs/consistency.md §3.1). Random-access sources just slice it."""
        return self.chunk(0)

    def finish(self) -> None:
        """Raise ``ValidationError`` if the data changed while it was being sent."""

    def close(self) -> None:
        """Release what the source holds open."""


class BytesSource(ChunkSource):
    """Zero-copy ``memoryview`` slices of caller data."""

    def __init__(self, value: BytesLike, chunk_size: int) -> None:
        self._view = memoryview(value).cast("B")
        self.size = len(self._view)
        self.chunk_size = chunk_size
        self.num_chunks = num_chunks_for(self.size, chunk_size)
        self.full_checksum = hashlib.sha256(self._view).hexdigest()

    def chunk(self, index: int) -> memoryview:
        start = index * self.chunk_size
        return self._view[start:start + self.chunk_size]


class FileSource(ChunkSource):
    """A file read twice: pass 1 hashes it; pass 2 reads each chunk when a buffer is free.

    Pass 2 also hashes the file in read order; if that differs from pass 1 the file
    changed during the upload and :meth:`finish` raises ``ValidationError``.
    """

    def __init__(self, path: Union[str, os.PathLike], chunk_size: int) -> None:
        self.path = os.fspath(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise LocalFileNotFoundError(f"no such file: {self.path}") from None
        except OSError as exc:
            raise LocalStorageError(f"cannot open {self.path}: {exc}") from exc
        try:
            self.chunk_size = chunk_size
            hasher = hashlib.sha256()
            size = 0
            while True:
                piece = os.read(self._fd, _READ_PIECE)
                if not piece:
                    break
                hasher.update(piece)
                size += len(piece)
        except OSError as exc:
            os.close(self._fd)
            raise LocalStorageError(f"cannot read {self.path}: {exc}") from exc
        self.size = size
        self.num_chunks = num_chunks_for(size, chunk_size)
        self.full_checksum = hasher.hexdigest()
        self._second_pass = hashlib.sha256()
        self._next_index = 0
        self._first_checksum = b""

    def chunk(self, index: int) -> bytes:
        if index != self._next_index:
            raise RuntimeError("FileSource chunks are read in index order")
        try:
            data = os.pread(self._fd, self.chunk_size, index * self.chunk_size)
        except OSError as exc:
            raise LocalStorageError(f"cannot read {self.path}: {exc}") from exc
        self._second_pass.update(data)
        self._next_index += 1
        if index == 0:
            self._first_checksum = hashlib.sha256(data).digest()
        return data

    def first_chunk(self) -> bytes:
        """Chunk 0 read again (positional), so it need not be held while the rest is sent."""
        try:
            data = os.pread(self._fd, self.chunk_size, 0)
        except OSError as exc:
            raise LocalStorageError(f"cannot read {self.path}: {exc}") from exc
        if hashlib.sha256(data).digest() != self._first_checksum:
            raise ValidationError(f"{self.path} changed while it was being uploaded")
        return data

    def finish(self) -> None:
        try:
            trailing = os.pread(self._fd, 1, self.size)
        except OSError:
            trailing = b""
        if self._second_pass.hexdigest() != self.full_checksum or trailing:
            raise ValidationError(f"{self.path} changed while it was being uploaded")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _check_layout(sizes: Sequence[int]) -> None:
    stride = sizes[0]
    if any(size != stride for size in sizes[:-1]) or (len(sizes) > 1 and (stride == 0 or sizes[-1] > stride)):
        raise ValidationError("chunks must all have chunk 0's size, except a shorter last one "
                              "(readers place chunk i at i x size(chunk 0))")


def check_chunk_id(item: Any, key: str, index: int) -> None:
    """A ``Chunk`` must be chunk ``index`` of its group (``{key}_{i}`` or ``{group_id}_{i}``)."""
    chunk_id = getattr(item, "chunk_id", None)
    if chunk_id is not None and chunk_id not in (f"{key}_{index}", f"{getattr(item, 'group_id', '')}_{index}"):
        raise ValidationError(f"chunk {index} has chunk_id {chunk_id!r}, expected {key}_{index}")


class ListSource(ChunkSource):
    """Chunks the caller already cut: bytes-likes or ``Chunk`` objects (``.data``)."""

    def __init__(self, chunks: Sequence[Any]) -> None:
        self._chunks = [memoryview(_chunk_bytes(c)).cast("B") for c in chunks]
        if not self._chunks:
            self._chunks = [memoryview(b"")]
        sizes = [len(c) for c in self._chunks]
        _check_layout(sizes)
        self.size = sum(sizes)
        self.num_chunks = len(self._chunks)
        hasher = hashlib.sha256()
        for view in self._chunks:
            hasher.update(view)
        self.full_checksum = hasher.hexdigest()

    def chunk(self, index: int) -> memoryview:
        return self._chunks[index]


class IterableSource(ChunkSource):
    """A re-iterable collection of chunks (a lazy ``Chunks``, e.g. ``Chunks.from_file``).

    Pass 1 iterates once to check the layout and hash the whole object, keeping nothing;
    pass 2 iterates again and hands out chunk ``i`` when the writer asks for it, so memory
    stays within the buffer budget (client-api §8.2). If pass 2 differs from pass 1 (the
    data changed), :meth:`finish` raises ``ValidationError``.
    """

    def __init__(self, chunks: Iterable[Any], key: str) -> None:
        self._chunks = chunks
        hasher = hashlib.sha256()
        sizes: list[int] = []
        for index, item in enumerate(chunks):
            check_chunk_id(item, key, index)
            view = memoryview(_chunk_bytes(item)).cast("B")
            hasher.update(view)
            sizes.append(len(view))
            del view, item
        self._sizes = sizes or [0]
        _check_layout(self._sizes)
        self.size = sum(self._sizes)
        self.num_chunks = len(self._sizes)
        self.full_checksum = hasher.hexdigest()
        self._iterator: Optional[Iterator[Any]] = None
        self._second_pass = hashlib.sha256()
        self._next_index = 0
        self._first: BytesLike = b""

    def chunk(self, index: int) -> BytesLike:
        if index != self._next_index:
            raise RuntimeError("IterableSource chunks are read in index order")
        if self._iterator is None:
            self._iterator = iter(self._chunks)
        item = next(self._iterator, None)
        data: BytesLike = b"" if item is None else memoryview(_chunk_bytes(item)).cast("B")
        if len(data) != self._sizes[index]:
            raise ValidationError(f"chunk {index} changed while it was being uploaded")
        self._second_pass.update(data)
        self._next_index += 1
        if index == 0:
            # Kept until the commit point: a lazy iterable cannot be read twice. This one
            # chunk per put is outside the client-wide buffer budget.
            self._first = data
        return data

    def first_chunk(self) -> BytesLike:
        return self._first

    def finish(self) -> None:
        if self._second_pass.hexdigest() != self.full_checksum:
            raise ValidationError("the chunks changed while they were being uploaded")


def _chunk_bytes(item: Any) -> BytesLike:
    data = getattr(item, "data", item)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise TypeError(f"a chunk must be bytes-like or a Chunk, not {type(item).__name__}")
