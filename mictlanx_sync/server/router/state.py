"""The router's state: registry (with its peer client), write groups, pending deletes, clock,
the background tasks, and the rebalancer made for it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine, Optional, Protocol

from ..tls import peer_ssl_context
from .config import RouterConfig
from .groups import Groups
from .peer_client import PeerClient
from .peers import PeerEntry
from .pending import PendingDeletes
from .placement import rank
from .registry import Registry
from .versions import router_clock

log = logging.getLogger("mictlanx_sync.server.router")


class Rebalancing(Protocol):
    """What the state runs and the rebalancing endpoints (R27, R28) use of a rebalancer."""

    async def run(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def request(self) -> None: ...


class RouterState:
    """Everything one router process (or thread) keeps: registry, groups, pending deletes.

    ``rebalancer`` makes the rebalancer of this state (``rebalance.Rebalancer``, which reads
    the state, so it is made here, after the rest); it runs from start-up to shutdown.
    """

    def __init__(self, config: RouterConfig, rebalancer: Callable[[RouterState], Rebalancing]) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.pending = PendingDeletes(config.data_dir / "pending-deletes.jsonl")
        client = PeerClient(config.peer_connect_timeout, config.peer_read_timeout, peer_token=config.peer_token,
                            ssl_context=peer_ssl_context(config.peer_ca_file), raw_reads=config.raw_reads,
                            raw_writes=config.raw_writes)
        self.registry = Registry(config.data_dir, self.pending, client, health_interval=config.health_interval,
                                 unhealthy_threshold=config.unhealthy_threshold,
                                 meta_timeout=config.peer_meta_timeout,
                                 first_byte_timeout=config.peer_first_byte_timeout, grace=config.fanout_grace)
        self.registry.load(config.peers)
        self.groups = Groups(config.task_ttl, config.exists_ttl)
        #: versions for writes and deletes that arrive without one (docs/consistency.md §1.1)
        self.clock = router_clock(config.router_id)
        self._health_task: Optional[asyncio.Task] = None
        self._background: set[asyncio.Task] = set()
        self.rebalancer = rebalancer(self)

    async def startup(self) -> None:
        await self.registry.check_all(first=True)
        self._health_task = asyncio.ensure_future(self.registry.run())
        self.spawn(self.rebalancer.run())

    async def shutdown(self) -> None:
        tasks = [t for t in [self._health_task, *self._background] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.registry.client.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (best effort), keeping a reference until done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- placement helpers -----------------------------------------------------------
    def ranked(self, bucket_id: str, key: str) -> list[PeerEntry]:
        """Every known peer in ranking order (§P4.2)."""
        peers = self.registry.peers
        return [peers[p] for p in rank(peers, bucket_id, key)]

    def ranked_available(self, bucket_id: str, key: str) -> list[PeerEntry]:
        return [e for e in self.ranked(bucket_id, key) if e.available]
