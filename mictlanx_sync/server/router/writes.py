"""Router write endpoints: R4, R5, R6/R7/R8, R9, R13, R14 (protocol §P4.4, §P4.5, §P4.6)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Optional

from ...protocol.etag import etag_checksum
from ...protocol.inline import IF_ABSENT_HEADER, INLINE_FIELD
from ..asgi.errors import HTTPError, bad_request, unprocessable
from ..asgi.multipart import MultipartStream
from ..asgi.request import Request
from ..asgi.responses import Response, empty, error_response, json_response
from ..phase2 import DRAIN_CAP, MULTIPART_SLACK, inline_write, length_mismatch
from ..request_values import header_task_id, parse_bool, parse_chunk_size, parse_if_match, path_task_id
from . import reconcile
from . import validation as v
from .fanout import Reply, call, fan_out, missing, no_peer_available, owed_peers
from .groups import Replica
from .pending import ANY, ball_record, key_record
from .placement import RF_TAG, rank
from .state import RouterState
from .superseded import tombstone_below, write_failure
from .versions import (
    IF_VERSION_HEADER,
    STAGE_HEADER,
    VERSION_HEADER,
    header_if_version,
    header_stage,
    header_version,
    refuse_drop_current,
    reply_version,
)
from .write_relay import cleanup, stream_to_replicas


# --- R5 -------------------------------------------------------------------------------------
async def put_metadata(st: RouterState, req: Request, bucket_id: str) -> Response:
    started = time.perf_counter()
    update = parse_bool(req.headers.get("update"), "Update")
    requested = header_version(req.headers)
    stage = header_stage(req.headers)
    body = await req.json()
    meta = v.put_metadata_body(body, bucket_id)
    key, rf = meta["key"], meta["replication_factor"]
    inline = inline_write(body, meta["size"], meta["checksum"])  # a one-request write: checked first
    if_absent = req.headers.get(IF_ABSENT_HEADER.lower()) == "1"
    if if_absent and inline is None:
        raise bad_request(f"{IF_ABSENT_HEADER} needs the bytes inline ({INLINE_FIELD})", bucket_id=bucket_id, key=key)
    available = st.registry.available_ids()
    if len(available) < rf:
        raise HTTPError(404, 666, "No available peers.", suggestion="Add more peers or delete replicas.",
                        bucket_id=bucket_id, key=key, replicas=[], available_peers=len(available),
                        replication_factor=rf)
    ranking = [st.registry.peers[p] for p in rank(available, bucket_id, key)]
    group_id = st.groups.new_id()
    p1_body = {"key": key, "size": meta["size"], "checksum": meta["checksum"], "tags": meta["tags"],
               "producer_id": meta["producer_id"], "content_type": meta["content_type"],
               "ball_id": meta["ball_id"], "bucket_id": bucket_id, "is_disable": meta["is_disabled"]}
    if inline is not None:
        p1_body[INLINE_FIELD] = body[INLINE_FIELD]
    if rf > st.config.rebalance_rf and RF_TAG not in meta["tags"]:
        # The peers store no replication factor: without the tag, the rebalancer would keep
        # only its default number of copies of this ball and drop the others (§4.4).
        p1_body["tags"] = {**meta["tags"], RF_TAG: str(rf)}
    # One version for every replica of the group, so they all order this write the same way.
    version = requested or st.clock.next()
    existing: Optional[reconcile.Resolution] = None
    if if_absent:
        existing = await reconcile.resolve(st, bucket_id, key)
        answer = _create_only(existing, meta, version, bucket_id, key, started)
        if answer is not None:
            return answer
    headers = {"Task-Id": group_id, "Update": "1" if update else "0", VERSION_HEADER: version}
    if stage:
        headers[STAGE_HEADER] = "1"
    replies, failures = await _place(st, ranking, rf, group_id, f"/buckets/{bucket_id}/metadata", headers, p1_body)
    for reply in replies:
        reply_version(reply, st.clock)
    if failures:
        succeeded = [st.registry.peers[r.peer_id] for r in replies if r.peer_id in st.registry.peers]
        await asyncio.gather(*(call(st.registry, e, "DELETE", f"/tasks/{group_id}") for e in succeeded))
        raise write_failure(failures, bucket_id=bucket_id, key=key, version=version)
    replicas = [Replica(r.peer_id, bool(isinstance(r.body, dict) and r.body.get("exists"))) for r in replies]
    if inline is not None:
        # A create that found nothing visible has no older copy to clean up anywhere.
        cleanup = update and not stage and (existing is None or existing.best is not None)
        return await _finish_inline(st, replies, inline, bucket_id, key, version, cleanup, started)
    group = st.groups.add(group_id, bucket_id, key, meta["size"], meta["checksum"], meta["content_type"],
                          update, replicas, version=version, stage=stage)
    return json_response({"key": key, "service_time": time.perf_counter() - started, "tasks_ids": [group_id],
                          "bucket_id": bucket_id, "replicas": [r.peer_id for r in replicas],
                          "extra": {"exists": group.exists, "version": version}},
                         headers={VERSION_HEADER: version})


def _create_only(found: reconcile.Resolution, meta: dict[str, Any], version: str, bucket_id: str, key: str,
                 started: float) -> Optional[Response]:
    """``Mictlanx-If-Absent``: the answer when something visible decides the create (None: write).

    The client's own create-only rules (docs/consistency.md §3.1), made here so a small
    create is one request: the same content already stored and enabled is answered
    ``identical`` with its chunk count, and nothing is written (the client takes one chunk as
    done and checks a larger object itself); other content is 409/405; a visible version or a
    tombstone at or above this write's version is 409/409 naming it, so the writer can order
    its write after it (its clock lagged) instead of being silently ordered before it.
    """
    if found.version == version:
        # This very write, committed on some replica by an earlier attempt that then failed on
        # another: write again (the replicas that have it answer exists), never "identical",
        # which would acknowledge fewer copies than asked for.
        return None
    body = found.best.body if found.best is not None and isinstance(found.best.body, dict) else {}
    current = body.get("metadata")
    if isinstance(current, dict):
        raw_tags = current.get("tags")
        tags: dict[str, Any] = raw_tags if isinstance(raw_tags, dict) else {}
        full = str(tags.get("full_checksum", "")).lower()
        if full != str(meta["tags"].get("full_checksum", "")).lower():
            raise HTTPError(409, 405, f"{bucket_id}/{key} exists with other content", bucket_id=bucket_id, key=key,
                            version=found.version)
        if not current.get("is_disabled"):
            return json_response({"key": key, "service_time": time.perf_counter() - started, "tasks_ids": [],
                                  "bucket_id": bucket_id, "replicas": [],
                                  "extra": {"exists": True, "identical": True, "version": found.version,
                                            "num_chunks": str(tags.get("num_chunks", "1"))}},
                                 headers={VERSION_HEADER: found.version} if found.version else None)
    newest = max(found.version, found.tombstone or "")  # the same content disabled: a new version re-enables it
    if newest and version <= newest:
        raise HTTPError(409, 409, f"version {version} of {bucket_id}@{key} is superseded by {newest}",
                        bucket_id=bucket_id, key=key, version=version, superseded_by=newest)
    return None


async def _finish_inline(st: RouterState, replies: list[Reply], data: bytes, bucket_id: str, key: str,
                         version: str, cleanup: bool, started: float) -> Response:
    """The answer of a one-request write whose P1s carried the bytes (docs/protocol-extensions.md).

    Our peers commit at P1 and say ``committed``; a replica that only made a task (a peer
    without the extension) gets its phase 2 here, a P3 with the bytes. Every replica must
    have committed, as for R7 (502 otherwise, the others' tasks cancelled).
    """
    async def phase2(reply: Reply) -> Reply:
        body = reply.body if isinstance(reply.body, dict) else {}
        if body.get("committed") is True or body.get("exists") is True:
            return reply
        entry, task_id = st.registry.peers.get(reply.peer_id), body.get("task_id")
        if entry is None or not isinstance(task_id, str):
            return Reply(reply.peer_id, None, error="no task to send the data to")
        return await call(st.registry, entry, "POST", f"/buckets/data/{task_id}/chunked", content=data,
                          timeout=st.registry.meta_timeout + len(data) / (1024 * 1024))
    done = await asyncio.gather(*(phase2(r) for r in replies))
    failures = [r for r in done if not r.ok]
    if failures:
        raise write_failure(failures, bucket_id=bucket_id, key=key, version=version)
    peer_ids = [r.peer_id for r in done]
    if cleanup:
        st.spawn(_update_cleanup(st, bucket_id, key, version, set(peer_ids)))
    exists = all(isinstance(r.body, dict) and r.body.get("exists") is True for r in replies)
    return json_response({"key": key, "service_time": time.perf_counter() - started, "tasks_ids": [],
                          "bucket_id": bucket_id, "replicas": peer_ids, "peer_ids": peer_ids,
                          "combined_key": f"{bucket_id}@{key}", "size": len(data),
                          "extra": {"exists": exists, "version": version, "committed": True}},
                         headers={VERSION_HEADER: version})


async def _place(st: RouterState, ranking: list[Any], rf: int, group_id: str, path: str, headers: dict[str, str],
                 body: dict) -> tuple[list[Reply], list[Reply]]:
    """P1 on the top ``rf`` peers of ``ranking``: ``(successes, failures)``, failures empty on success.

    A replica that fails without answering (a transport error or timeout), or is still silent
    ``fanout_grace`` after the first replica succeeded, is replaced once by the next available
    peer of the ranking (issue 12 point 4: a frozen peer never holds a put for the full peer
    timeout). Calls left running when ``rf`` replicas succeeded have their task cancelled (P23)
    in the background if they succeed later; a frozen peer's task expires with its TTL.
    """
    loop = asyncio.get_running_loop()
    owner: dict[asyncio.Future, Any] = {}
    spares = list(ranking[rf:])
    ok: list[Reply] = []
    failures: list[Reply] = []

    def start(entry: Any) -> None:
        owner[asyncio.ensure_future(call(st.registry, entry, "POST", path, headers=headers, json_body=body))] = entry

    for entry in ranking[:rf]:
        start(entry)
    pending = set(owner)
    hedged: set[asyncio.Future] = set()
    deadline: Optional[float] = None
    try:
        # After a failure (the write fails), wait for the others to report every error, as before.
        while pending and (len(ok) < rf or failures):
            timeout = None if deadline is None or failures else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the grace after a success is over: hedge every silent replica once
                deadline = None
                for task in list(pending):
                    if task not in hedged and spares:
                        hedged.add(task)
                        start(spares.pop(0))
                pending = {t for t in owner if not t.done()}
                continue
            for task in done:
                reply = task.result()
                if reply.ok:
                    ok.append(reply)
                    if deadline is None:
                        deadline = loop.time() + st.registry.grace
                elif reply.status is None and task in hedged:
                    pass  # its replacement is already running
                elif reply.status is None and spares and not failures:
                    hedged.add(task)
                    start(spares.pop(0))
                    pending = {t for t in owner if not t.done()}
                else:
                    failures.append(reply)
    except BaseException:
        for task in pending:
            task.cancel()
        raise
    if len(ok) < rf and not failures:
        failures.extend(t.result() for t in owner if t.done() and not t.result().ok)
    if pending:
        st.spawn(_drop_late(st, list(pending), group_id))
    if len(ok) > rf:
        st.spawn(_drop_tasks(st, [r.peer_id for r in ok[rf:]], group_id))
    order = {e.peer_id: i for i, e in enumerate(ranking)}
    return sorted(ok[:rf], key=lambda r: order[r.peer_id]), failures  # replicas in ranking order


async def _drop_late(st: RouterState, tasks: list[asyncio.Future], group_id: str) -> None:
    """Cancel (P23) the task of a P1 that succeeded after its group was placed elsewhere."""
    replies = await asyncio.gather(*tasks, return_exceptions=True)
    await _drop_tasks(st, [r.peer_id for r in replies if isinstance(r, Reply) and r.ok], group_id)


async def _drop_tasks(st: RouterState, peer_ids: list[str], group_id: str) -> None:
    entries = [st.registry.peers[p] for p in peer_ids if p in st.registry.peers]
    await asyncio.gather(*(call(st.registry, e, "DELETE", f"/tasks/{group_id}") for e in entries))


# --- R6, R7, R8 --------------------------------------------------------------------------------
async def put_data_multipart(st: RouterState, req: Request, task_id: str) -> Optional[Response]:
    """R6."""
    return await put_data(st, req, task_id, multipart=True)


async def put_data_raw(st: RouterState, req: Request, task_id: str) -> Optional[Response]:
    """R7 and R8."""
    return await put_data(st, req, task_id, multipart=False)


async def put_data(st: RouterState, req: Request, task_id: str, multipart: bool) -> Optional[Response]:
    body = req.body_stream()
    try:
        group_id = path_task_id(task_id)
        piece_size = parse_chunk_size(req.headers.get("chunk-size"), st.config.piece_size)
        group = st.groups.claim(group_id)
        if group is None:
            raise HTTPError(404, 404, f"unknown, expired or already claimed group: {group_id}")
    except HTTPError as exc:
        # No phase-1 size to bound the drain: drain a small body, else answer and close (§P3.2).
        drained = await body.drain(1024 * 1024)
        return error_response(exc, close=not drained)
    try:
        parser = MultipartStream(req.headers.get("content-type")) if multipart else None
    except HTTPError as exc:
        drained = await body.drain(group.size + MULTIPART_SLACK)
        await cleanup(st.registry, group)
        return error_response(exc, close=not drained)
    declared = req.content_length
    mismatch = length_mismatch(declared, group.size, group.checksum, multipart)
    if mismatch is not None and declared is not None:  # fail at once: nothing reaches the replicas
        limit = min(declared, group.size + (MULTIPART_SLACK if multipart else 0), DRAIN_CAP)
        drained = await body.drain(limit)
        await cleanup(st.registry, group)
        return error_response(mismatch, close=not drained)
    try:
        outcome = await stream_to_replicas(st.registry, group, body, piece_size=piece_size,
                                           queue_depth=st.config.queue_depth, multipart=parser)
    except HTTPError as exc:
        return error_response(exc, close=not body.done)
    if group.update and not group.stage:
        st.spawn(_update_cleanup(st, group.bucket_id, group.key, group.version,
                                 {r.peer_id for r in group.replicas}))
    result = {"peer_ids": [r.peer_id for r in outcome.replies], "combined_key": f"{group.bucket_id}@{group.key}",
              "bucket_id": group.bucket_id, "key": group.key, "size": outcome.size}
    headers = {VERSION_HEADER: group.version} if group.version else None
    return json_response(result, 201 if multipart else 200, headers=headers)


async def _update_cleanup(st: RouterState, bucket_id: str, key: str, version: str, replicas: set[str]) -> None:
    """After an ``Update: 1`` commit, delete stale copies outside the replicas (§P4.4).

    A versioned group removes an older copy with a tombstone just below its own version
    (:func:`tombstone_below`): it supersedes that copy and anything older, and can never hide
    this write or a newer one, as an unversioned delete (a tombstone at the peer's clock) could.
    """
    others = [e for e in st.registry.available() if e.peer_id not in replicas]
    if not others:
        return
    replies = await fan_out(st.registry, others, "GET", f"/buckets/{bucket_id}/metadata/{key}")
    for entry, reply in zip(others, replies, strict=True):
        if reply.status != 200 or not isinstance(reply.body, dict):
            continue
        path = f"/buckets/{bucket_id}/{key}"
        if version:
            stale_version = reply_version(reply, st.clock)
            below = tombstone_below(version, st.clock.writer_id)
            if below is not None and stale_version < below:
                await call(st.registry, entry, "DELETE", path, headers={VERSION_HEADER: below})
            continue
        stale = (reply.body.get("metadata") or {}).get("checksum")
        if isinstance(stale, str) and len(stale) == 64:
            await call(st.registry, entry, "DELETE", path, headers={"If-Match": f'"{stale}"'})


# --- R4 -------------------------------------------------------------------------------------
async def update_metadata(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    body = await req.json()
    if not isinstance(body, dict):
        raise unprocessable("body must be a JSON object", ["body"], "dict_type")
    if body.get("key") not in (None, "") and body["key"] != key:
        raise bad_request(f"body key {body['key']!r} differs from the path key {key!r}")
    if body.get("bucket_id") not in (None, "") and body["bucket_id"] != bucket_id:
        raise bad_request(f"body bucket_id {body['bucket_id']!r} differs from the path bucket {bucket_id!r}")
    changes: dict[str, Any] = {}
    if body.get("tags") is not None:
        changes["tags"] = v.check_tags(body["tags"])
    if body.get("content_type") is not None:
        changes["content_type"] = v.check_content_type(body["content_type"])
    if body.get("producer_id") is not None:
        changes["producer_id"] = v.check_producer(body["producer_id"])
    if body.get("ball_id") not in (None, ""):
        changes["ball_id"] = v.check_key(body["ball_id"], "ball_id")
    disabled = v.disabled_flag(body)
    if disabled is not None:
        changes["is_disabled"] = disabled
    size = v.check_size(body["size"]) if body.get("size") is not None else None
    checksum = v.check_checksum(body["checksum"]) if body.get("checksum") is not None else None

    entries = st.ranked_available(bucket_id, key)
    if not entries:
        raise missing(st.registry, [], f"{bucket_id}@{key}", fail_code=504, bucket_id=bucket_id, key=key)
    lookups = await fan_out(st.registry, entries, "GET", f"/buckets/{bucket_id}/metadata/{key}")
    holders = [(e, r.body["metadata"]) for e, r in zip(entries, lookups, strict=True)
               if r.status == 200 and isinstance(r.body, dict) and isinstance(r.body.get("metadata"), dict)]
    failed = [r for r in lookups if r.failed and not r.late]
    if not holders:
        raise missing(st.registry, [r.peer_id for r in failed], f"{bucket_id}@{key}", fail_code=504,
                      bucket_id=bucket_id, key=key)
    stored = holders[0][1]
    changed_size = size is not None and size != stored.get("size")
    if changed_size or (checksum is not None and checksum != stored.get("checksum")):
        raise bad_request("size and checksum cannot change: data changes need a new PUT", bucket_id=bucket_id, key=key)
    errors: list[Reply] = list(failed)
    results = await asyncio.gather(*(_apply_update(st, e, m, changes, bucket_id, key) for e, m in holders))
    errors.extend(r for r in results if r is not None)
    if errors:
        raise HTTPError(502, 504, "metadata update failed on some peers", errors=[r.describe() for r in errors],
                        bucket_id=bucket_id, key=key)
    return empty(204)


async def _apply_update(st: RouterState, entry: Any, meta: dict, changes: dict, bucket_id: str,
                        key: str) -> Optional[Reply]:
    body = {"key": key, "size": meta.get("size"), "checksum": meta.get("checksum"), "bucket_id": bucket_id,
            "tags": changes.get("tags", meta.get("tags", {})),
            "content_type": changes.get("content_type", meta.get("content_type", "application/octet-stream")),
            "producer_id": changes.get("producer_id", meta.get("producer_id", "")),
            "ball_id": changes.get("ball_id", meta.get("ball_id", key)),
            "is_disable": changes.get("is_disabled", meta.get("is_disabled", False))}
    reply = await call(st.registry, entry, "POST", f"/buckets/{bucket_id}/metadata", headers={"Update": "1"},
                       json_body=body)
    if not reply.ok:
        return reply
    task_id = reply.body.get("task_id") if isinstance(reply.body, dict) else None
    if isinstance(task_id, str):
        await call(st.registry, entry, "DELETE", f"/tasks/{task_id}")
    return None


# --- R9 -------------------------------------------------------------------------------------
async def disable(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    entries = st.ranked_available(bucket_id, key)
    replies = await fan_out(st.registry, entries, "POST", f"/buckets/{bucket_id}/{key}/disable")
    if any(r.ok for r in replies):
        return empty(204)
    failed = [r for r in replies if r.status != 404]
    if failed:
        raise HTTPError(502, 504, "disable failed on every holder", errors=[r.describe() for r in failed],
                        bucket_id=bucket_id, key=key)
    raise missing(st.registry, [], f"{bucket_id}@{key}", fail_code=504, bucket_id=bucket_id, key=key)


# --- R13, R14 -------------------------------------------------------------------------------
async def delete_key(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    if_match = parse_if_match(req.headers.get("if-match"))
    task_id = header_task_id(req.headers.get("task-id"))
    force = parse_bool(req.headers.get("force"), "Force", default=True)
    stamp = _delete_versions(st, req, preconditioned=bool(if_match or task_id))
    entries = st.registry.available()
    if not entries:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids(), bucket_id=bucket_id, key=key)
    headers = {"Force": "1" if force else "0", **stamp.headers()}
    if if_match:
        headers["If-Match"] = f'"{if_match}"'
    if task_id:
        headers["Task-Id"] = task_id
    replies = await fan_out(st.registry, entries, "DELETE", f"/buckets/{bucket_id}/{key}", headers=headers)
    deleted = [r for r in replies if r.status == 200]
    n_deletes = sum(_n_deletes(r) for r in deleted)
    etags = {etag_checksum(r.headers.get("etag")) for r in deleted} - {None}
    # a peer that timed out or could not answer gets a pending record (owed_peers); a late one did not fail
    failed = sorted(r.peer_id for r in replies if r.status not in (200, 404, 412) and not r.late)
    # A versioned delete replays as a tombstone, which is safe on its own; an If-Match taken
    # from the copies seen here would make it fail (412) on a peer holding another version.
    recorded = if_match or (next(iter(etags)) if len(etags) == 1 and not stamp.version else ANY)
    pending_peers = owed_peers(st.registry, replies)
    st.pending.add([key_record(p, bucket_id, key, recorded, task_id, stamp.version, stamp.if_version)
                    for p in pending_peers])
    if n_deletes > 0 or (not failed and pending_peers):
        return json_response({"n_deletes": n_deletes, "key": key, "failed_peers": failed,
                              "pending_peers": pending_peers, "version": stamp.version or ""},
                             headers={"n-deletes": str(n_deletes), **stamp.response_headers()})
    if failed:
        raise HTTPError(502, 504, "delete failed on some peers", failed_peers=failed, pending_peers=pending_peers,
                        bucket_id=bucket_id, key=key)
    if any(r.status == 412 for r in replies):
        raise HTTPError(412, 405, "precondition failed; nothing deleted", bucket_id=bucket_id, key=key)
    raise HTTPError(404, 404, f"{bucket_id}@{key} not found", headers={"n-deletes": "0"}, bucket_id=bucket_id,
                    key=key)


async def delete_ball(st: RouterState, req: Request, bucket_id: str, ball_id: str) -> Response:
    stamp = _delete_versions(st, req, preconditioned=False)
    entries = st.registry.available()
    if not entries:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids(), bucket_id=bucket_id,
                                ball_id=ball_id)
    replies = await fan_out(st.registry, entries, "DELETE", f"/buckets/{bucket_id}/bid/{ball_id}",
                            headers=stamp.headers())
    n_deletes = sum(_n_deletes(r) for r in replies if r.status == 200)
    # a peer that timed out or could not answer gets a pending record (owed_peers); a late one did not fail
    failed = sorted(r.peer_id for r in replies if r.status not in (200, 404, 412) and not r.late)
    pending_peers = owed_peers(st.registry, replies)
    st.pending.add([ball_record(p, bucket_id, ball_id, stamp.version, stamp.if_version) for p in pending_peers])
    if failed and n_deletes == 0:
        raise HTTPError(502, 504, "delete failed on some peers", failed_peers=failed, pending_peers=pending_peers,
                        bucket_id=bucket_id, ball_id=ball_id)
    return json_response({"n_deletes": n_deletes, "ball_id": ball_id, "failed_peers": failed,
                          "pending_peers": pending_peers, "version": stamp.version or ""},
                         headers={"n-deletes": str(n_deletes), **stamp.response_headers()})


@dataclass
class DeleteStamp:
    """The versions one R13/R14 sends: a tombstone ``version`` and/or an ``if_version`` to drop."""

    version: Optional[str]
    if_version: Optional[str]

    def headers(self) -> dict[str, str]:
        out = {}
        if self.version:
            out[VERSION_HEADER] = self.version
        if self.if_version:
            out[IF_VERSION_HEADER] = self.if_version
        return out

    def response_headers(self) -> dict[str, str]:
        return {VERSION_HEADER: self.version} if self.version else {}


def _delete_versions(st: RouterState, req: Request, *, preconditioned: bool) -> DeleteStamp:
    """The tombstone version of a delete: the client's, else one from the router's clock, except
    for a precondition delete (``If-Match``, ``Task-Id``, ``Mictlanx-If-Version``), which removes
    exactly one copy and must not hide anything else behind a tombstone."""
    refuse_drop_current(req.headers)
    version = header_version(req.headers)
    if_version = header_if_version(req.headers)
    if version is not None and if_version is not None:
        raise bad_request(f"{VERSION_HEADER} and {IF_VERSION_HEADER} cannot be combined")
    if version is None and if_version is None and not preconditioned:
        version = st.clock.next()
    return DeleteStamp(version, if_version)


def _n_deletes(reply: Reply) -> int:
    if isinstance(reply.body, dict) and isinstance(reply.body.get("n_deletes"), int):
        return int(reply.body["n_deletes"])
    try:
        return int(reply.headers.get("n-deletes", "1"))
    except ValueError:
        return 1
