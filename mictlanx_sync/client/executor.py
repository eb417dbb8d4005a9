"""``BoundedExecutor``: the client's one transfer pool and its buffer budget (client-api §8.2).

Chunk I/O of every call of a client runs in one ``ThreadPoolExecutor(max_workers)``, and a
client-wide budget of ``max_workers`` chunk buffers keeps memory at about ``max_workers x
chunk_size`` whatever the number of calling threads. The executor owns both, so that no
caller takes or gives back a buffer token itself:

- :meth:`BoundedExecutor.reserve` waits for one token (in short slices, so Ctrl-C reaches
  the caller, and ``close()`` or the caller's own cancellation ends the wait) and holds it
  for the ``with`` block: a chunk read from a source or sent from the caller's own thread;
- :meth:`_Slot.submit`, inside that block, hands the token over to a pool task, which gives
  it back when it ends (done, failed or cancelled); :meth:`BoundedExecutor.submit` does
  both steps at once.

A task in the pool never waits on another task in it, so nested-pool deadlocks cannot
happen; callers (user threads, bulk workers) are the only ones that wait.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import threading
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

from ..protocol.errors import ClientClosedError
from .lifecycle import Lifecycle

T = TypeVar("T")

__all__ = ["BoundedExecutor", "WAIT_SLICE", "wait_in_slices"]

#: How long a waiting caller sleeps at a time, so Ctrl-C is seen promptly in notebooks.
WAIT_SLICE = 0.25


def _never() -> bool:
    return False


class BoundedExecutor:
    """The transfer pool and the buffer budget of one client. Thread-safe."""

    def __init__(self, max_workers: int, name: str, lifecycle: Lifecycle) -> None:
        self.max_workers = max_workers
        self.name = name
        self.lifecycle = lifecycle
        self._build()
        lifecycle.on_fork(self._build)

    def _build(self) -> None:
        """New locks, budget and pool (at construction, and in a forked child)."""
        self._budget = threading.BoundedSemaphore(self.max_workers)
        self._lock = threading.Lock()
        self._pool: Optional[cf.ThreadPoolExecutor] = None

    @contextlib.contextmanager
    def reserve(self, cancelled: Callable[[], bool] = _never) -> Iterator[Optional[_Slot]]:
        """One chunk buffer of the client-wide budget, for the ``with`` block.

        Yields a slot (hand the token to a pool task with ``slot.submit``), or ``None`` when
        ``cancelled()`` became true while waiting. Raises ``ClientClosedError`` once the
        client closes. The token goes back when the block ends, unless a task took it.
        """
        while not self._budget.acquire(timeout=WAIT_SLICE):
            if self.lifecycle.closed:
                raise ClientClosedError()
            if cancelled():
                yield None
                return
        slot = _Slot(self)
        try:
            yield slot
        finally:
            if not slot.taken:
                self._budget.release()

    def submit(self, task: Callable[..., T], *args: Any,
               cancelled: Callable[[], bool] = _never) -> Optional[cf.Future[T]]:
        """``task(*args)`` in the pool, holding one buffer token from now until it ends;
        ``None`` when cancelled while waiting for the token (``ClientClosedError`` if closed)."""
        with self.reserve(cancelled) as slot:
            return None if slot is None else slot.submit(task, *args)

    def _start(self, task: Callable[..., T], *args: Any) -> cf.Future[T]:
        with self._lock:
            if self.lifecycle.closed:
                raise ClientClosedError()
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(self.max_workers, f"mictlanx-{self.name}")
            pool = self._pool
        try:
            # The context carries the user's operation and call scope into the pool thread.
            return pool.submit(contextvars.copy_context().run, task, *args)
        except RuntimeError:  # close() shut the pool down between the lookup and the submit
            raise ClientClosedError() from None

    def shutdown(self, wait: bool = True) -> None:
        """Cancel queued tasks and stop the pool (``close()``; the lifecycle is closed already)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def __repr__(self) -> str:
        return f"BoundedExecutor(max_workers={self.max_workers}, name={self.name!r})"


class _Slot:
    """One reserved buffer token, until a task takes it."""

    def __init__(self, executor: BoundedExecutor) -> None:
        self._executor = executor
        self.taken = False

    def submit(self, task: Callable[..., T], *args: Any) -> cf.Future[T]:
        """Run ``task(*args)`` in the pool; the token is the task's now, released when it ends."""
        if self.taken:
            raise RuntimeError("a slot runs one task")
        executor = self._executor
        future = executor._start(task, *args)  # ClientClosedError: the token stays the block's
        self.taken = True
        budget = executor._budget
        future.add_done_callback(lambda _done: budget.release())
        return future


def wait_in_slices(futures: Iterable[cf.Future], return_when: str = cf.FIRST_COMPLETED,
                   cancelled: Callable[[], bool] = _never) -> tuple[set[cf.Future], set[cf.Future]]:
    """``concurrent.futures.wait`` in short slices, so KeyboardInterrupt reaches the caller."""
    pending = set(futures)
    done: set[cf.Future] = set()
    while pending:
        finished, pending = cf.wait(pending, timeout=WAIT_SLICE, return_when=return_when)
        done |= finished
        if finished and return_when == cf.FIRST_COMPLETED:
            break
        if return_when == cf.FIRST_EXCEPTION and any(f.exception() is not None for f in finished if not f.cancelled()):
            break
        if cancelled():
            break
    return done, pending
