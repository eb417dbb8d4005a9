"""R25: re-create missing replicas of every ball of a bucket (an extension of protocol §4).

``POST /api/v4/repair/buckets/{bucket_id}?rf=N`` (``rf`` ≥ 1, default **2**).

Why a query parameter: the router does not record an object's replication factor (R5
keeps no state once a group ends, and tags are user data), so the caller states how many
replicas every ball of the bucket should have.

Steps:

1. 503/666 with no available peer; 404/666 when fewer than ``rf`` peers are available.
2. List the bucket on **every available peer** (P6, keyset pages of 1000 with ``after``;
   disabled balls excluded: their bytes cannot be read through P5). A peer whose listing
   fails makes the answer 502/503 (``failed_peers``): repairing on a partial view could
   miss copies.
3. For each key, the version is the highest ``version`` any peer lists (docs/consistency.md
   §2.2; among equal versions, the highest-ranked holder's, §4.3), and a key hidden by a
   tombstone any peer lists is skipped, so repair never resurrects a delete from a stale
   copy; a *replica* is a copy with the same version, size and checksum. While there are fewer than ``rf``,
   the next peers of the key's ranking (§4.2) **that hold no copy at all** receive one:
   repair never overwrites another version.
4. A copy is pushed by the router itself, streamed: P5 from a holder (the next holder on
   failure; pinned to the version) piped into P1 (``Update: 0``, ``Mictlanx-Version`` of the
   copy, so the new replica orders exactly like the others) + P3 on the target, so memory stays bounded by the
   relay buffers whatever the size. ``exists:true`` from P1 (a copy appeared meanwhile)
   counts as repaired and its task is cancelled (P23). At most 4 pushes run at once.

Answer 200 ``{"bucket_id", "rf", "checked", "repaired", "failed", "errors", "peers"}``:
``checked`` = keys examined, ``repaired`` = replicas created, ``failed`` = replicas that
could not be created (push errors, or no peer left to take one), ``errors`` = up to 100
``{"key", "peer_id", "msg"}``, ``peers`` = the available peers used.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Optional

from ..asgi.errors import HTTPError
from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from ..request_values import parse_int_query
from .fanout import call, no_peer_available
from .peer_client import PeerError, SourceError
from .peers import PeerEntry
from .placement import rank
from .read_relay import Opened, open_data
from .reconcile import Tombstones
from .state import RouterState
from .versions import VERSION_HEADER, observe_meta

PAGE = 1000
CONCURRENCY = 4
MAX_ERRORS = 100


async def repair_bucket(st: RouterState, req: Request, bucket_id: str) -> Response:
    """R25 (see the module docstring)."""
    rf = parse_int_query(req.query.get("rf"), "rf", 2, minimum=1)
    available = st.registry.available()
    if not available:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids(), bucket_id=bucket_id)
    if len(available) < rf:
        raise HTTPError(404, 666, f"only {len(available)} available peers for rf={rf}", bucket_id=bucket_id,
                        available_peers=len(available), replication_factor=rf)
    inventory, stones, failed = await _inventory(st, available, bucket_id)
    if failed:
        raise HTTPError(502, 503, "listing the bucket failed on some peers", bucket_id=bucket_id,
                        failed_peers=sorted(failed))
    entries = {e.peer_id: e for e in available}
    summary: dict[str, Any] = {"bucket_id": bucket_id, "rf": rf, "checked": len(inventory), "repaired": 0,
                               "failed": 0, "errors": [], "peers": sorted(entries)}
    limit = asyncio.Semaphore(CONCURRENCY)
    jobs = []
    for key in sorted(inventory):
        copies = inventory[key]
        ranking = rank(entries, bucket_id, key)
        newest = max(observe_meta(meta, st.clock) for meta in copies.values())
        best = next(copies[p] for p in ranking if p in copies and observe_meta(copies[p]) == newest)
        if stones.hides(best, newest):
            continue  # deleted: a copy here is one a delete has not reached yet
        version = (newest, best.get("size"), best.get("checksum"))
        holders = [entries[p] for p in ranking if p in copies
                   and (observe_meta(copies[p]), copies[p].get("size"), copies[p].get("checksum")) == version]
        need = rf - len(holders)
        if need <= 0:
            continue
        targets = [entries[p] for p in ranking if p not in copies][:need]
        for _ in range(need - len(targets)):
            _record(summary, key, None, "no peer without a copy is left to take a replica")
        jobs += [_guarded(limit, st, bucket_id, key, best, holders, target, summary) for target in targets]
    await asyncio.gather(*jobs)
    return json_response(summary)


def _record(summary: dict[str, Any], key: str, peer_id: Optional[str], msg: Optional[str]) -> None:
    if msg is None:
        summary["repaired"] += 1
        return
    summary["failed"] += 1
    if len(summary["errors"]) < MAX_ERRORS:
        summary["errors"].append({"key": key, "peer_id": peer_id, "msg": msg})


async def _guarded(limit: asyncio.Semaphore, st: RouterState, bucket_id: str, key: str, meta: dict[str, Any],
                   holders: list[PeerEntry], target: PeerEntry, summary: dict[str, Any]) -> None:
    async with limit:
        try:
            error = await _copy(st, bucket_id, key, meta, holders, target)
        except Exception as exc:  # one bad copy never stops the others
            error = f"{type(exc).__name__}: {exc}"
    _record(summary, key, target.peer_id, error)


async def _inventory(st: RouterState, peers: list[PeerEntry], bucket_id: str,
                     ) -> tuple[dict[str, dict[str, dict[str, Any]]], Tombstones, list[str]]:
    """``{key: {peer_id: meta}}`` over every peer, their tombstones, and the peers whose listing failed."""
    inventory: dict[str, dict[str, dict[str, Any]]] = {}
    stones = Tombstones()
    failed: list[str] = []

    async def one(entry: PeerEntry) -> None:
        after: Optional[str] = None
        while True:
            params = {"include_disabled": "0", "start": "0", "end": str(PAGE), "include_tombstones": "1"}
            if after is not None:
                params["after"] = after
            reply = await call(st.registry, entry, "GET", f"/buckets/{bucket_id}/metadata", params=params)
            balls = reply.body.get("balls") if reply.status == 200 and isinstance(reply.body, dict) else None
            if not isinstance(balls, list):
                failed.append(entry.peer_id)
                return
            stones.absorb(reply.body.get("tombstones"))
            for meta in balls:
                if isinstance(meta, dict) and isinstance(meta.get("key"), str):
                    inventory.setdefault(meta["key"], {})[entry.peer_id] = meta
                    after = meta["key"]
            if len(balls) < PAGE:
                return

    await asyncio.gather(*(one(e) for e in peers))
    return inventory, stones, failed


async def _copy(st: RouterState, bucket_id: str, key: str, meta: dict[str, Any], holders: list[PeerEntry],
                target: PeerEntry, *, update: bool = False) -> Optional[str]:
    """Push one replica of ``key`` to ``target``; None on success, else why it failed.

    ``update`` sends ``Update: 1`` (rebalancing: a versioned writer, so the target's LWW orders
    the copy against whatever version it holds instead of refusing other content)."""
    size = int(meta.get("size", 0))
    version = observe_meta(meta)
    pin = {VERSION_HEADER: version} if version else {}
    why = "no holder could be read"
    for holder in holders:
        kind, value = await open_data(st.registry, holder, f"/buckets/{bucket_id}/{key}", pin, expect_size=size)
        if kind != "ok":
            why = f"reading from {holder.peer_id}: {kind} {value if isinstance(value, str) else ''}".strip()
            continue
        opened: Opened = value
        try:
            return await _push(st, bucket_id, key, meta, opened, target, update=update)
        finally:
            await opened.aclose()
    return why


async def _push(st: RouterState, bucket_id: str, key: str, meta: dict[str, Any], opened: Opened,
                target: PeerEntry, *, update: bool = False) -> Optional[str]:
    body = {"key": key, "size": meta.get("size"), "checksum": meta.get("checksum"), "tags": meta.get("tags", {}),
            "producer_id": meta.get("producer_id", ""), "content_type": meta.get("content_type"),
            "ball_id": meta.get("ball_id", key), "bucket_id": bucket_id,
            "is_disable": bool(meta.get("is_disabled", False))}
    version = observe_meta(meta)
    headers = {"Update": "1" if update else "0", **({VERSION_HEADER: version} if version else {})}
    reply = await call(st.registry, target, "POST", f"/buckets/{bucket_id}/metadata", json_body=body,
                       headers=headers)
    if reply.status != 201 or not isinstance(reply.body, dict) or "task_id" not in reply.body:
        return f"P1 on {target.peer_id}: {reply.msg}"
    task_id = str(reply.body["task_id"])
    if reply.body.get("exists"):
        await call(st.registry, target, "DELETE", f"/tasks/{task_id}")
        return None

    async def pieces() -> AsyncIterator[bytes]:
        if opened.first:
            yield opened.first
        async for chunk in opened.iterator:
            yield chunk

    path = f"/api/v4/buckets/data/{task_id}/chunked"
    try:
        answer = await st.registry.client.exchange(target, "POST", path, body=pieces(),
                                                   length=int(meta.get("size", 0)),
                                                   headers={"Content-Type": "application/octet-stream"})
    except Exception as exc:  # transport error on either side: the peer stores nothing
        await call(st.registry, target, "DELETE", f"/tasks/{task_id}")
        if isinstance(exc, PeerError) and exc.transport:
            st.registry.mark_failure(target)
        why = str(exc) if isinstance(exc, (PeerError, SourceError)) else f"{type(exc).__name__}: {exc}"
        return f"P3 on {target.peer_id}: {why}"
    if answer.status != 201:
        return f"P3 on {target.peer_id} answered {answer.status}: {answer.content[:200].decode('utf-8', 'replace')}"
    return None
