"""``TransferCoordinator``: the chunk tasks of one object, the client's one bounded parallel loop.

Reads (memory, file or iterator) and writes all move an object as chunk tasks in the
client's :class:`~.executor.BoundedExecutor`; one coordinator per object (s3transfer's
``TransferCoordinator``) submits them in order, at most ``window()`` in flight, each holding
one buffer token of the client-wide budget from its submission until it ends, and yields
their results as they complete. It also owns what happens when the object's transfer fails
or is abandoned:

- **a task fails** (raises): no further task is submitted. The tasks already running
  finish normally and their results are still yielded (a put needs the checksums of the
  chunks it did send, a read lets its chunks land); then the first failure is raised, and
  :attr:`TransferCoordinator.failures` lists every one. With ``fail_fast`` (an iterator of
  chunks, which reports each chunk as it comes) the running tasks are aborted instead and
  the failure raised at once;
- **the consumer leaves** (an interrupt such as Ctrl-C while waiting, an exception, a
  generator closed early): the transfer is *aborted*. :attr:`aborted` is set, so a task
  stops at its next piece (sinks refuse it); the coordinator's call scope is aborted, so a
  task blocked on a socket returns at once; tasks not started are cancelled; and the
  coordinator waits for the running ones, so none touches the object's memory or file after
  the consumer has moved on (``get_to_file`` closes its descriptor next, and the number
  could be reused by another file);
- **the client closes**: queued tasks are cancelled by the pool and running ones fail with
  their sockets shut; both end as ``ClientClosedError``.

A task is any callable; one with a ``prepare()`` method has it called in the consumer's
thread, holding its buffer token, before it is submitted (a put reads the chunk from its
source there, in index order).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Callable, Generator, Iterable, Optional

from ..protocol.errors import ClientClosedError, MictlanXError
from ..protocol.scopes import entered_scope
from .executor import BoundedExecutor, wait_in_slices

__all__ = ["TransferCoordinator", "Aborted"]


class Aborted(Exception):
    """The transfer was abandoned: a chunk task stops (raised by sinks, ignored here)."""


class TransferCoordinator:
    """One object's chunk tasks. Use :meth:`run` once."""

    def __init__(self, executor: BoundedExecutor, window: Callable[[], int], *, fail_fast: bool = False) -> None:
        self.executor = executor
        self.window = window
        self.fail_fast = fail_fast
        #: set when the transfer is abandoned: chunk sinks refuse every further piece
        self.aborted = threading.Event()
        #: every task failure, the first one first
        self.failures: list[BaseException] = []
        #: the call scope of this object's requests, under the caller's (aborted with the transfer)
        self.scope = executor.lifecycle.child_scope()

    def run(self, tasks: Iterable[Callable[[], Any]]) -> Generator[tuple[Any, Any], None, None]:
        """Submit ``tasks`` in order within the window; yield ``(task, result)`` as each one
        completes. Raises the first failure (see the module docstring)."""
        in_flight: dict[cf.Future, Any] = {}
        queue = iter(tasks)
        exhausted = False
        finished = False
        try:
            while True:
                while not exhausted and not self.failures and (not in_flight or len(in_flight) < self.window()):
                    task = next(queue, None)
                    if task is None:
                        exhausted = True
                        break
                    future = self._submit(task)
                    if future is None:
                        break
                    in_flight[future] = task
                if not in_flight:
                    break
                for future in wait_in_slices(in_flight)[0]:
                    task = in_flight.pop(future)
                    error = self._outcome(future)
                    if error is None:
                        yield task, future.result()
                    elif self.fail_fast:
                        raise error
            finished = True
        finally:
            if not finished:
                self._abort(in_flight)
        if self.failures:
            raise self.failures[0]

    def _submit(self, task: Any) -> Optional[cf.Future]:
        """Take a buffer token, ``task.prepare()`` if it has one, and hand both to the pool;
        ``None`` when a failure stopped the submissions meanwhile."""
        try:
            with self.executor.reserve(cancelled=lambda: bool(self.failures)) as slot:
                if slot is None:
                    return None
                prepare = getattr(task, "prepare", None)
                if prepare is not None:
                    prepare()
                return slot.submit(self._run, task)
        except MictlanXError as error:  # a source that cannot be read, or the client closed
            self.failures.append(error)
            return None

    def _run(self, task: Callable[[], Any]) -> Any:
        """In a pool thread: the task, inside this transfer's call scope."""
        if self.aborted.is_set():
            raise Aborted()
        with entered_scope(self.scope):
            return task()

    def _outcome(self, future: cf.Future) -> Optional[BaseException]:
        """The failure a completed task ended with (recorded), or ``None``."""
        if future.cancelled():  # only close() cancels our futures while we still wait on them
            error: Optional[BaseException] = ClientClosedError()
        else:
            error = future.exception()
        if error is not None:
            self.failures.append(error)
        return error

    def _abort(self, in_flight: dict[cf.Future, Any]) -> None:
        self.aborted.set()
        self.scope.abort("interrupted")  # chunk requests blocked on a socket fail now
        running = {future for future in in_flight if not future.cancel()}
        wait_in_slices(running, cf.ALL_COMPLETED)
