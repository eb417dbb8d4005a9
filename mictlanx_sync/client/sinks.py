"""Chunk sinks: where one chunk's bytes land, a region of the result buffer or of a ``.part`` file.

(The server's peer has a ``Sink`` of its own, an upload's temporary file; these are the
client's, named ``ChunkSink``. Where a whole object lands is :mod:`.object_sinks`.)

A reader fills a chunk sink piece by piece: ``region(position, size)`` hands out the memory
for the next piece (at most ``size`` bytes, at ``position`` from the chunk start), the
reader fills it (a socket or a cache file ``readinto`` it) and hashes exactly that
memory, then ``commit(position, n)`` says ``n`` bytes are there. A memory sink's region
*is* the destination, so each byte is copied once (socket → result buffer); a file sink
hands out a staging buffer and writes it out at ``commit``. A retry simply refills from
position 0.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Callable, Optional, Protocol

from ..protocol.errors import LocalStorageError
from .coordinator import Aborted

__all__ = ["ChunkSink", "BufferChunkSink", "FileChunkSink", "Guarded", "Progress", "unfilled_bytearray"]


def _unfilled_factory() -> Optional[Callable[[None, int], bytearray]]:
    try:
        make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except (AttributeError, ValueError):  # not CPython
        return None
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    return make  # type: ignore[no-any-return]


_UNFILLED = _unfilled_factory()
_UNFILLED_FROM = 1024 * 1024


def _madvise_factory() -> Optional[Callable[[int, int, int], int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (AttributeError, OSError):
        return None
    madvise.restype = ctypes.c_int
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return madvise  # type: ignore[no-any-return]


_MADVISE = _madvise_factory()
_MADV_HUGEPAGE = 14  # linux/mman.h
_HUGE_PAGE = 2 * 1024 * 1024
_HUGE_FROM = 8 * 1024 * 1024


def _advise_huge_pages(buffer: bytearray) -> None:
    """Ask Linux to back the untouched buffer with transparent huge pages (2 MiB).

    A fresh 64 MiB buffer costs 16,384 page faults, each zeroing 4 KiB, as chunks land:
    about a third of the CPU of a cache hit. ``madvise(MADV_HUGEPAGE)`` on the 2 MiB
    aligned interior of the buffer's allocation (malloc maps buffers this large on their
    own) makes that 32 faults. Only advice, taken before any page of it is touched (the
    buffer is unfilled): where THP is off, or on failure, nothing changes.
    """
    if _MADVISE is None or len(buffer) < _HUGE_FROM:
        return
    handle = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    try:
        address = ctypes.addressof(handle)
    finally:
        del handle  # releases the buffer export at once
    start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    end = (address + len(buffer)) & ~(_HUGE_PAGE - 1)
    if end > start:
        _MADVISE(start, end - start, _MADV_HUGEPAGE)


def unfilled_bytearray(size: int) -> bytearray:
    """A ``bytearray`` of ``size`` bytes whose contents are *not* zeroed first.

    ``bytearray(size)`` writes ``size`` zeros in the calling thread, which for a large,
    freshly mapped buffer also takes every page fault there, before a single chunk can
    land. ``get`` overwrites every byte anyway (its chunks tile the buffer, and it
    succeeds only once each one has landed in full), so it asks CPython's
    ``PyByteArray_FromStringAndSize(NULL, size)`` for an uninitialised one: the page
    faults then happen in the chunk tasks, in parallel, as they fill it. The buffer must
    never be exposed unless every byte was written. Small sizes, and other Pythons, get
    ``bytearray(size)``. Large buffers are backed by huge pages where Linux allows
    (:func:`_advise_huge_pages`).
    """
    if _UNFILLED is None or size < _UNFILLED_FROM or size >= sys.maxsize:
        return bytearray(size)  # (beyond Py_ssize_t: bytearray's own OverflowError)
    buffer = _UNFILLED(None, size)
    if type(buffer) is not bytearray or len(buffer) != size:  # pragma: no cover - defensive
        return bytearray(size)
    _advise_huge_pages(buffer)
    return buffer


class ChunkSink(Protocol):
    """Where one chunk's bytes land (module docstring)."""

    def region(self, position: int, size: int) -> memoryview:
        """Memory for the next piece: ``1..size`` bytes, to be filled from ``position``."""
        ...

    def commit(self, position: int, size: int) -> None:
        """The first ``size`` bytes of the last region are filled."""
        ...

    def data(self) -> Optional[memoryview]:
        """The whole chunk in memory once it is complete (for the cache), else ``None``."""
        ...


class BufferChunkSink:
    """A region of the caller's buffer (``get``, ``get_chunks``): pieces are read in place."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def region(self, position: int, size: int) -> memoryview:
        return self.view[position:position + size]

    def commit(self, position: int, size: int) -> None:
        pass

    def data(self) -> Optional[memoryview]:
        return self.view


class FileChunkSink:
    """Positional writes into an open file descriptor (``get_to_file``).

    With ``keep`` (a buffer of the chunk's size, when the cache is on) pieces are read
    into it and written from it, and it holds the chunk for the cache afterwards; without,
    one staging buffer of at most ``piece`` bytes serves every piece.
    """

    def __init__(self, fd: int, base: int, keep: Optional[bytearray] = None, piece: int = 1024 * 1024) -> None:
        self.fd = fd
        self.base = base
        self.keep = memoryview(keep) if keep is not None else None
        self.piece = piece
        self._staging: Optional[memoryview] = None

    def region(self, position: int, size: int) -> memoryview:
        if self.keep is not None:
            return self.keep[position:position + size]
        if self._staging is None:
            self._staging = memoryview(bytearray(self.piece))
        return self._staging[:min(size, self.piece)]

    def commit(self, position: int, size: int) -> None:
        if self.keep is not None:
            view = self.keep[position:position + size]
        else:
            assert self._staging is not None
            view = self._staging[:size]
        offset = self.base + position
        try:
            while view:
                written = os.pwrite(self.fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:  # disk full, I/O error: local, never retried as a network fault
            raise LocalStorageError(f"cannot write the downloaded chunk: {exc}") from exc

    def data(self) -> Optional[memoryview]:
        return self.keep


class Guarded:
    """A sink that refuses every piece once the read is abandoned (its transfer aborted): the
    chunk task stops at its next piece with :class:`~.coordinator.Aborted`."""

    def __init__(self, sink: ChunkSink, aborted: threading.Event) -> None:
        self.sink = sink
        self.aborted = aborted

    def region(self, position: int, size: int) -> memoryview:
        if self.aborted.is_set():
            raise Aborted()
        return self.sink.region(position, size)

    def commit(self, position: int, size: int) -> None:
        if self.aborted.is_set():
            raise Aborted()
        self.sink.commit(position, size)

    def data(self) -> Optional[memoryview]:
        return self.sink.data()


class Progress:
    """Reports bytes committed, once each: a retry refills the chunk from position 0, and
    only bytes past the furthest point reached before are reported again."""

    def __init__(self, sink: ChunkSink, progress: Optional[Callable[[int], None]]) -> None:
        self.sink = sink
        self.progress = progress
        self._reached = 0  # one chunk, filled by one task at a time

    def region(self, position: int, size: int) -> memoryview:
        return self.sink.region(position, size)

    def commit(self, position: int, size: int) -> None:
        self.sink.commit(position, size)
        end = position + size
        if self.progress is not None and end > self._reached:
            self.progress(end - self._reached)
            self._reached = end

    def data(self) -> Optional[memoryview]:
        return self.sink.data()
