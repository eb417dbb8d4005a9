"""The router's peer registry and health checks, protocol §P4.1.

The registry is the union of the configured peers and those added through R15/R17. It is
persisted in ``{data_dir}/peers.json`` on every change and reloaded at start (configuration
wins on an id conflict). A peer becomes unavailable after ``unhealthy_threshold``
consecutive failed checks and available again after one success, once its pending
deletes (§P4.6) have been replayed.

**Who gets the peer token** (issue 12 point 6). The router's peer token is sent only to
*trusted* entries: peers of the router's configuration (``--peers``/``MICTLANX_PEERS``/
``RouterConfig.peers``), and peers registered through R15/R17 by a request that proved it
already knows the peer token (``Mictlanx-Peer-Token: <peer token>``, or a router token equal
to the peer token, as ``LocalVSS`` runs). Any other registration is *untrusted*: its health
probes and data-path calls carry no ``Authorization`` at all, so registering an address one
listens on reveals nothing. A token-protected peer answers such probes with
``WWW-Authenticate`` and stays unavailable until an operator configures it. Trust is kept in
``peers.json`` (the operator's file); replacing an entry's address through the API drops it.
The :class:`~.peer_client.PeerClient` given to the registry sends the token by that rule.

**In-flight calls** (issue 12 point 4). Every peer call of a fan-out, data read and replica
upload runs through :meth:`Registry.guard`, which tracks it per peer: when the registry marks
a peer unavailable (a timeout on the data path or in a fan-out marks it at once), every call
still waiting on it is cancelled, so requests already in flight fail over at once instead of
waiting for the peer read timeout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional

from ...protocol.atomic_file import write_atomically
from ...protocol.direct import is_base_url
from .peer_client import PeerClient, PeerError
from .peers import PeerEntry
from .pending import PendingDeletes, replay

log = logging.getLogger("mictlanx_sync.server.router")

REGISTRATION_TIMEOUT = 2.0


class PeerTimeout(Exception):
    """A guarded call did not finish in time (the peer was marked unavailable)."""


class PeerDown(Exception):
    """A guarded call was cancelled because the registry marked its peer unavailable."""


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class Registry:
    """Known peers, their availability, and the health loop that maintains it."""

    def __init__(self, data_dir: Path, pending: PendingDeletes, client: PeerClient, *,
                 health_interval: float = 2.0, unhealthy_threshold: int = 3, meta_timeout: float = 2.0,
                 first_byte_timeout: float = 2.0, grace: float = 0.5) -> None:
        self.path = data_dir / "peers.json"
        self.pending = pending
        #: every request to a peer goes through it
        self.client = client
        self.health_interval = health_interval
        self.unhealthy_threshold = max(1, unhealthy_threshold)
        self.peers: dict[str, PeerEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: limits of ``RouterConfig`` (peer_meta_timeout, peer_first_byte_timeout, fanout_grace)
        self.meta_timeout = meta_timeout
        self.first_byte_timeout = first_byte_timeout
        self.grace = grace
        #: calls in flight per peer id, cancelled when the peer is marked unavailable
        self._inflight: dict[str, set[asyncio.Future]] = {}
        #: the last TLS failure logged per peer id (each new one is logged once)
        self._tls_failures: dict[str, str] = {}

    # --- persistence ------------------------------------------------------------------
    def load(self, configured: Iterable[PeerEntry]) -> None:
        if self.path.exists():
            try:
                items = json.loads(self.path.read_text(encoding="utf-8"))
                for item in items:
                    entry = PeerEntry(str(item["peer_id"]), str(item["hostname"]), int(item["port"]),
                                      str(item.get("protocol", "http")), trusted=item.get("trusted") is True)
                    self.peers[entry.peer_id] = entry
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.path, exc)
        for entry in configured:
            entry.trusted = True  # the operator named it: it may receive the peer token
            self.peers[entry.peer_id] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        items = [{**self.peers[p].public(), "trusted": self.peers[p].trusted} for p in sorted(self.peers)]
        write_atomically(str(self.path), json.dumps(items, indent=1).encode("utf-8"))

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

    # --- changes ------------------------------------------------------------------------
    async def register(self, entries: list[PeerEntry]) -> None:
        """Add or replace ``entries``, check each once (2 s) and persist (§P4.1).

        ``entry.trusted`` says whether the registration proved it knows the peer token.
        """
        for entry in entries:
            old = self.peers.get(entry.peer_id)
            if old is not None and old.same_address(entry):
                if entry.trusted and not old.trusted:
                    old.trusted = True
                continue  # already known at this address: keep its health state (and trust)
            old_entry = self.peers.get(entry.peer_id)
            if old_entry is not None:
                self.cancel_inflight(old_entry.peer_id, "replaced")
            self.peers[entry.peer_id] = entry
        self.save()
        targets = [self.peers[e.peer_id] for e in entries]
        await asyncio.gather(*(self._check_and_update(e, REGISTRATION_TIMEOUT, first=True) for e in targets))

    def remove(self, peer_id: str) -> bool:
        if self.peers.pop(peer_id, None) is None:
            return False
        self.cancel_inflight(peer_id, "removed")
        self.save()
        return True

    def mark_failure(self, entry: PeerEntry) -> None:
        """A transport error on the data path counts as a failed check (§P4.1)."""
        entry.failures += 1
        if entry.failures >= self.unhealthy_threshold and entry.available:
            self._set_unavailable(entry, "data-path failures")

    def mark_down(self, entry: PeerEntry, reason: str) -> None:
        """Mark ``entry`` unavailable at once (a timeout): one successful health check brings it back."""
        entry.failures = max(entry.failures + 1, self.unhealthy_threshold)
        if entry.available:
            self._set_unavailable(entry, reason)

    def _set_unavailable(self, entry: PeerEntry, reason: str) -> None:
        entry.available = False
        log.warning("peer %s is unavailable (%s)", entry.peer_id, reason)
        if self.peers.get(entry.peer_id) is entry:
            self.cancel_inflight(entry.peer_id, reason)

    def cancel_inflight(self, peer_id: str, reason: str) -> None:
        """Cancel every guarded call still waiting on ``peer_id``."""
        tasks = self._inflight.pop(peer_id, set())
        if tasks:
            log.info("cancelling %d call(s) in flight to peer %s (%s)", len(tasks), peer_id, reason)
        for task in tasks:
            task.cancel()

    def inflight(self, peer_id: str) -> int:
        return len(self._inflight.get(peer_id, ()))

    async def guard(self, entry: PeerEntry, coro: Any, timeout: Optional[float] = None) -> Any:
        """Await ``coro`` as a call to ``entry`` tracked per peer.

        Raises :class:`PeerTimeout` after ``timeout`` seconds (and marks the peer unavailable at
        once) and :class:`PeerDown` when the registry cancelled it because the peer went
        unavailable. Cancelling the caller cancels the call.
        """
        task = asyncio.ensure_future(coro)
        tasks = self._inflight.setdefault(entry.peer_id, set())
        tasks.add(task)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except BaseException:
            task.cancel()
            task.add_done_callback(_consume)
            raise
        finally:
            tasks.discard(task)
            if not tasks and self._inflight.get(entry.peer_id) is tasks:
                del self._inflight[entry.peer_id]
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            if self.peers.get(entry.peer_id) is entry:
                self.mark_down(entry, f"no answer within {timeout:g} s")
            raise PeerTimeout(f"peer {entry.peer_id} did not answer within {timeout:g} s")
        if task.cancelled():
            raise PeerDown(f"peer {entry.peer_id} was marked unavailable")
        return task.result()

    # --- health -------------------------------------------------------------------------
    async def probe(self, entry: PeerEntry, timeout: float) -> bool:
        try:
            answer = await self.client.exchange(entry, "GET", "/health", timeout=timeout)
        except PeerError as exc:
            if exc.tls and self._tls_failures.get(entry.peer_id) != str(exc):
                self._tls_failures[entry.peer_id] = str(exc)
                log.warning("peer %s: %s", entry.peer_id, exc)
            return False
        self._tls_failures.pop(entry.peer_id, None)
        if answer.status != 200:
            return False
        if "www-authenticate" in answer.headers:  # open /health, but our peer token is missing or wrong
            if entry.trusted:
                log.warning("peer %s rejects the router's peer token (set --peer-token)", entry.peer_id)
            else:
                log.warning("peer %s needs a token, which the router sends only to configured peers (add it to "
                            "--peers, or register it with the Mictlanx-Peer-Token header)", entry.peer_id)
            return False
        try:
            body = json.loads(answer.content)
        except ValueError:
            return False
        if isinstance(body, dict) and body.get("peer_id") not in (None, entry.peer_id):
            return False
        advertised = body.get("advertise_url") if isinstance(body, dict) else None
        entry.advertise_url = advertised if is_base_url(advertised) else None
        return True

    async def _replay_one(self, entry: PeerEntry, method: str, path: str, headers: dict[str, str]) -> int:
        """One request of the pending-record replay: the status (``PeerError`` on transport errors)."""
        return (await self.client.exchange(entry, method, path, headers=headers)).status

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
                    self._set_unavailable(entry, "health check failed")
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
