"""Phase 2 to every replica at once (R6/R7, protocol §4.5).

The client body is cut into pieces of ``piece_size`` and put on one bounded queue per replica
(depth ``queue_depth``); each replica's P3 upload drains its queue. The router reads more of the
client body only when every queue has room, so memory per upload stays below ``replicas x
queue_depth x piece_size`` whatever the object size. A failure cancels the other uploads,
drains the client body (§3.2) and rolls back (§4.4).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Optional

from ..asgi.errors import ClientDisconnected, HTTPError
from ..asgi.multipart import MultipartStream
from ..asgi.request import RequestBody
from ..phase2 import MULTIPART_SLACK
from .fanout import Reply, call, parse_json
from .groups import Group
from .peer_client import PeerError
from .peers import PeerEntry
from .registry import PeerDown, Registry
from .superseded import write_failure

log = logging.getLogger("mictlanx_sync.server.router")


class _ReplicaDone(Exception):
    """A replica upload ended before the router finished sending (always a failure)."""


class _Integrity(Exception):
    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


class ReplicaUpload:
    """One replica's P3 upload, fed through a bounded queue."""

    def __init__(self, registry: Registry, entry: PeerEntry, group: Group, depth: int) -> None:
        self.registry = registry
        self.entry = entry
        self.group = group
        self.queue: asyncio.Queue[Optional[bytes]] = asyncio.Queue(max(1, depth))
        self.task: asyncio.Task[Reply] = asyncio.ensure_future(self._run())

    async def _body(self) -> AsyncIterator[bytes]:
        queue = self.queue
        while True:
            piece = await queue.get()
            if piece is None:
                return
            yield piece

    async def _run(self) -> Reply:
        path = f"/api/v4/buckets/data/{self.group.group_id}/chunked"
        try:
            # Tracked per peer: marking the peer unavailable cancels the upload at once.
            answer = await self.registry.guard(self.entry, self.registry.client.exchange(
                self.entry, "POST", path, body=self._body(), length=self.group.size,
                headers={"Content-Type": "application/octet-stream"}))
        except PeerDown as exc:
            return Reply(self.entry.peer_id, None, error=str(exc))
        except PeerError as exc:
            if exc.transport:
                self.registry.mark_failure(self.entry)
            return Reply(self.entry.peer_id, None, error=str(exc))
        except Exception as exc:  # never lose the rollback to an unexpected error
            log.exception("upload to %s failed", self.entry.peer_id)
            return Reply(self.entry.peer_id, None, error=f"{type(exc).__name__}: {exc}")
        return Reply(self.entry.peer_id, answer.status, parse_json(answer.content), answer.headers)

    async def put(self, piece: Optional[bytes]) -> None:
        """Queue ``piece``; raises ``_ReplicaDone`` if the upload ended first."""
        if self.task.done():
            raise _ReplicaDone()
        try:
            self.queue.put_nowait(piece)
            return
        except asyncio.QueueFull:
            pass
        putter = asyncio.ensure_future(self.queue.put(piece))
        done, _ = await asyncio.wait({putter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if putter not in done:
            putter.cancel()
            raise _ReplicaDone()


@dataclass
class PutOutcome:
    size: int
    replies: list[Reply]


async def stream_to_replicas(registry: Registry, group: Group, body: RequestBody, *, piece_size: int,
                             queue_depth: int, multipart: Optional[MultipartStream]) -> PutOutcome:
    """Relay the client body to every replica; raises HTTPError after cleaning up on failure."""
    entries = []
    for replica in group.replicas:
        entry = registry.get(replica.peer_id)
        if entry is None:
            await body.drain(_drain_limit(group))
            await cleanup(registry, group)
            raise HTTPError(502, 502, f"replica {replica.peer_id} is no longer registered",
                            errors=[{"peer_id": replica.peer_id, "status": 502, "code": 502,
                                     "msg": "peer removed"}])
        entries.append(entry)
    uploads = [ReplicaUpload(registry, e, group, queue_depth) for e in entries]
    size = group.size
    count = 0
    try:
        pieces: list[bytes] = []
        pending = 0
        while True:
            chunk = await body.next()
            if chunk is None:
                break
            parts = multipart.feed(chunk) if multipart is not None else ([chunk] if chunk else [])
            for part in parts:
                count += len(part)
                pieces.append(part)
                pending += len(part)
            if count > size:
                raise _Integrity(count)
            if pending >= piece_size:
                piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, pending = [], 0
                for upload in uploads:
                    await upload.put(piece)
        incomplete = multipart.incomplete() if multipart is not None else None
        if incomplete is not None:
            raise incomplete
        if count != size:
            raise _Integrity(count)
        if pending:
            piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            for upload in uploads:
                await upload.put(piece)
        for upload in uploads:
            await upload.put(None)
        replies = list(await asyncio.gather(*(u.task for u in uploads)))
    except BaseException as exc:
        failures = await _abort(uploads)
        if isinstance(exc, (ClientDisconnected, asyncio.CancelledError)):
            await cleanup(registry, group)
            raise
        await body.drain(_drain_limit(group))
        await cleanup(registry, group)
        if isinstance(exc, _Integrity):
            received = exc.received
            if not body.done:
                received = max(received, count)
            raise HTTPError(400, 501, f"integrity failure: received {received} bytes, expected {size}",
                            expected_size=size, received_size=received, expected_checksum=group.checksum,
                            errors=[r.describe() for r in failures]) from None
        if isinstance(exc, _ReplicaDone):
            raise write_failure(failures or [Reply(e.peer_id, None, error="aborted") for e in entries],
                                bucket_id=group.bucket_id, key=group.key, version=group.version or None) from None
        raise
    failures = [r for r in replies if not r.ok]
    if failures:
        await cleanup(registry, group)
        raise write_failure(failures, bucket_id=group.bucket_id, key=group.key, version=group.version or None)
    return PutOutcome(count, replies)


def _drain_limit(group: Group) -> int:
    return group.size + MULTIPART_SLACK


async def _abort(uploads: list[ReplicaUpload]) -> list[Reply]:
    """Cancel the unfinished uploads; the replies of those that had finished and failed."""
    for upload in uploads:
        if not upload.task.done():
            upload.task.cancel()
    await asyncio.gather(*(u.task for u in uploads), return_exceptions=True)
    failures = []
    for upload in uploads:
        if upload.task.cancelled():
            continue
        reply = upload.task.result()
        if not reply.ok:
            failures.append(reply)
    return failures


async def cleanup(registry: Registry, group: Group) -> None:
    """Roll back a failed phase 2 (§P4.4): cancel the peer tasks, delete what this group committed.

    A versioned group deletes nothing (docs/consistency.md §5): a version that committed on some
    replica is an acknowledged-elsewhere write that a retry converges, not debris. A failed
    staged put is dropped by its writer (R14 with ``Mictlanx-If-Version``).
    """
    calls = []
    for replica in group.replicas:
        entry = registry.get(replica.peer_id)
        if entry is None:
            continue
        calls.append(call(registry, entry, "DELETE", f"/tasks/{group.group_id}"))
        if not replica.exists and not group.version:
            calls.append(call(registry, entry, "DELETE", f"/buckets/{group.bucket_id}/{group.key}",
                              headers={"Task-Id": group.group_id}))
    await asyncio.shield(asyncio.gather(*calls))
