"""The router's peer registry and health checks, protocol §P4.1.

The registry is the union of the configured peers and those added through R15/R17. It is
persisted in ``{data_dir}/peers.json`` on every change and reloaded at start (configuration
wins on an id conflict). A peer becomes unavailable after ``unhealthy_threshold``
consecutive failed checks and available again after one success, once its pending
deletes (§P4.6) have been replayed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ...protocol.uri import base_url
from .pending import PendingDeletes, replay

log = logging.getLogger("mictlanx_sync.server.router")

REGISTRATION_TIMEOUT = 2.0


@dataclass
class PeerEntry:
    peer_id: str
    hostname: str
    port: int
    protocol: str = "http"
    available: bool = False
    failures: int = 0

    @property
    def url(self) -> str:
        return base_url(self.protocol, self.hostname, self.port)

    def public(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "hostname": self.hostname, "port": self.port, "protocol": self.protocol}

    def same_address(self, other: PeerEntry) -> bool:
        return (self.hostname, self.port, self.protocol) == (other.hostname, other.port, other.protocol)


class Registry:
    """Known peers, their availability, and the health loop that maintains it."""

    def __init__(self, data_dir: Path, pending: PendingDeletes, *, health_interval: float = 2.0,
                 unhealthy_threshold: int = 3) -> None:
        self.path = data_dir / "peers.json"
        self.pending = pending
        self.health_interval = health_interval
        self.unhealthy_threshold = max(1, unhealthy_threshold)
        self.peers: dict[str, PeerEntry] = {}
        self.client: Any = None  # httpx.AsyncClient: https peers, and everything when raw_* is off
        self.raw: Any = None  # the lean client (rawhttp.RawPool) for plain-http peers
        self.raw_reads = True  # data reads (P5) through ``raw``
        self.raw_writes = True  # every other request through ``raw``
        self._locks: dict[str, asyncio.Lock] = {}

    # --- persistence ------------------------------------------------------------------
    def load(self, configured: Iterable[PeerEntry]) -> None:
        if self.path.exists():
            try:
                items = json.loads(self.path.read_text(encoding="utf-8"))
                for item in items:
                    entry = PeerEntry(str(item["peer_id"]), str(item["hostname"]), int(item["port"]),
                                      str(item.get("protocol", "http")))
                    self.peers[entry.peer_id] = entry
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.path, exc)
        for entry in configured:
            self.peers[entry.peer_id] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        items = [self.peers[p].public() for p in sorted(self.peers)]
        tmp.write_text(json.dumps(items, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    # --- queries ------------------------------------------------------------------------
    def get(self, peer_id: str) -> Optional[PeerEntry]:
        return self.peers.get(peer_id)

    def known_ids(self) -> list[str]:
        return sorted(self.peers)

    def available(self) -> list[PeerEntry]:
        return [e for e in self.peers.values() if e.available]

    def available_ids(self) -> list[str]:
        return sorted(p for p, e in self.peers.items() if e.available)

    def unavailable_ids(self) -> list[str]:
        return sorted(p for p, e in self.peers.items() if not e.available)

    def raw_pool(self, entry: PeerEntry, *, read: bool = False) -> Any:
        """The lean client for a request to ``entry`` (data reads if ``read``), or None for httpx."""
        if self.raw is None or entry.protocol != "http":
            return None
        return self.raw if (self.raw_reads if read else self.raw_writes) else None

    # --- changes ------------------------------------------------------------------------
    async def register(self, entries: list[PeerEntry]) -> None:
        """Add or replace ``entries``, check each once (2 s) and persist (§P4.1)."""
        for entry in entries:
            old = self.peers.get(entry.peer_id)
            if old is not None and old.same_address(entry):
                continue  # already known at this address: keep its health state
            self.peers[entry.peer_id] = entry
        self.save()
        targets = [self.peers[e.peer_id] for e in entries]
        await asyncio.gather(*(self._check_and_update(e, REGISTRATION_TIMEOUT, first=True) for e in targets))

    def remove(self, peer_id: str) -> bool:
        if self.peers.pop(peer_id, None) is None:
            return False
        self.save()
        return True

    def mark_failure(self, entry: PeerEntry) -> None:
        """A transport error on the data path counts as a failed check (§P4.1)."""
        entry.failures += 1
        if entry.failures >= self.unhealthy_threshold and entry.available:
            entry.available = False
            log.warning("peer %s is unavailable (data-path failures)", entry.peer_id)

    # --- health -------------------------------------------------------------------------
    async def probe(self, entry: PeerEntry, timeout: float) -> bool:
        from .peerio import PeerError, exchange

        try:
            answer = await exchange(self, entry, "GET", "/health", timeout=timeout)
        except PeerError:
            return False
        if answer.status != 200:
            return False
        if "www-authenticate" in answer.headers:  # open /health, but our peer token is missing or wrong
            log.warning("peer %s rejects the router's peer token (set --peer-token)", entry.peer_id)
            return False
        try:
            body = json.loads(answer.content)
        except ValueError:
            return False
        return not (isinstance(body, dict) and body.get("peer_id") not in (None, entry.peer_id))

    async def _replay_one(self, entry: PeerEntry, method: str, path: str, headers: dict[str, str]) -> int:
        """One request of the pending-record replay: the status (``PeerError`` on transport errors)."""
        from .peerio import exchange

        return (await exchange(self, entry, method, path, headers=headers)).status

    async def _check_and_update(self, entry: PeerEntry, timeout: float, *, first: bool = False) -> None:
        lock = self._locks.setdefault(entry.peer_id, asyncio.Lock())
        async with lock:
            healthy = await self.probe(entry, timeout)
            if self.peers.get(entry.peer_id) is not entry:
                return  # removed or replaced meanwhile
            if healthy:
                if not entry.available or self.pending.has(entry.peer_id):
                    # Replay owed deletes and commits before routing anything else to it (§P4.6).
                    send = functools.partial(self._replay_one, entry)
                    if not await replay(send, self.pending, entry.peer_id):
                        healthy = False
            if healthy:
                if not entry.available:
                    log.info("peer %s is available", entry.peer_id)
                entry.available = True
                entry.failures = 0
                return
            entry.failures += 1
            if first or entry.failures >= self.unhealthy_threshold:
                if entry.available:
                    log.warning("peer %s is unavailable", entry.peer_id)
                entry.available = False

    async def check_all(self, *, first: bool = False) -> None:
        entries = list(self.peers.values())
        await asyncio.gather(*(self._check_and_update(e, REGISTRATION_TIMEOUT, first=first) for e in entries))

    async def run(self) -> None:
        """The health loop: every ``health_interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die
                log.exception("health check round failed")
