"""Rebalancing (issue 16): move balls whose rendezvous placement changed to their new holders.

Design (docs/rebalancing.md has the long form):

* **Trigger.** A watcher compares the router's *present* peer set with the set the last
  completed plan was made for. Present = available, plus unavailable for less than
  ``rebalance_grace`` (default 300 s): a peer down longer counts as gone. A change that has
  been stable for ``rebalance_settle`` seconds (so a burst of joins makes one plan) starts a
  pass with a new *epoch*; ``POST /api/v4/rebalance`` starts one at once. A router's first
  start with no journal records the current set as its baseline (data written under the
  current registry is already in place). ``rebalance_auto=False`` leaves only the endpoint.
* **Unit of work.** A ball (chunk key) at its newest committed version, as R25 sees it: the
  bucket is listed on every available peer (P6, ``include_tombstones=1``, disabled balls
  excluded), the newest version is the highest any peer lists, and a key hidden by a tombstone
  is skipped (never resurrected). Staged chunks are not listed, so only committed versions move.
  Its target set is the top ``rf`` of its ranking over the present peers; ``rf`` is the tag
  ``mictlanx_rf`` when the ball has a valid one, else ``rebalance_rf`` (default 2). The number
  of copies it has now is *not* used: extra copies left on old holders would ratchet it up.
* **Move = copy, verify, drop the surplus.** Each target without that exact version gets a
  copy streamed by the router from a holder (R25's ``_copy``: P5 pinned to the version into P1
  with ``Mictlanx-Version`` and ``Update: 1`` + P3; the peer verifies SHA-256 at phase 2). The
  target's LWW makes a copy of an older version harmless (409 superseded) and a double copy
  idempotent (``exists:true``). Then P4 pinned to the version on the target must show the same
  size and checksum: only then the move counts (``moved``). A target briefly unavailable
  (within the grace) is ``deferred`` and the pass ends ``incomplete`` (retried).
* **Extra copies go only after every target holds the version.** When every target verified
  exactly the version (moved, or in place) and, asked again now, holds it as its *current*
  version, each holder outside the targets gets P8 with ``Mictlanx-If-Version: V`` and
  ``Mictlanx-Drop-Current: 1``: the peer removes V only while V is its current version (409 if
  a newer write landed, 404 if already gone), records no tombstone, and keeps V readable by
  pinned reads for its ``version_grace``. ``removed`` counts them; ``surplus`` counts copies left
  (dropping off, a target with a newer version, a refused or failed drop). A ball with a target
  deferred or failed keeps every copy.
* **Throttle.** ``rebalance_bytes_per_second`` (pacing of copied bytes, 0 = unlimited) and
  ``rebalance_concurrency`` copies at once.
* **Journal.** ``{data_dir}/rebalance.json``: epoch, state, the plan's peer set, the cursor
  (bucket, last key whose batch finished) and the counters, rewritten after every batch. A
  router restarted while a pass runs resumes it from the cursor (same epoch) when its present
  set is the plan's, else plans again. Keys before the cursor are done; keys after it that were
  copied before the crash are found in place and not copied again.
* **Several routers.** Each plans independently; copies of the same version are idempotent. A
  router drops a copy only from a peer of its own plan that is outside that plan's top ``rf``,
  after its own top ``rf`` verified the version. Whatever peer sets the routers plan on, the
  top ``rf`` (by the ball's ranking) of the union of the targets of the routers that drop are
  never dropped by any of them (each dropper's ``rf`` targets rank above whatever it drops), so
  at least ``rf`` verified copies stay (docs/rebalancing.md §4.3,
  ``tests/unit/test_rebalance_drop_rule.py``).
* **Progress.** ``GET /api/v4/rebalance`` (and ``mictlanx-sync rebalance``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from ...protocol.atomic_file import write_atomically
from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from .fanout import call
from .peers import PeerEntry
from .placement import RF_TAG, rank
from .repair import _copy, _inventory
from .state import RouterState
from .versions import DROP_CURRENT_HEADER, IF_VERSION_HEADER, VERSION_HEADER, observe_meta, reply_tombstone

log = logging.getLogger("mictlanx_sync.server.router.rebalance")

PAGE = 1000
MAX_ERRORS = 100
RETRY_AFTER = 5.0  # first retry of a failed or incomplete pass, doubled per retry up to RETRY_MAX
RETRY_MAX = 300.0
COUNTERS = ("checked", "planned", "moved", "in_place", "skipped", "deferred", "failed", "bytes", "surplus",
            "removed")
#: verdicts of one target after a move: it holds exactly the version / a newer version or a
#: tombstone got there first / it does not hold it (deferred or failed)
HOLDS, NEWER, LACKS = "holds", "newer", "lacks"


BallPlan = tuple[list[str], list[str], list[str]]


def plan_ball(present: list[str], bucket: str, key: str, holders: list[str], rf: int) -> BallPlan:
    """One ball's plan: ``(targets, missing, extra)``.

    ``targets`` is the top ``rf`` of its ranking over ``present``, ``missing`` the targets not in
    ``holders`` (to copy to), ``extra`` the holders outside the targets (to drop once every target
    holds the version). Only peers of ``present`` can be targets or, as holders, extra.
    """
    targets = rank(present, bucket, key)[:rf]
    missing = [p for p in targets if p not in holders]
    extra = [p for p in holders if p not in targets and p in present]
    return targets, missing, extra


class PassAborted(Exception):
    """The pass cannot go on (a listing failed, or the peer set changed)."""


class Throttle:
    """Paces copied bytes at ``rate`` bytes/s (0: unlimited)."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._next = 0.0

    async def take(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + max(0, nbytes) / self.rate
        if start > now:
            await asyncio.sleep(start - now)


class Rebalancer:
    """The watcher, the current pass and its journal, for one router."""

    def __init__(self, st: RouterState) -> None:
        self.st = st
        cfg = st.config
        self.path: Path = cfg.data_dir / "rebalance.json"
        self.auto = cfg.rebalance_auto
        self.grace = float(cfg.rebalance_grace)
        self.settle = float(cfg.rebalance_settle)
        self.rf = max(1, int(cfg.rebalance_rf))
        self.concurrency = max(1, int(cfg.rebalance_concurrency))
        self.throttle = Throttle(cfg.rebalance_bytes_per_second)
        self.drop_surplus = bool(cfg.rebalance_drop_surplus)
        self.journal: dict[str, Any] = self._load()
        self.errors: list[dict[str, Any]] = []
        self.resumed = False
        self._down_since: dict[str, float] = {}
        self._seen: tuple[list[str], float] = ([], 0.0)
        self._task: Optional[asyncio.Task] = None
        self._task_peers: list[str] = []
        self._superseding = False
        self._retry_at = 0.0
        self._retries = 0

    # --- journal ------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("epoch"), int):
                return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
        return {}

    def _save(self) -> None:
        write_atomically(str(self.path), json.dumps(self.journal, indent=1).encode("utf-8"))

    def status(self) -> dict[str, Any]:
        j = self.journal
        counters = j.get("counters", {})
        return {"state": j.get("state", "idle"), "epoch": j.get("epoch", 0), "peers": j.get("peers", []),
                "done_peers": j.get("done_peers", []), "reason": j.get("reason"), "cursor": j.get("cursor"),
                **{name: counters.get(name, 0) for name in COUNTERS},
                "started_at": j.get("started_at"), "finished_at": j.get("finished_at"),
                "resumed": self.resumed, "running": self._task is not None and not self._task.done(),
                "present_peers": self.present(), "last_error": j.get("last_error"), "errors": self.errors[-20:],
                "config": {"auto": self.auto, "grace": self.grace, "settle": self.settle, "rf": self.rf,
                           "concurrency": self.concurrency, "bytes_per_second": self.throttle.rate,
                           "drop_surplus": self.drop_surplus}}

    # --- membership ---------------------------------------------------------------------------
    def present(self) -> list[str]:
        """Available peers plus those unavailable for less than the grace."""
        now = time.monotonic()
        ids = []
        for peer_id, entry in self.st.registry.peers.items():
            if entry.available:
                self._down_since.pop(peer_id, None)
                ids.append(peer_id)
            elif now - self._down_since.setdefault(peer_id, now) < self.grace:
                ids.append(peer_id)
        return sorted(ids)

    # --- watcher ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: start passes on changes, on request, and to resume one."""
        tick = max(0.05, min(0.5, self.st.config.health_interval))
        try:
            known = self.journal.get("peers")
            if isinstance(known, list):  # gone before the restart and still down: still gone
                for peer_id, entry in self.st.registry.peers.items():
                    if peer_id not in known and not entry.available:
                        self._down_since[peer_id] = time.monotonic() - self.grace
            present = self.present()
            if not self.journal:
                self.journal = {"epoch": 0, "state": "idle", "peers": present, "done_peers": present,
                                "counters": {}, "cursor": None}
                self._save()
            elif self.journal.get("state") == "running":
                if self.journal.get("peers") == present:
                    self.resumed = True
                    self._start(present, resume=True, reason=f"resumed after restart ({self.journal.get('reason')})")
                else:
                    self.journal["state"] = "abandoned"  # another plan is due: the watcher starts it
                    self._save()
            while True:
                await asyncio.sleep(tick)
                try:
                    self._watch()
                except Exception:  # never let the watcher die
                    log.exception("rebalance watcher round failed")
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def _watch(self) -> None:
        now = time.monotonic()
        present = self.present()
        if present != self._seen[0]:
            self._seen = (present, now)
            self._retry_at, self._retries = 0.0, 0  # a new set is a new plan: no backoff
        if self._task is not None and not self._task.done():
            if present != self._task_peers:
                log.info("peer set changed during rebalance epoch %s: planning again", self.journal.get("epoch"))
                self._superseding = True
                self._task.cancel()
            return
        if not self.auto or not present:
            return
        changed = present != self.journal.get("done_peers")
        stable = now - self._seen[1] >= self.settle
        if changed and stable and now >= self._retry_at:
            self._start(present, resume=False, reason="peer set changed")

    def request(self) -> None:
        """``POST /rebalance``: start a pass now (after the current one, if any)."""
        if self._task is not None and not self._task.done():
            return
        present = self.present()
        self._start(present, resume=False, reason="requested")

    def _start(self, present: list[str], *, resume: bool, reason: str) -> None:
        if not resume:
            self.errors = []
            self.journal = {"epoch": int(self.journal.get("epoch", 0)) + 1, "state": "running", "peers": present,
                            "done_peers": self.journal.get("done_peers", []), "reason": reason,
                            "counters": {name: 0 for name in COUNTERS}, "cursor": None,
                            "started_at": time.time(), "finished_at": None, "last_error": None}
        else:
            self.journal["reason"] = reason
        self._save()
        self._task_peers = present
        self._task = asyncio.ensure_future(self._pass(present))

    # --- one pass -----------------------------------------------------------------------------
    async def _pass(self, present: list[str]) -> None:
        j = self.journal
        try:
            await self._run_pass(present)
        except asyncio.CancelledError:
            if self._superseding:  # the peer set changed: a new plan follows
                self._superseding = False
                j["state"] = "superseded"
                j["finished_at"] = time.time()
            # else the router is stopping: the journal stays "running", resumed at the next start
            self._save()
            raise
        except Exception as exc:
            j["state"] = "failed"
            j["last_error"] = f"{type(exc).__name__}: {exc}"
            j["finished_at"] = time.time()
            self._backoff()
            self._save()
            log.warning("rebalance epoch %s failed: %s", j.get("epoch"), exc)
            return
        counters = j["counters"]
        j["finished_at"] = time.time()
        if counters.get("failed") or counters.get("deferred"):
            j["state"] = "incomplete"
            self._backoff()
        else:
            j["state"] = "done"
            j["done_peers"] = present
            self._retries = 0
        self._save()
        log.info("rebalance epoch %s %s: %s", j.get("epoch"), j["state"], counters)

    def _backoff(self) -> None:
        self._retry_at = time.monotonic() + min(RETRY_MAX, RETRY_AFTER * 2 ** self._retries)
        self._retries += 1

    async def _run_pass(self, present: list[str]) -> None:
        j = self.journal
        available = [e for e in (self.st.registry.get(p) for p in present) if e is not None and e.available]
        if not available:
            raise PassAborted("no available peer")
        buckets = await self._buckets(available)
        cursor = j.get("cursor")
        batch_size = self.concurrency * 8
        for bucket in sorted(buckets):
            if cursor and bucket < cursor[0]:
                continue
            inventory, stones, failed = await _inventory(self.st, available, bucket)
            if failed:
                raise PassAborted(f"listing {bucket} failed on {sorted(failed)}")
            keys = sorted(inventory)
            if cursor and bucket == cursor[0]:
                keys = [k for k in keys if k > cursor[1]]
            for start in range(0, len(keys), batch_size):
                batch = keys[start:start + batch_size]
                await asyncio.gather(*(self._ball(bucket, key, inventory[key], stones, present) for key in batch))
                j["cursor"] = [bucket, batch[-1]]
                self._save()

    async def _buckets(self, available: list[PeerEntry]) -> set[str]:
        """Every bucket any available peer holds (P15, keyset pages)."""
        buckets: set[str] = set()

        async def one(entry: PeerEntry) -> None:
            after: Optional[str] = None
            while True:
                params = {"include_disabled": "0", "start": "0", "end": str(PAGE)}
                if after is not None:
                    params["after"] = after
                reply = await call(self.st.registry, entry, "GET", "/xballs", params=params)
                if reply.status != 200 or not isinstance(reply.body, list):
                    raise PassAborted(f"listing the balls of {entry.peer_id} failed: {reply.msg}")
                for item in reply.body:
                    if isinstance(item, dict) and isinstance(item.get("bucket_id"), str):
                        buckets.add(item["bucket_id"])
                        after = f"{item['bucket_id']}@{item.get('key')}"
                if len(reply.body) < PAGE:
                    return

        await asyncio.gather(*(one(e) for e in available))
        return buckets

    def _count(self, name: str, n: int = 1) -> None:
        counters = self.journal["counters"]
        counters[name] = counters.get(name, 0) + n

    def _error(self, bucket: str, key: str, peer_id: Optional[str], msg: str, *, failed: bool = True) -> None:
        """Record an error; ``failed`` (a copy that did not happen) makes the pass ``incomplete``."""
        if failed:
            self._count("failed")
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"bucket_id": bucket, "key": key, "peer_id": peer_id, "msg": msg})

    def _rf(self, meta: dict[str, Any]) -> int:
        tags = meta.get("tags")
        raw = tags.get(RF_TAG) if isinstance(tags, dict) else None
        try:
            value = int(raw) if raw is not None else self.rf
        except (TypeError, ValueError):
            value = self.rf
        return max(1, value)

    async def _ball(self, bucket: str, key: str, copies: dict[str, dict[str, Any]], stones: Any,
                    present: list[str]) -> None:
        self._count("checked")
        order = rank(set(present) | set(copies), bucket, key)
        newest = max(observe_meta(meta, self.st.clock) for meta in copies.values())
        best = next(copies[p] for p in order if p in copies and observe_meta(copies[p]) == newest)
        if stones.hides(best, newest):
            self._count("skipped")  # deleted: never resurrect it
            return
        signature = (newest, best.get("size"), best.get("checksum"))
        holders = [p for p in order if p in copies
                   and (observe_meta(copies[p]), copies[p].get("size"), copies[p].get("checksum")) == signature]
        rf = self._rf(best)
        targets, missing, extra = plan_ball(present, bucket, key, holders, rf)
        if not missing:
            self._count("in_place")
            exact = True
        else:
            self._count("planned", len(missing))
            sources = [e for e in (self.st.registry.get(p) for p in holders) if e is not None and e.available]
            verdicts = await asyncio.gather(*(self._move(bucket, key, best, newest, sources, t) for t in missing))
            if LACKS in verdicts:
                return  # a target lacks its copy (deferred or failed): every other copy stays, the retry goes on
            exact = NEWER not in verdicts
        if extra:
            await self._surplus(bucket, key, best, newest, targets, rf, extra, exact=exact)

    async def _surplus(self, bucket: str, key: str, meta: dict[str, Any], version: str, targets: list[str],
                       rf: int, extra: list[str], *, exact: bool) -> None:
        """The copies of ``version`` on holders outside ``targets``: dropped, or counted as ``surplus``.

        Dropped only when every target holds exactly this version as its current one, checked
        now (a listing or a pinned P4 says it held it once; a pinned read also serves a version
        that was superseded since). Why this never leaves fewer than ``rf`` copies, even with
        several routers planning on different peer sets: docs/rebalancing.md §4.
        """
        if not (self.drop_surplus and exact and version and len(targets) >= rf):
            # off, a newer version reached a target (the write path places that one), or a legacy
            # version (no version id to name in Mictlanx-If-Version): leave the copies
            self._count("surplus", len(extra))
            return
        held = await asyncio.gather(*(self._holds_current(bucket, key, meta, version, t) for t in targets))
        if not all(held):  # a target lost it since (a newer write, a delete, a drop by a stale plan)
            self._count("surplus", len(extra))
            return
        await asyncio.gather(*(self._drop(bucket, key, version, peer_id) for peer_id in extra))

    async def _holds_current(self, bucket: str, key: str, meta: dict[str, Any], version: str, peer_id: str) -> bool:
        """True when ``peer_id`` answers P4 (unpinned) with ``version`` as its current, enabled version."""
        entry = self.st.registry.get(peer_id)
        if entry is None or not entry.available:
            return False
        reply = await call(self.st.registry, entry, "GET", f"/buckets/{bucket}/metadata/{key}")
        body = reply.body if isinstance(reply.body, dict) else {}
        raw = body.get("metadata")
        got: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return (reply.status == 200 and observe_meta(got, self.st.clock) == version and not got.get("is_disabled")
                and (got.get("size"), got.get("checksum")) == (meta.get("size"), meta.get("checksum")))

    async def _drop(self, bucket: str, key: str, version: str, peer_id: str) -> None:
        """P8 ``Mictlanx-If-Version: version`` + ``Mictlanx-Drop-Current: 1`` on a holder outside the targets."""
        entry = self.st.registry.get(peer_id)
        if entry is None or not entry.available:
            self._count("surplus")
            return
        reply = await call(self.st.registry, entry, "DELETE", f"/buckets/{bucket}/{key}",
                           headers={IF_VERSION_HEADER: version, DROP_CURRENT_HEADER: "1"})
        if reply.status == 200:
            self._count("removed")
        elif reply.status in (404, 409):
            # the copy is no longer current there: another router dropped it (404), or a newer write
            # or a delete replaced it (409/404); nothing of this version is left to count
            log.debug("drop of %s@%s %s on %s: %s", bucket, key, version, peer_id, reply.msg)
        else:
            # a peer without Drop-Current refuses a current version (412), a failure changes nothing:
            # the copy stays, harmless, and a later pass drops it
            self._count("surplus")
            self._error(bucket, key, peer_id, f"surplus copy not dropped: {reply.msg}", failed=False)

    async def _move(self, bucket: str, key: str, meta: dict[str, Any], version: str, sources: list[PeerEntry],
                    peer_id: str) -> str:
        """Copy, then verify on the target: ``HOLDS`` (verified), ``NEWER`` or ``LACKS``."""
        target = self.st.registry.get(peer_id)
        if target is None or not target.available:
            self._count("deferred")  # briefly down (within the grace): the next pass copies it
            return LACKS
        if not sources:
            self._error(bucket, key, peer_id, "no available holder to copy from")
            return LACKS
        size = int(meta.get("size", 0) or 0)
        async with self._slots():
            await self.throttle.take(size)
            try:
                why = await _copy(self.st, bucket, key, meta, sources, target, update=True)
            except Exception as exc:  # one bad copy never stops the pass
                why = f"{type(exc).__name__}: {exc}"
        verdict = await self._verify(bucket, key, meta, version, target)
        if verdict == "ok":
            self._count("moved")
            self._count("bytes", size)
            return HOLDS
        if verdict == "newer":
            self._count("skipped")  # a newer write or a delete reached the target meanwhile: nothing to move
            return NEWER
        self._error(bucket, key, peer_id, why or f"copy not verified on the target: {verdict}")
        return LACKS

    def _slots(self) -> asyncio.Semaphore:
        sem = getattr(self, "_sem", None)
        if sem is None:
            sem = self._sem = asyncio.Semaphore(self.concurrency)
        return sem

    async def _verify(self, bucket: str, key: str, meta: dict[str, Any], version: str, target: PeerEntry) -> str:
        """``ok`` when P4 pinned to ``version`` on ``target`` shows its size and checksum; ``newer``
        when the target's current version (or a tombstone) is newer; else why not."""
        pin = {VERSION_HEADER: version} if version else {}
        reply = await call(self.st.registry, target, "GET", f"/buckets/{bucket}/metadata/{key}", headers=pin)
        body = reply.body if isinstance(reply.body, dict) else {}
        raw = body.get("metadata")
        got: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if reply.status == 200 and (got.get("size"), got.get("checksum")) == (meta.get("size"), meta.get("checksum")):
            return "ok"
        current = await call(self.st.registry, target, "GET", f"/buckets/{bucket}/metadata/{key}")
        cbody = current.body if isinstance(current.body, dict) else {}
        if current.status == 200 and str(cbody.get("version") or "") > version:
            return "newer"
        stone = reply_tombstone(current, self.st.clock)
        if stone is not None and stone >= version:
            return "newer"  # deleted meanwhile: the copy was refused, rightly
        return f"P4 answered {reply.status}"


# --- endpoints --------------------------------------------------------------------------------
async def get_status(st: RouterState, req: Request) -> Response:
    """``GET /api/v4/rebalance``: the current or last pass."""
    return json_response(st.rebalancer.status())


async def start(st: RouterState, req: Request) -> Response:
    """``POST /api/v4/rebalance``: start a pass now (202); a pass already running is left alone."""
    st.rebalancer.request()
    return json_response(st.rebalancer.status(), 202)
