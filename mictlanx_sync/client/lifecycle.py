"""Whether a client is open, the scope its calls live in, and what a fork makes it rebuild.

``close()`` sets :attr:`Lifecycle.closing` and aborts :attr:`Lifecycle.root_scope`: every
call scope of the client descends from it, so a thread blocked in a read returns at once (its
socket is shut down) and every operation ends with ``ClientClosedError``. After ``os.fork()``
the child's first call runs the rebuilds the components registered (new locks, pools,
breakers; the cache reopened), once (client-api §8.2).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable, ContextManager, Optional

from ..protocol.errors import ClientClosedError
from ..protocol.scopes import CallScope, call_scope, current_scope

__all__ = ["Lifecycle"]

_LIFECYCLES: weakref.WeakSet[Lifecycle] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lifecycle in list(_LIFECYCLES):
        lifecycle._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Lifecycle:
    """The open/closed state of one client, shared by its components. Thread-safe."""

    def __init__(self) -> None:
        #: set by :meth:`close`; waits and retries of the client's calls watch it
        self.closing = threading.Event()
        #: the parent of every call scope of this client (:mod:`mictlanx_sync.protocol.scopes`)
        self.root_scope = CallScope()
        self._close_lock = threading.Lock()
        self._forked = False
        self._rebuilds: list[Callable[[], None]] = []
        _LIFECYCLES.add(self)

    @property
    def closed(self) -> bool:
        return self.closing.is_set()

    def on_fork(self, rebuild: Callable[[], None]) -> None:
        """Run ``rebuild`` in a forked child before its first call (it must not share locks,
        threads or sockets with the parent)."""
        self._rebuilds.append(rebuild)

    def check(self) -> None:
        """Raise ``ClientClosedError`` once closing; in a forked child, rebuild first (once)."""
        if self.closing.is_set():
            raise ClientClosedError()
        if self._forked:
            self._forked = False
            for rebuild in self._rebuilds:
                rebuild()

    def scope(self, seconds: Optional[float] = None) -> ContextManager[CallScope]:
        """A call scope under the current one, else under the root: its calls end at its
        deadline, on ``abort()``, or when the client closes (``with lifecycle.scope(): ...``)."""
        return call_scope(seconds, self.root_scope)

    def child_scope(self) -> CallScope:
        """A scope under the current one (else the root) that is not made current here: the
        chunk tasks of one transfer enter it in their own threads."""
        return CallScope(None, current_scope() or self.root_scope)

    def close(self) -> bool:
        """Mark the client closed and end every call in flight; ``True`` the first time only."""
        with self._close_lock:
            if self.closing.is_set():
                return False
            self.closing.set()
        self.root_scope.abort("closed")  # calls blocked in a read return now
        return True

    def __repr__(self) -> str:
        return f"Lifecycle(closed={self.closed})"


