"""Result buffers of ``get``, reused once the caller has let go of them.

A large ``get`` lands in a fresh buffer, and fresh memory costs page faults: the kernel
maps and zeroes every 4 KiB page the first time a chunk lands on it. Measured on the
2-core VM of README "Performance", that is ~0.67 s of CPU per GB, as much as hashing
the bytes, and it is why ``get`` of 128 MiB reached only 81-88% of a plain stream that
hashes 1 MiB pieces in memory the allocator reuses. (glibc maps every allocation this
large on its own and unmaps it when freed, so a new buffer is always fresh memory.)

:class:`ResultBuffers` keeps the buffers ``get`` handed out, up to a configured number
of bytes (``Client(result_buffer_pool=...)``), and hands one out again for an object of
the same size once **nothing else refers to it**. CPython's reference count says so
exactly: the caller's ``GetResponse.data``, any slice of it, a ``memoryview`` or numpy
array made from it and ``data.obj`` all hold a reference to the buffer (a view through
its managed buffer), so a buffer whose only reference is the pool's cannot be seen by
anyone. A reused buffer is, like a fresh unfilled one, exposed only after every byte
was overwritten by the object's verified chunks (:func:`.sinks.unfilled_bytearray`).

Bounds: buffers below :data:`RECYCLE_FROM` (which the allocator reuses itself) and
buffers larger than the capacity are never kept; the pool forgets its oldest buffers
beyond the capacity (memory the caller still holds stays the caller's), forgets the
buffers nobody took for :data:`IDLE_SECONDS` (a timer, so an idle client gives the memory
back), and ``Client.close()`` forgets them all. Only on CPython with the GIL, where
reference counts are exact and read atomically; elsewhere every buffer is new.
Thread-safe.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional

from .sinks import unfilled_bytearray

__all__ = ["ResultBuffers", "RECYCLE_FROM", "IDLE_SECONDS"]

#: Smaller buffers come from the allocator's heap, which reuses its own memory.
RECYCLE_FROM = 8 * 1024 * 1024
#: A kept buffer nobody took for this long is forgotten (freed once the caller lets go).
IDLE_SECONDS = 30.0


def _refs_in_slot(held: list[bytearray], index: int) -> int:
    """References to ``held[index]``, as this very call sees them (its own included)."""
    return sys.getrefcount(held[index])


def _baseline() -> Optional[int]:
    """What :func:`_refs_in_slot` counts for a buffer that only the list refers to, measured
    with the same call (the interpreter's own temporary references differ by version);
    ``None`` where reference counts cannot prove a buffer free."""
    if sys.implementation.name != "cpython" or not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    return _refs_in_slot([bytearray(1)], 0)


_UNREFERENCED = _baseline()


class ResultBuffers:
    """Buffers for ``get`` results, each reused once its last outside reference is gone
    (module docstring). ``capacity`` bytes at most are kept; 0 turns reuse off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity if _UNREFERENCED is not None else 0
        self._lock = threading.Lock()
        self._held: list[bytearray] = []  # oldest first
        self._kept_at: dict[int, float] = {}  # id(buffer) -> when it was last handed out
        self._timer: Optional[threading.Timer] = None

    def take(self, size: int) -> bytearray:
        """A buffer of exactly ``size`` bytes, contents undefined: one nobody refers to any
        more, else a new unfilled one. The caller must overwrite every byte before exposing it."""
        if self._keeps(size):
            with self._lock:
                for index in range(len(self._held)):
                    if len(self._held[index]) == size and _refs_in_slot(self._held, index) == _UNREFERENCED:
                        buffer = self._held.pop(index)  # from here on only the caller refers to it
                        del self._kept_at[id(buffer)]
                        return buffer
        return unfilled_bytearray(size)

    def keep(self, buffer: bytearray) -> None:
        """Track ``buffer`` (just handed to a caller, or left over by a failed read) for reuse."""
        if not self._keeps(len(buffer)):
            return
        with self._lock:
            self._held.append(buffer)
            self._kept_at[id(buffer)] = time.monotonic()
            total = sum(len(b) for b in self._held)
            while total > self.capacity:
                total -= len(self._forget(0))
            if self._timer is None:
                self._schedule()

    def clear(self) -> None:
        """Forget every buffer (``Client.close()``, and in a forked child)."""
        with self._lock:
            self._held.clear()
            self._kept_at.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def held_bytes(self) -> int:
        """Bytes of the buffers tracked now (in use by callers or free)."""
        with self._lock:
            return sum(len(b) for b in self._held)

    def _keeps(self, size: int) -> bool:
        return RECYCLE_FROM <= size <= self.capacity

    def _forget(self, index: int) -> bytearray:
        buffer = self._held.pop(index)
        del self._kept_at[id(buffer)]
        return buffer

    def _schedule(self) -> None:
        timer = threading.Timer(IDLE_SECONDS, self._expire)
        timer.daemon = True  # never keeps a process alive
        self._timer = timer
        timer.start()

    def _expire(self) -> None:
        """Forget the buffers idle for ``IDLE_SECONDS``; look again later while any are left."""
        with self._lock:
            self._timer = None
            horizon = time.monotonic() - IDLE_SECONDS
            for index in reversed(range(len(self._held))):
                if self._kept_at[id(self._held[index])] <= horizon:
                    self._forget(index)
            if self._held:
                self._schedule()
