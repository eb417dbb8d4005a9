"""Data relays: phase 2 to every replica at once (R6/R7) and reads with failover (R10/R11).

**Writes.** The client body is cut into pieces of ``piece_size`` and put on one bounded
queue per replica (depth ``queue_depth``); each replica's P3 upload drains its queue. The
router reads more of the client body only when every queue has room, so memory per upload
stays below ``replicas x queue_depth x piece_size`` whatever the object size (§P4.5).

**Reads.** Holders are tried in ranking order; a holder is abandoned on 404, on a transport
error or on a 5xx *before the first body byte*, or when its first byte has not come within
``peer_first_byte_timeout`` (then it is marked unavailable). Reads are hedged: when a holder
has not produced its first byte ``fanout_grace`` after it was asked, the next holder is
asked too and the first to answer serves the read (the other is closed). Once bytes went out,
a broken upstream stream aborts the client connection (no terminating chunk).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

from ..asgi.errors import ClientDisconnected, HTTPError, StreamBroken
from ..asgi.multipart import MultipartStream
from ..asgi.request import BodyReader
from ..phase2 import MULTIPART_SLACK
from .fanout import Reply, call, parse_json
from .groups import Group
from .peer_client import STREAM_ERRORS, PeerError
from .peers import PeerEntry
from .registry import PeerDown, PeerTimeout, Registry
from .superseded import write_failure

log = logging.getLogger("mictlanx_sync.server.router")


class _ReplicaDone(Exception):
    """A replica upload ended before the router finished sending (always a failure)."""


class _Integrity(Exception):
    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


# --- phase 2 to every replica ------------------------------------------------------------
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


async def stream_to_replicas(registry: Registry, group: Group, body: BodyReader, *, piece_size: int,
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


# --- reads with failover ---------------------------------------------------------------------
@dataclass
class Opened:
    entry: PeerEntry
    status: int
    headers: Any  # lower-case name -> value
    first: bytes
    iterator: AsyncIterator[bytes]
    closer: Callable[[], Any]

    async def aclose(self) -> None:
        await self.closer()


async def open_data(registry: Registry, entry: PeerEntry, path: str, headers: dict[str, str],
                    expect_size: Optional[int] = None) -> tuple[str, Any]:
    """Open P5 on one holder: ``("ok", Opened)``, ``("missing", None)``, ``("failed", msg)`` or
    ``("reply", (status, headers, body))`` for an answer to pass through (416).

    The answer's head and first body bytes must come within ``registry.first_byte_timeout``
    (else the peer is marked unavailable and this is ``"failed"``); the call is tracked per peer,
    so marking the peer unavailable meanwhile fails it at once.
    """
    try:
        return await registry.guard(entry, _open_data(registry, entry, path, headers, expect_size),
                                    registry.first_byte_timeout)
    except (PeerTimeout, PeerDown) as exc:
        return "failed", str(exc)


async def _open_data(registry: Registry, entry: PeerEntry, path: str, headers: dict[str, str],
                     expect_size: Optional[int] = None) -> tuple[str, Any]:
    """:func:`open_data` without its deadline."""
    try:
        response = await registry.client.open(entry, f"/api/v4{path}", headers)
    except STREAM_ERRORS as exc:
        registry.mark_failure(entry)
        return "failed", f"{type(exc).__name__}: {exc}"
    status, peer_headers = response.status, response.headers
    if status not in (200, 206):
        try:
            body = await response.aread()
        except STREAM_ERRORS:
            body = b""
        finally:
            await response.aclose()
        if status == 404:
            return "missing", None
        if status >= 500:
            return "failed", f"HTTP {status}"
        return "reply", (status, peer_headers, body)
    if expect_size is not None and peer_headers.get("content-length") not in (None, str(expect_size)):
        await response.aclose()
        return "missing", None  # another version of the chunk: try the next holder
    iterator = response.iter_raw()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = b""
    except STREAM_ERRORS as exc:
        await response.aclose()
        registry.mark_failure(entry)
        return "failed", f"{type(exc).__name__}: {exc}"
    except BaseException:  # cancelled (the client went away): httpx would keep the response open
        await response.aclose()
        raise
    return "ok", Opened(entry, status, peer_headers, first, iterator, response.aclose)


async def open_first(registry: Registry, candidates: list[PeerEntry], path: str, headers: dict[str, str],
                     expect_size: Optional[int] = None) -> tuple[Optional[Opened], list[str]]:
    """Try ``candidates`` in order; the first open stream and the peers that failed.

    The next candidate is asked when the current one fails, or (hedging) when no candidate
    asked so far has answered ``registry.grace`` seconds after the last was asked. The first
    stream opened wins; streams opened later are closed.
    """
    failed: list[str] = []
    loop = asyncio.get_running_loop()
    queue = list(candidates)
    running: dict[asyncio.Future, PeerEntry] = {}
    winner: Optional[Opened] = None
    passthrough: Optional[PassThrough] = None

    def ask_next() -> None:
        entry = queue.pop(0)
        running[asyncio.ensure_future(open_data(registry, entry, path, headers, expect_size))] = entry

    try:
        while winner is None and passthrough is None and (queue or running):
            if not running:
                ask_next()
            hedge_at = loop.time() + registry.grace
            done, _ = await asyncio.wait(set(running), timeout=max(0.0, hedge_at - loop.time()) if queue else None,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                ask_next()  # hedge: the candidates asked are slow
                continue
            for task in done:
                entry = running.pop(task)
                kind, value = task.result()
                if kind == "ok" and winner is None and passthrough is None:
                    winner = value
                elif kind == "ok":
                    await value.aclose()
                elif kind == "failed":
                    failed.append(entry.peer_id)
                elif kind == "reply" and winner is None and passthrough is None:
                    status, peer_headers, raw = value
                    passthrough = PassThrough(status, peer_headers, raw)
    except BaseException:
        _close_later(running)
        if winner is not None:
            await winner.aclose()
        raise
    _close_later(running)
    if passthrough is not None:
        raise passthrough
    return winner, failed


_CLOSING: set[asyncio.Future] = set()


def _close_later(running: dict[asyncio.Future, PeerEntry]) -> None:
    """Cancel the opens still running; close a stream that one of them opened all the same."""
    def closer(task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        kind, value = task.result()
        if kind == "ok":
            closing = asyncio.ensure_future(value.aclose())
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)

    for task in running:
        task.cancel()
        task.add_done_callback(closer)


class PassThrough(Exception):
    """A peer answer (e.g. 416) returned to the client as is."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


async def relay(send: Callable[[dict], Any], opened: Opened, *, last: bool = True,
                gone: Optional[asyncio.Future] = None) -> int:
    """Send ``opened``'s body to the client; raises ``StreamBroken`` if the upstream breaks and
    ``ClientDisconnected`` once ``gone`` (a ``Request.wait_disconnect`` task) has finished."""
    sent = 0
    try:
        if opened.first:
            await send({"type": "http.response.body", "body": opened.first, "more_body": True})
            sent += len(opened.first)
        try:
            async for chunk in opened.iterator:
                if gone is not None and gone.done():
                    raise ClientDisconnected()
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
        except STREAM_ERRORS as exc:
            raise StreamBroken(f"stream from {opened.entry.peer_id} broke after {sent} bytes: {exc}") from None
    finally:
        await opened.aclose()
    if last:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return sent
