"""Data reads with failover (R10/R11, and the holder a repair or a move copies from).

Holders are tried in ranking order; a holder is abandoned on 404, on a transport error or on a
5xx *before the first body byte*, or when its first byte has not come within
``peer_first_byte_timeout`` (then it is marked unavailable). Reads are hedged: when a holder has
not produced its first byte ``fanout_grace`` after it was asked, the next holder is asked too
and the first to answer serves the read (the other is closed). Once bytes went out, a broken
upstream stream aborts the client connection (no terminating chunk, :class:`StreamBroken`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

from ..asgi.errors import ClientDisconnected, StreamBroken
from .peer_client import STREAM_ERRORS
from .peers import PeerEntry
from .registry import PeerDown, PeerTimeout, Registry


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
