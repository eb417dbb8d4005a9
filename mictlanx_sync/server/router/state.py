"""The router's configuration and its state: registry, write groups, pending deletes, clock."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine, Optional

from ..units import MIB
from .groups import Groups
from .pending import PendingDeletes
from .placement import rank
from .registry import PeerEntry, Registry
from .versions import router_clock

log = logging.getLogger("mictlanx_sync.server.router")


@dataclass
class RouterConfig:
    router_id: str = "mictlanx-router-0"
    data_dir: Path = Path("./mictlanx-data/mictlanx-router-0")
    peers: list[PeerEntry] = field(default_factory=list)
    health_interval: float = 2.0
    unhealthy_threshold: int = 3
    task_ttl: float = 600.0
    exists_ttl: float = 60.0
    peer_connect_timeout: float = 5.0
    peer_read_timeout: float = 120.0
    piece_size: int = MIB
    queue_depth: int = 4
    cache_size: int = 0
    root_path: str = ""
    #: bearer token clients must send (None: no authentication); ``/health`` stays open
    token: Optional[str] = field(default=None, repr=False)
    #: bearer token sent to the trusted peers (configured ones, see ``registry``), never to an
    #: address a request supplied without proving it knows this token
    peer_token: Optional[str] = field(default=None, repr=False)
    #: issue 12 point 4 (docs/reliability.md "Limits and timeouts"): deadline of one
    #: metadata-sized peer call (P1, P4, P6/P7, P8/P9, P11, P23, P24, ...), seconds
    peer_meta_timeout: float = 2.0
    #: a data read (P5) whose first body byte has not arrived after this many seconds fails over
    peer_first_byte_timeout: float = 2.0
    #: fan-outs (R3, R10/R11's lookup, R2, R12) answer this long after the first holder replied,
    #: counting the peers still silent as unavailable; also the hedging delay of data reads and
    #: of R5's placement
    fanout_grace: float = 0.5
    #: fault-injection spec (``server.faults``); None: the middleware is not installed
    faults: Optional[str] = None
    #: read peer data (P5) with the lean client of ``rawhttp``; 0 in ``MICTLANX_ROUTER_RAW_READS`` uses httpx
    raw_reads: bool = field(default_factory=lambda: os.environ.get("MICTLANX_ROUTER_RAW_READS", "1") != "0")
    #: every other peer request (fan-out calls, P3 uploads, health checks, pending deletes, repair)
    #: with the lean client too; 0 in ``MICTLANX_ROUTER_RAW_WRITES`` uses httpx (an escape hatch).
    raw_writes: bool = field(default_factory=lambda: os.environ.get("MICTLANX_ROUTER_RAW_WRITES", "1") != "0")
    #: issue 16 rebalancing (``rebalance``, docs/rebalancing.md): plan on peer-set changes
    rebalance_auto: bool = True
    #: an unavailable peer counts as gone after this many seconds
    rebalance_grace: float = 300.0
    #: a peer-set change must be stable this long before a pass starts, seconds
    rebalance_settle: float = 2.0
    #: copies per ball when it has no ``mictlanx_rf`` tag
    rebalance_rf: int = 2
    #: copied bytes per second (0: unlimited) and copies at once
    rebalance_bytes_per_second: float = 50 * MIB
    rebalance_concurrency: int = 2
    #: once every target of a ball verified its version, remove that version from the holders
    #: outside the targets (peer P8 with Mictlanx-Drop-Current); False leaves them as ``surplus``
    rebalance_drop_surplus: bool = True
    #: the CA bundle (PEM) https peers' certificates are verified with; None: the system's
    #: trusted CAs (docs/tls.md)
    peer_ca_file: Optional[str] = None


class RouterState:
    """Everything one router process (or thread) keeps: registry, groups, pending deletes."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.pending = PendingDeletes(config.data_dir / "pending-deletes.jsonl")
        self.registry = Registry(config.data_dir, self.pending, health_interval=config.health_interval,
                                 unhealthy_threshold=config.unhealthy_threshold)
        self.registry.load(config.peers)
        self.groups = Groups(config.task_ttl, config.exists_ttl)
        #: versions for writes and deletes that arrive without one (docs/consistency.md §1.1)
        self.clock = router_clock(config.router_id)
        self.client: Any = None
        self._health_task: Optional[asyncio.Task] = None
        self._background: set[asyncio.Task] = set()
        from .rebalance import Rebalancer

        self.rebalancer = Rebalancer(self)

    async def startup(self) -> None:
        import httpx

        timeout = httpx.Timeout(connect=self.config.peer_connect_timeout, read=self.config.peer_read_timeout,
                                write=self.config.peer_read_timeout, pool=self.config.peer_read_timeout)
        # Keep-alive limit = connection limit: httpcore 1.0.9 may close a "surplus" idle
        # connection already handed to a queued request (encode/httpcore#1110), leaving that
        # request hanging until its read timeout. With equal limits nothing is ever surplus.
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=30.0)
        from ..tls import peer_ssl_context
        from .rawhttp import RawPool

        peer_tls = peer_ssl_context(self.config.peer_ca_file)  # https peers, through either client
        # No default Authorization: ``peerio`` adds the peer token per request, to trusted peers only.
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False, follow_redirects=False,
                                        verify=peer_tls)
        self.registry.client = self.client
        self.registry.peer_token = self.config.peer_token
        self.registry.meta_timeout = self.config.peer_meta_timeout
        self.registry.first_byte_timeout = self.config.peer_first_byte_timeout
        self.registry.grace = self.config.fanout_grace
        self.registry.raw_reads = self.config.raw_reads
        self.registry.raw_writes = self.config.raw_writes
        if self.config.raw_reads or self.config.raw_writes:
            self.registry.raw = RawPool(self.config.peer_connect_timeout, self.config.peer_read_timeout)
            self.registry.raw_tls = RawPool(self.config.peer_connect_timeout, self.config.peer_read_timeout,
                                            ssl_context=peer_tls)
        await self.registry.check_all(first=True)
        self._health_task = asyncio.ensure_future(self.registry.run())
        self.spawn(self.rebalancer.run())

    async def shutdown(self) -> None:
        tasks = [t for t in [self._health_task, *self._background] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in (self.registry.raw, self.registry.raw_tls):
            if pool is not None:
                pool.close()
        if self.client is not None:
            await self.client.aclose()

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
