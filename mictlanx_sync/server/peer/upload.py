"""Phase 2 (P2 multipart, P3 raw): stream to a temp file, verify, seal, commit (protocol §3.2).

The body is hashed and written in ~1 MiB pieces by a worker thread (hashlib and ``os.write``
release the GIL), one piece in flight while the event loop receives the next one.

A small version (at most the peer's ``--inline-ball-max``, docs/storage.md) is kept in memory
instead, verified, and committed with its bytes in the index transaction that names it: no
temp file, no rename, and the commit point is still that one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from ...protocol.versions import VERSION_HEADER
from ..asgi.errors import HTTPError, not_found
from ..asgi.multipart import MultipartStream
from ..asgi.request import Request, Send
from ..asgi.responses import send_json
from ..phase2 import DRAIN_CAP, MULTIPART_SLACK, length_mismatch
from ..units import MIB
from . import lww, versionstore
from .state import PeerState
from .storage import Ball, fsync_dir, is_disk_full
from .tasks import Task

PIECE = MIB
#: a piece at most this large, with no file to write, is hashed on the event loop (~30 µs)
SMALL_PIECE = 64 * 1024


class Sink:
    """Counts, hashes and writes the received bytes to ``path``, or keeps them in memory
    (``keep``: an inline version, ``data()``), or neither (``exists``: only verified)."""

    def __init__(self, path: Optional[Path], keep: bool = False) -> None:
        self.path = path
        self.fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644) if path is not None else -1
        self.hash = hashlib.sha256()
        self.count = 0
        self.kept: Optional[list[bytes]] = [] if keep and path is None else None
        self._parts: list[bytes] = []
        self._buffered = 0
        self._pending: Optional[asyncio.Future[Any]] = None

    async def feed(self, data: bytes) -> None:
        self.count += len(data)
        if self.kept is not None:
            self.kept.append(data)
        self._parts.append(data)
        self._buffered += len(data)
        if self._buffered >= PIECE:
            await self._flush()

    async def _flush(self) -> None:
        if not self._parts:
            return
        piece = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        self._buffered = 0
        if self._pending is not None:
            await self._pending
        if self.fd < 0 and len(piece) <= SMALL_PIECE:
            # Hashing a small piece takes microseconds; a trip to a worker thread and back
            # costs far more (issue 13: a small put's latency), and nothing else is in flight.
            self.hash.update(piece)
            return
        loop = asyncio.get_running_loop()
        hashing = loop.run_in_executor(None, self.hash.update, piece)
        if self.fd < 0:
            self._pending = hashing
        else:  # hash and write on two threads: both release the GIL
            writing = loop.run_in_executor(None, _write_all, self.fd, piece)
            self._pending = asyncio.ensure_future(_both(hashing, writing))

    async def finish(self) -> str:
        """Flush everything; the hex SHA-256 of the bytes fed."""
        await self._flush()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        return self.hash.hexdigest()

    def data(self) -> bytes:
        """The bytes kept (``keep``)."""
        assert self.kept is not None
        return b"".join(self.kept)

    async def seal(self, final: Path, fsync: bool) -> None:
        """fsync (optional), close and rename the temp file to ``final``."""
        assert self.path is not None
        fd, self.fd = self.fd, -1
        await asyncio.get_running_loop().run_in_executor(None, _seal, fd, self.path, final, fsync)
        self.path = None

    async def abort(self) -> None:
        """Wait for the piece in flight, then close and remove the temp file."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except OSError:
                pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


async def _both(first: asyncio.Future[Any], second: asyncio.Future[Any]) -> None:
    """Wait for both (never leave a worker running on the fd), then raise the first error."""
    for result in await asyncio.gather(first, second, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _write_all(fd: int, piece: bytes) -> None:
    view = memoryview(piece)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _seal(fd: int, temp: Path, final: Path, fsync: bool) -> None:
    try:
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, final)
    if fsync:
        fsync_dir(final.parent)


def integrity_error(task: Task, received_size: int, received_checksum: str) -> HTTPError:
    return HTTPError(
        400, 501, f"integrity check failed for {task.bucket_id}@{task.key}: expected {task.size} bytes "
        f"with SHA-256 {task.checksum}, received {received_size} bytes with SHA-256 {received_checksum or '?'}",
        expected_size=task.size, received_size=received_size, expected_checksum=task.checksum,
        received_checksum=received_checksum)


def storage_error(exc: BaseException) -> HTTPError:
    """507/502 for a full file system (ENOSPC, EDQUOT, SQLite's "disk is full"); other errors re-raised."""
    if is_disk_full(exc):
        return HTTPError(507, 502, "insufficient storage while writing the ball")
    raise exc


async def receive_body(req: Request, task: Task, sink: Sink, multipart: bool) -> Optional[HTTPError]:
    """Stream the phase-2 body into ``sink``; the error to answer after draining, if any.

    Raises ``ClientDisconnected`` when the client goes away.
    """
    declared = req.content_length
    slack = MULTIPART_SLACK if multipart else 0
    bound = task.size + slack if declared is None else min(declared, task.size + slack)
    failure: Optional[HTTPError] = length_mismatch(declared, task.size, task.checksum, multipart)
    at_once = failure is not None
    if at_once:
        bound = min(bound, DRAIN_CAP)
    parts: Optional[MultipartStream] = None
    if multipart and failure is None:
        try:
            parts = MultipartStream(req.headers.get("content-type"))
        except HTTPError as exc:
            failure = exc
    body = req.body_stream()
    while not body.done:
        chunk = await body.next() or b""
        if failure is not None:
            if body.received >= bound and not body.done:
                failure.headers["connection"] = "close"
                break
            continue
        if not chunk:
            continue
        if parts is None:
            if sink.count + len(chunk) > task.size:
                failure = integrity_error(task, body.received, "")
                continue
            await sink.feed(chunk)
            task.written = sink.count
            continue
        try:
            data = parts.feed(chunk)
        except HTTPError as exc:
            failure = exc
            continue
        for piece in data:
            if sink.count + len(piece) > task.size:
                failure = integrity_error(task, sink.count + len(piece), "")
                break
            await sink.feed(piece)
        task.written = sink.count
    if failure is not None:
        if failure.code == 501 and parts is None and not at_once:
            failure.extra["received_size"] = body.received  # everything the client sent (up to the drain bound)
        return failure
    return parts.incomplete() if parts is not None else None


async def handle_phase2(peer: PeerState, req: Request, send: Send, task_id: str, multipart: bool) -> None:
    """P2/P3: claim the task, receive and verify the body, commit; the task ends either way."""
    task = peer.tasks.claim(task_id)
    if task is None:
        # No phase-1 size to bound a drain: uvicorn discards the unread body after the answer.
        raise not_found(f"unknown, expired or already claimed task: {task_id}", task_id=task_id)

    async def receive(sink: Sink) -> Optional[HTTPError]:
        return await receive_body(req, task, sink, multipart)

    answer = await run_phase2(peer, task, receive)
    await send_json(send, 201, answer, headers={VERSION_HEADER: task.version})


async def store_inline(peer: PeerState, task: Task, data: bytes) -> dict[str, Any]:
    """Phase 2 of a claimed task from bytes that came inline with its P1 (docs/protocol-extensions.md):
    the same checks, storage (a temp file, fsync and rename, or the index for a small version)
    and commit as P3; returns P3's answer."""
    async def receive(sink: Sink) -> Optional[HTTPError]:
        if len(data) > task.size:
            return integrity_error(task, len(data), "")
        if data:
            await sink.feed(data)
        task.written = sink.count
        return None

    return await run_phase2(peer, task, receive)


async def run_phase2(peer: PeerState, task: Task,
                     receive: Callable[[Sink], Awaitable[Optional[HTTPError]]]) -> dict[str, Any]:
    """Receive a claimed task's bytes into a temp file, verify, commit; P3's answer. The task
    ends either way; an error leaves nothing stored."""
    started = time.perf_counter()
    try:
        if not task.exists and task.reserved == 0:  # its reservation timed out: does it still fit?
            why = peer.fits(task.size)
            if why is not None:
                raise HTTPError(507, 502, f"{why} (the task's reservation timed out before its phase 2)",
                                bucket_id=task.bucket_id, key=task.key, task_id=task.task_id,
                                headers={"connection": "close"})
            peer.tasks.reacquire(task)
        try:
            inline = not task.exists and peer.storage.inlines(task.size)
            sink = Sink(None if task.exists or inline else peer.storage.temp_path(), keep=inline)
        except OSError as exc:
            raise storage_error(exc) from None
        try:
            failure = await receive(sink)
            if failure is None:
                digest = await sink.finish()
                if sink.count != task.size or digest != task.checksum:
                    failure = integrity_error(task, sink.count, digest)
            if failure is not None:
                raise failure
            if not task.exists:
                await _commit(peer, task, sink)
        except (OSError, sqlite3.Error) as exc:
            await sink.abort()
            raise storage_error(exc) from None
        except BaseException:
            await sink.abort()
            raise
    finally:
        peer.tasks.finish(task)
    elapsed = max(time.perf_counter() - started, 1e-9)
    return {"node_id": peer.config.peer_id, "combined_key": f"{task.bucket_id}@{task.key}",
            "bucket_id": task.bucket_id, "key": task.key, "size": task.size,
            "throughput": task.size / elapsed, "service_time": elapsed}


def _record(task: Task, name: str) -> Ball:
    return Ball(task.bucket_id, task.key, task.size, task.checksum, task_id=task.task_id, file=name,
                version=task.version, **task.meta)


def _write_record(peer: PeerState, task: Task, ball: Ball, data: Optional[bytes] = None) -> None:
    """The one index transaction that commits ``ball`` (with ``data``, its inline bytes)."""
    storage = peer.storage
    if task.staged:
        versionstore.stage(storage, ball, data)
    elif task.versioned:
        versionstore.commit_current(storage, ball, data)
    else:  # an unversioned overwrite replaces the old version at once, as before versions
        storage.put(ball, data)


async def _commit(peer: PeerState, task: Task, sink: Sink) -> None:
    if sink.kept is not None:
        # Inline: verified already (run_phase2); the re-check and the transaction that writes
        # the record and its bytes together run on the loop with no await in between. A failure
        # (a lost race, SQLITE_FULL) rolls the transaction back and leaves nothing behind.
        if _recheck(peer, task):
            _write_record(peer, task, _record(task, ""), sink.data())
        return
    storage = peer.storage
    name = storage.version_name(task.bucket_id, task.key, task.task_id)
    storage.intend(name)  # a crash between the rename and the commit leaves a name to check, not an orphan
    try:
        await sink.seal(storage.path(name), peer.config.fsync)
    except OSError:
        storage.unlink(name)  # renamed before a later step failed: no orphan either way
        raise
    # Back on the event loop: the re-check and the row swap run without an await in between.
    # Whatever fails from here (a lost race, a full disk under the index: the transaction was
    # rolled back), the new file is named by no row, so it goes.
    try:
        commit = _recheck(peer, task)
        if commit:
            _write_record(peer, task, _record(task, name))
    except BaseException:
        storage.unlink(name)
        raise
    if not commit:
        storage.unlink(name)  # the same content is already committed: nothing to change


def _recheck(peer: PeerState, task: Task) -> bool:
    """The commit check of §3.2 / docs/consistency.md §2.1: True to commit, False if already there."""
    storage = peer.storage
    if task.versioned or task.staged:
        return lww.check_commit(storage, task.bucket_id, task.key, task.meta["ball_id"], task.size, task.checksum,
                                task.version, task.staged, task.update)
    current = storage.get(task.bucket_id, task.key)
    if current is not None and not task.update:
        if (current.size, current.checksum) != (task.size, task.checksum):
            raise HTTPError(409, 405, f"{task.bucket_id}@{task.key} was committed meanwhile with other content",
                            bucket_id=task.bucket_id, key=task.key)
        return False
    # With Update, the version order still decides against a versioned write committed meanwhile.
    buried = versionstore.tombstone_over(storage, task.bucket_id, task.key, task.meta["ball_id"])
    newest = max(buried, current.version if current is not None else "")
    if newest and task.version <= newest:
        raise lww.superseded(task.bucket_id, task.key, task.version, newest)
    return True
