"""What every handler shares: configuration, the store, the task table, the version clock, P12's client."""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import Any, Optional

from ...protocol.versions import HybridClock
from . import gc
from .config import PeerConfig
from .storage import Storage
from .tasks import TaskTable

_WRITER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PeerState:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        # Half the headroom is held as a file (released only for deletes, metadata updates and
        # GC on a full disk); admission keeps the other half free for the index's normal growth.
        self.storage = Storage(config.resolved_data_dir(), fsync=config.fsync,
                               reserve=(config.index_headroom // 2) // 4096 * 4096, fsck=config.fsck,
                               inline_max=config.inline_ball_max)
        self.tasks = TaskTable()
        # Versions for writes that reach this peer without one; named by the peer when its id
        # is a valid writer id, and never behind anything already stored (a restart with a
        # lagging wall clock still hands out newer versions).
        self.clock = HybridClock(config.peer_id if _WRITER_ID.fullmatch(config.peer_id) else None)
        self.clock.observe(self.storage.max_version())
        self.client: Optional[Any] = None  # httpx.AsyncClient, created on first use (P12)
        self._gc: Optional[asyncio.Task[None]] = None

    def start_gc(self) -> None:
        """Start the background sweep on the running loop (once; later calls do nothing)."""
        if self._gc is None:
            self._gc = asyncio.get_running_loop().create_task(gc.run(self))

    def total_disk(self) -> int:
        if self.config.capacity is not None:
            return self.config.capacity
        return shutil.disk_usage(self.storage.data_dir).total

    def free_disk(self) -> int:
        return shutil.disk_usage(self.storage.data_dir).free

    def free_for_data(self) -> int:
        """Free bytes ball data may still take: the file system's free space, plus the held
        reserve, minus the index headroom and the reserved bytes not yet written."""
        free = self.free_disk() + self.storage.reserve_held()
        return free - self.config.index_headroom - self.tasks.outstanding()

    def fits(self, size: int) -> Optional[str]:
        """Why ``size`` more bytes cannot be admitted now (None: they can).

        §3.1 and docs/reliability.md "Disk, capacity and reservations": used + reserved + size
        within the capacity (plus the index headroom when the capacity is the file system's
        size), and the file system's free space, less the headroom and the reserved bytes not
        yet written, holds ``size``. A ball kept in the index (docs/storage.md) may also use
        the index's free pages: deleting inline balls frees no file system space (SQLite keeps
        the pages for reuse), so without them a full disk would refuse small balls for good.
        """
        config, tasks = self.config, self.tasks
        headroom = 0 if config.capacity is not None else config.index_headroom
        if self.storage.used + tasks.reserved + size + headroom > self.total_disk():
            return f"not enough capacity for {size} bytes"
        free = self.free_for_data()
        if self.storage.inlines(size):  # kept in the index: its free pages (deleted blobs) hold it too
            free += self.storage.index_free()
        if free < size:
            return f"not enough free space for {size} bytes (the index headroom is {config.index_headroom} bytes)"
        return None

    def max_pending_per_client(self) -> int:
        config = self.config
        if config.max_reserved_per_client is not None:
            return config.max_reserved_per_client
        return int(self.total_disk() * config.max_reserved_fraction)

    async def close(self) -> None:
        if self._gc is not None:
            self._gc.cancel()
            try:
                await self._gc
            except asyncio.CancelledError:
                pass
            self._gc = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        self.storage.close()
