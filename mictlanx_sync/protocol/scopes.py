"""Call scopes: a deadline and an abort switch for every HTTP call made inside them.

A socket timeout bounds one read, not a call: a server that drips one byte per second
keeps a download alive forever, and a thread blocked in ``recv`` ignores Ctrl-C in the
thread that waits for it and ``close()`` in another. A :class:`CallScope` fixes both at
the connection level. While a scope is current (a ``contextvars`` variable, so pool
threads started with a copied context inherit it), every connection the transport takes
from its pool is attached to it; :meth:`CallScope.abort` (or its deadline, through one
watchdog thread per process) shuts those sockets down, so a blocked read returns at once
and the request fails. The caller then reports why: :attr:`CallScope.expired` (a
deadline: ``RequestTimeoutError``) or :attr:`CallScope.aborted` (interrupted or closed).

Scopes nest: aborting one aborts its children, and a child's deadline is never later
than its parent's. The layer knows nothing of chunks or clients; the client opens a scope
per operation and per request (``client/lifecycle.py``, ``client/dispatch.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
import weakref
from typing import Any, Iterator, Optional

__all__ = ["CallScope", "call_scope", "current_scope", "entered_scope"]

_CURRENT: contextvars.ContextVar[Optional[CallScope]] = contextvars.ContextVar("mictlanx_call_scope",
                                                                                default=None)


class CallScope:
    """Connections in use by calls of one operation or request. Thread-safe."""

    def __init__(self, deadline: Optional[float] = None, parent: Optional[CallScope] = None) -> None:
        inherited: Optional[float] = parent.deadline if parent is not None else None
        if inherited is not None:
            deadline = inherited if deadline is None else min(deadline, inherited)
        #: ``time.monotonic()`` value after which the scope expires, or None
        self.deadline: Optional[float] = deadline
        self.reason: Optional[str] = None
        self.cancelled = threading.Event()  # set once aborted or expired: retry sleeps wake up
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._children: weakref.WeakSet[CallScope] = weakref.WeakSet()
        #: the ``with`` block that opened it has ended (its deadline no longer matters)
        self.finished = False
        if parent is not None:
            parent._adopt(self)
        if deadline is not None:
            _WATCHDOG.schedule(self)

    # --- state ---------------------------------------------------------------------------
    @property
    def aborted(self) -> bool:
        return self.reason is not None

    @property
    def expired(self) -> bool:
        """Ended by its deadline (or an ancestor's)."""
        return self.reason == "deadline"

    def remaining(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.monotonic()

    # --- connections ---------------------------------------------------------------------
    def attach(self, connection: Any) -> None:
        """Track a connection taken from a pool; shut it at once if the scope has ended."""
        with self._lock:
            ended = self.reason is not None
            if not ended:
                self._connections.add(connection)
        if ended:
            _shut(connection)

    def detach(self, connection: Any) -> None:
        with self._lock:
            self._connections.discard(connection)

    # --- ending --------------------------------------------------------------------------
    def abort(self, reason: str = "aborted") -> None:
        """End the scope and its children: every attached connection is shut down."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            connections = list(self._connections)
            children = list(self._children)
        self.cancelled.set()
        for connection in connections:
            _shut(connection)
        for child in children:
            child.abort(reason)

    def _adopt(self, child: CallScope) -> None:
        with self._lock:
            ended = self.reason
            if ended is None:
                self._children.add(child)
        if ended is not None:
            child.abort(ended)


def _shut(connection: Any) -> None:
    """Shut a pooled connection's socket down in both directions (a blocked read returns)."""
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def current_scope() -> Optional[CallScope]:
    return _CURRENT.get()


@contextlib.contextmanager
def entered_scope(scope: CallScope) -> Iterator[CallScope]:
    """Make an existing ``scope`` the current one for the block: a pool thread running a task
    of that scope, whose requests must end when it is aborted."""
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def call_scope(seconds: Optional[float] = None, parent: Optional[CallScope] = None) -> Iterator[CallScope]:
    """A scope that ends ``seconds`` from now, or with its parent: the current scope, else
    ``parent`` (a client's root scope, which ``close()`` aborts)."""
    scope = CallScope(None if seconds is None else time.monotonic() + seconds, _CURRENT.get() or parent)
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)
        _WATCHDOG.forget(scope)


class _Watchdog:
    """One daemon thread that aborts scopes whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[CallScope]]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._pid = 0
        self._dead = 0

    def schedule(self, scope: CallScope) -> None:
        assert scope.deadline is not None
        with self._wake:
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (scope.deadline, next(self._counter), weakref.ref(scope)))
            self._ensure_thread()
            if earliest is None or scope.deadline < earliest:
                # Wake the thread only when its next deadline moved earlier: otherwise it would
                # wake, find nothing due and sleep again, a context switch on every call.
                self._wake.notify()

    def forget(self, scope: CallScope) -> None:
        """The scope's block has ended: its entry is dead. Dead entries are dropped in bulk
        once they are most of the heap, so the heap stays the size of the live scopes."""
        if scope.deadline is None:
            return
        scope.finished = True
        with self._wake:
            self._dead += 1
            if self._dead > 1024 and self._dead * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap
                              if (live := entry[2]()) is not None and not live.finished]
                heapq.heapify(self._heap)
                self._dead = 0

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()  # after fork the child needs a thread of its own
            self._thread = threading.Thread(target=self._run, name="mictlanx-deadlines", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, ref = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(min(delay, 1.0))
                    continue
                heapq.heappop(self._heap)
            scope = ref()
            if scope is not None and not scope.aborted and not scope.finished:
                scope.abort("deadline")


_WATCHDOG = _Watchdog()
