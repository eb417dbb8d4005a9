"""Pending phase-1 tasks (protocol §3.1): in memory, with expiry and capacity reservations.

A task's reservation is held from P1 until its phase 2 ends, but while phase 2 has not
started it is held only until ``reserve_until`` (``--reserve-timeout``): then it is released
and the task keeps living until ``expires_at`` without one; its phase 2 re-checks the
capacity when it starts (``reacquire``). ``client`` names who made the reservation, for
the per-client cap of not-yet-streaming reservations (``pending_of``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Task:
    task_id: str
    bucket_id: str
    key: str
    size: int
    checksum: str
    meta: dict[str, Any]  # tags, content_type, producer_id, ball_id, is_disabled
    update: bool
    exists: bool
    expires_at: float
    claimed: bool = False
    reserved: int = field(default=0)
    #: the version this write creates (peer-assigned when P1 carried no ``Mictlanx-Version``)
    version: str = ""
    #: ``Mictlanx-Stage: 1``: committed as a staged version, not as current
    staged: bool = False
    #: P1 carried ``Mictlanx-Version``: pure last-writer-wins, the ``Update`` rules do not apply
    versioned: bool = False
    #: the client address (or the forwarded one) that made the reservation
    client: str = ""
    #: monotonic time when an unclaimed task's reservation is released
    reserve_until: float = math.inf
    #: bytes of the reservation already written to the file system (phase 2 in progress)
    written: int = 0


class TaskTable:
    """Tasks by id. A task is claimed by one phase-2 request and forgotten when it ends."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.reserved = 0
        self._purged_at = 0.0

    def __contains__(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        if not task.claimed and task.expires_at <= time.monotonic():
            self._drop(task)
            return False
        return True

    def purge(self, *, force: bool = False) -> None:
        """Forget expired pending tasks and release the stale reservations of unclaimed ones
        (at most once a second unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._purged_at < 1.0:
            return
        self._purged_at = now
        for task in [t for t in self.tasks.values() if not t.claimed]:
            if task.expires_at <= now:
                self._drop(task)
            elif task.reserve_until <= now and task.reserved:
                self.reserved -= task.reserved
                task.reserved = 0

    def pending_of(self, client: str) -> int:
        """The bytes reserved by ``client``'s tasks whose phase 2 has not started."""
        return sum(t.reserved for t in self.tasks.values() if not t.claimed and t.client == client)

    def outstanding(self) -> int:
        """Reserved bytes not yet on the file system (what free space must still hold)."""
        return sum(max(0, t.reserved - t.written) for t in self.tasks.values())

    def reacquire(self, task: Task) -> None:
        """Phase 2 of a task whose reservation timed out: reserve its size again (the caller checked it fits)."""
        if not task.exists and task.reserved == 0:
            task.reserved = task.size
            self.reserved += task.size

    def add(self, task: Task) -> None:
        task.reserved = 0 if task.exists else task.size
        self.reserved += task.reserved
        self.tasks[task.task_id] = task

    def claim(self, task_id: str) -> Optional[Task]:
        """The pending, unexpired task ``task_id``, now claimed; ``None`` otherwise."""
        task = self.tasks.get(task_id)
        if task is None or task.claimed:
            return None
        if task.expires_at <= time.monotonic():
            self._drop(task)
            return None
        task.claimed = True
        return task

    def finish(self, task: Task) -> None:
        if self.tasks.get(task.task_id) is task:
            self._drop(task)

    def cancel(self, task_id: str) -> bool:
        """Remove a pending (unclaimed, unexpired) task."""
        task = self.tasks.get(task_id)
        if task is None or task.claimed:
            return False
        expired = task.expires_at <= time.monotonic()
        self._drop(task)
        return not expired

    def flush(self) -> int:
        pending = [t for t in self.tasks.values() if not t.claimed]
        for task in pending:
            self._drop(task)
        return len(pending)

    def _drop(self, task: Task) -> None:
        self.tasks.pop(task.task_id, None)
        self.reserved -= task.reserved
        task.reserved = 0
