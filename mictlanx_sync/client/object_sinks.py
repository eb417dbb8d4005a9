"""Object sinks: where a whole object read lands, one of three, chosen by the operation.

An object read is one loop over its chunks (:mod:`.object_read`); what differs between
``get``, ``get_to_file`` and ``get_chunks`` is only where the chunks land, so each hands
that loop one of these:

- :class:`MemoryObjectSink` (``get``): the result buffer; chunk i fills the region at
  ``i x size(chunk 0)``, straight from the socket;
- :class:`FileObjectSink` (``get_to_file``): the ``.part`` file, written at the same offsets
  (through a staging piece, or through a buffer of the chunk when the cache keeps it);
- :class:`IteratorObjectSink` (``get_chunks``): a fresh buffer per chunk, handed to the
  caller as it is yielded.

``chunk(index, size)`` gives the :class:`~.sinks.ChunkSink` a chunk task fills;
``landed(start, size)`` reads landed bytes back for the whole-object hash (:mod:`.full_hash`).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Optional, Protocol, Union

from .files import HASH_PIECE, fd_region
from .layout import ObjectLayout
from .sinks import BufferChunkSink, ChunkSink, FileChunkSink, Progress

__all__ = ["ObjectSink", "MemoryObjectSink", "FileObjectSink", "IteratorObjectSink", "Landed"]

#: Landed bytes of an object: one view, or pieces read back one after the other.
Landed = Union[memoryview, Iterable[memoryview]]


class ObjectSink(Protocol):
    """Where the chunks of one object land (module docstring)."""

    def chunk(self, index: int, size: int) -> ChunkSink:
        """The sink chunk ``index`` (of ``size`` bytes) is read into; called in its task."""
        ...

    def landed(self, start: int, size: int) -> Landed:
        """The object's bytes ``[start, start + size)``, landed already."""
        ...


class MemoryObjectSink:
    """The result buffer of ``get``: chunk i lands at ``layout.offset(i)``, read in place."""

    def __init__(self, view: memoryview, layout: ObjectLayout, progress: Optional[Callable[[int], None]]) -> None:
        self.view = view
        self.layout = layout
        self.progress = progress

    def chunk(self, index: int, size: int) -> ChunkSink:
        start = self.layout.offset(index)
        return Progress(BufferChunkSink(self.view[start:start + size]), self.progress)

    def landed(self, start: int, size: int) -> Landed:
        return self.view[start:start + size]


class FileObjectSink:
    """The ``.part`` file of ``get_to_file``: chunk i is written at ``layout.offset(i)``.

    With ``keep`` (the cache is on) each chunk is read into a buffer of its own, which then
    fills the cache; without, through one staging buffer of ``piece`` bytes per chunk.
    """

    def __init__(self, fd: int, layout: ObjectLayout, size: int, piece: int, keep: bool,
                 progress: Optional[Callable[[int], None]]) -> None:
        self.fd = fd
        self.layout = layout
        self.piece = piece
        self.keep = keep
        self.progress = progress
        self._hash_buffer = bytearray(min(HASH_PIECE, max(size, 1)))

    def chunk(self, index: int, size: int) -> ChunkSink:
        keep = bytearray(size) if self.keep else None
        return Progress(FileChunkSink(self.fd, self.layout.offset(index), keep, self.piece), self.progress)

    def landed(self, start: int, size: int) -> Landed:
        return fd_region(self.fd, start, size, self._hash_buffer)


class IteratorObjectSink:
    """The chunks of ``get_chunks``: each lands in a buffer of its own, taken by the caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffers: dict[int, bytearray] = {}

    def chunk(self, index: int, size: int) -> ChunkSink:
        buffer = bytearray(size)  # zeroed in the chunk's task, in parallel with the others
        with self._lock:
            self._buffers[index] = buffer
        return BufferChunkSink(memoryview(buffer))

    def take(self, index: int) -> memoryview:
        """Chunk ``index``'s bytes, read-only, once its task has completed."""
        with self._lock:
            return memoryview(self._buffers.pop(index)).toreadonly()

    def landed(self, start: int, size: int) -> Landed:
        raise NotImplementedError("get_chunks hashes the object as the caller takes its chunks")
