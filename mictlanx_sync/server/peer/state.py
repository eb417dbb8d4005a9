"""What every handler shares: configuration, the store, the task table, P12's HTTP client."""

from __future__ import annotations

import shutil
from typing import Any, Optional

from .config import PeerConfig
from .storage import Storage
from .tasks import TaskTable


class PeerState:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.storage = Storage(config.resolved_data_dir(), fsync=config.fsync)
        self.tasks = TaskTable()
        self.client: Optional[Any] = None  # httpx.AsyncClient, created on first use (P12)

    def total_disk(self) -> int:
        if self.config.capacity is not None:
            return self.config.capacity
        return shutil.disk_usage(self.storage.data_dir).total

    def free_disk(self) -> int:
        return shutil.disk_usage(self.storage.data_dir).free

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        self.storage.close()
