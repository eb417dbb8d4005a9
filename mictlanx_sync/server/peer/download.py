"""P5: stream a ball from its version file, whole or one Range (protocol §2.5, §3.3).

The file is opened before the first byte is sent, so a read completes with the version it
started on even if that version is replaced or deleted meanwhile. Pieces of ~1 MiB are read
with ``os.pread`` in a worker thread, the next one while the current one is being sent.

An inline version (bytes in the index, docs/storage.md) is read whole in the same event-loop
step as its lookup, before the first byte is sent: it is small, and nothing can change it in
between, so such a read too completes with the version it started on.
"""

from __future__ import annotations

import asyncio
import os
from typing import Optional

from ...protocol.versions import VERSION_HEADER
from ..asgi.errors import not_found
from ..asgi.request import Request, Send
from ..request_values import parse_range
from ..units import MIB
from . import versioned
from .state import PeerState
from .storage import Ball

PIECE = MIB
INLINE = 256 * 1024  # smaller slices are read on the loop: a thread hop costs more


def read_inline(peer: PeerState, ball: Ball, limit: int) -> Optional[bytes]:
    """The bytes of exactly ``ball``'s version when it has at most ``limit`` bytes and is not
    disabled (P4 with ``Mictlanx-Inline-Max``, :mod:`mictlanx_sync.protocol.inline`); None
    otherwise, or when its version file is gone (a GC after the lookup): the reader then
    fetches the data with P5. Read on the loop: it is at most ``INLINE_CAP`` bytes."""
    if limit <= 0 or ball.size > limit or ball.is_disabled:
        return None
    if ball.inline:
        return peer.storage.blob(ball.file)
    try:
        fd = os.open(str(peer.storage.path(ball.file)), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.pread(fd, ball.size, 0) if ball.size > 0 else b""
    finally:
        os.close(fd)
    return data if len(data) == ball.size else None


async def handle_get_data(peer: PeerState, req: Request, send: Send, bucket_id: str, key: str) -> None:
    ball = versioned.lookup(peer, req, bucket_id, key)
    if ball.is_disabled:
        raise not_found(f"ball not found: {bucket_id}@{key}", bucket_id=bucket_id, key=key)
    selected = parse_range(req.headers.get("range"), ball.size)
    first, last = selected if selected is not None else (0, ball.size - 1)
    if ball.inline:
        data = peer.storage.blob(ball.file)
        if data is None:  # cannot happen: the record and its bytes go in one transaction
            raise not_found(f"ball not found: {bucket_id}@{key}", bucket_id=bucket_id, key=key)
        await _start(peer, send, ball, selected, first, last)
        await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else data[first:last + 1]})
        return
    try:
        fd = os.open(str(peer.storage.path(ball.file)), os.O_RDONLY)
    except FileNotFoundError:
        raise not_found(f"ball not found: {bucket_id}@{key}", bucket_id=bucket_id, key=key) from None
    try:
        length = last - first + 1
        await _start(peer, send, ball, selected, first, last)
        if req.method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        if length <= INLINE:
            body = os.pread(fd, length, first) if length > 0 else b""
            if len(body) != length:
                raise OSError(f"short read on {ball.file}")
            await send({"type": "http.response.body", "body": body})
            return
        await _stream(fd, first, length, req, send)
    finally:
        os.close(fd)


async def _start(peer: PeerState, send: Send, ball: Ball, selected: Optional[tuple[int, int]], first: int,
                 last: int) -> None:
    """The response head of P5: 200, or 206 with Content-Range for a Range."""
    headers = [
        (b"content-length", str(last - first + 1).encode()),
        (b"content-type", ball.content_type.encode("latin-1")),
        (b"etag", f'"{ball.checksum}"'.encode()),
        (b"accept-ranges", b"bytes"),
        (b"peer-id", peer.config.peer_id.encode()),
        (VERSION_HEADER.lower().encode(), ball.version.encode()),
    ]
    status = 200
    if selected is not None:
        status = 206
        headers.append((b"content-range", f"bytes {first}-{last}/{ball.size}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _stream(fd: int, offset: int, remaining: int, req: Request, send: Send) -> None:
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()

    async def watch() -> None:  # a GET has no body: the next message is the disconnect
        while True:
            message = await req.receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.ensure_future(watch())
    pending: Optional[asyncio.Future[bytes]] = loop.run_in_executor(None, os.pread, fd, min(PIECE, remaining), offset)
    try:
        while remaining > 0:
            assert pending is not None
            piece = await pending
            pending = None
            if not piece:
                raise OSError("short read: the version file ended early")
            offset += len(piece)
            remaining -= len(piece)
            if remaining > 0:
                pending = loop.run_in_executor(None, os.pread, fd, min(PIECE, remaining), offset)
            await send({"type": "http.response.body", "body": piece, "more_body": remaining > 0})
            if gone.is_set():
                return
    finally:
        watcher.cancel()
        if pending is not None:
            try:
                await pending  # the worker still uses fd: wait before it is closed
            except OSError:
                pass
