"""``Chunk`` and ``Chunks``: an object cut into fixed-size chunks (§P5), lazily.

Chunk ``i`` of an object holds bytes ``[i*C, min((i+1)*C, n))``; an empty object is one
empty chunk. ``Chunks`` yields zero-copy slices of bytes in memory, or reads a file one
chunk at a time, so a large object is never held whole. Pure: no I/O beyond the file read.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Iterator, List, Optional, Union

from ..errors import LocalStorageError, ValidationError
from ..sizes import parse_size

__all__ = ["BytesLike", "Chunk", "Chunks"]

BytesLike = Union[bytes, bytearray, memoryview]


class Chunk:
    """One chunk of an object: ``chunk_id`` defaults to ``f"{group_id}_{index}"``.

    ``size`` defaults to ``len(data)``; ``checksum`` (SHA-256 hex) is computed on first use.
    """

    __slots__ = ("group_id", "index", "data", "chunk_id", "size", "_checksum")

    def __init__(self, group_id: str, index: int, data: BytesLike, chunk_id: Optional[str] = None,
                 size: Optional[int] = None, checksum: Optional[str] = None) -> None:
        self.group_id = group_id
        self.index = index
        self.data = data
        self.chunk_id = chunk_id if chunk_id is not None else f"{group_id}_{index}"
        self.size = size if size is not None else memoryview(data).nbytes
        self._checksum = checksum

    @property
    def checksum(self) -> str:
        if self._checksum is None:
            self._checksum = hashlib.sha256(self.data).hexdigest()
        return self._checksum

    @checksum.setter
    def checksum(self, value: str) -> None:
        self._checksum = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chunk):
            return NotImplemented
        return (self.group_id, self.index, self.chunk_id, self.size) == (
            other.group_id, other.index, other.chunk_id, other.size) and bytes(self.data) == bytes(other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Chunk(chunk_id={self.chunk_id!r}, index={self.index}, size={self.size})"


def _chunk_size(chunk_size: Union[int, str]) -> int:
    size = parse_size(chunk_size)
    if size <= 0:
        raise ValidationError(f"chunk_size must be > 0, got {chunk_size!r}")
    return size


class Chunks:
    """The chunks of one object, split strictly (§P5): chunk i holds ``[i*C, min((i+1)*C, n))``.

    Lazy: :meth:`from_bytes` yields zero-copy ``memoryview`` slices, :meth:`from_file` reads
    each chunk only when iteration reaches it. Empty data gives one empty chunk.

    >>> [bytes(c.data) for c in Chunks.from_bytes(b"abcde", 2, "g")]
    [b'ab', b'cd', b'e']
    """

    def __init__(self, group_id: str, n: int, total_size: int, factory: Callable[[], Iterator[Chunk]]) -> None:
        self.group_id = group_id
        self.n = n
        self.total_size = total_size
        self._factory = factory

    @staticmethod
    def count(total_size: int, chunk_size: int) -> int:
        """Number of chunks of a ``total_size``-byte object (1 for an empty one)."""
        return max(1, -(-total_size // chunk_size))

    @classmethod
    def from_bytes(cls, data: BytesLike, chunk_size: Union[int, str], group_id: str) -> Chunks:
        size = _chunk_size(chunk_size)
        view = memoryview(data).cast("B")
        total = view.nbytes
        n = cls.count(total, size)

        def gen() -> Iterator[Chunk]:
            for i in range(n):
                yield Chunk(group_id, i, view[i * size:min((i + 1) * size, total)])

        return cls(group_id, n, total, gen)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike[str]], chunk_size: Union[int, str], group_id: str) -> Chunks:
        size = _chunk_size(chunk_size)
        try:
            total = os.stat(path).st_size
        except OSError as exc:
            raise LocalStorageError(f"cannot stat {path}: {exc}") from exc
        n = cls.count(total, size)

        def gen() -> Iterator[Chunk]:
            try:
                with open(path, "rb") as fh:
                    for i in range(n):
                        expected = min(size, total - i * size)
                        data = fh.read(expected)
                        if len(data) != expected:
                            raise LocalStorageError(f"{path} changed while being read (chunk {i})")
                        yield Chunk(group_id, i, data)
            except OSError as exc:
                raise LocalStorageError(f"cannot read {path}: {exc}") from exc

        return cls(group_id, n, total, gen)

    @classmethod
    def from_list(cls, chunks: Iterable[Chunk], group_id: str = "") -> Chunks:
        items = list(chunks)
        return cls(group_id, len(items), sum(c.size for c in items), lambda: iter(items))

    def __iter__(self) -> Iterator[Chunk]:
        return self._factory()

    def iter(self) -> Iterator[Chunk]:
        return self._factory()

    def to_list(self) -> List[Chunk]:
        return list(self._factory())

    def __len__(self) -> int:
        return self.n

    def len(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Chunks(group_id={self.group_id!r}, n={self.n}, total_size={self.total_size})"
