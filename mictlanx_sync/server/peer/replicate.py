"""P12: push a committed ball to a registered node with P1 (``Update: 1``) and P3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any, AsyncIterator, Optional

from ...protocol.versions import VERSION_HEADER
from ..asgi.errors import HTTPError, not_found
from ..units import MIB
from .state import PeerState
from .storage import Ball

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0


def rank_nodes(nodes: list[dict[str, Any]], bucket_id: str, key: str) -> list[dict[str, Any]]:
    """Rendezvous order of §4.2: score descending, ties by id ascending."""
    def score(node: dict[str, Any]) -> int:
        digest = hashlib.sha256(f"{node['id']}|{bucket_id}@{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return sorted(nodes, key=lambda node: (-score(node), node["id"]))


def pick_node(peer: PeerState, bucket_id: str, key: str, to: Optional[str]) -> dict[str, Any]:
    nodes = [node for node in peer.storage.nodes() if node["id"] != peer.config.peer_id]
    if to is not None:
        for node in nodes:
            if node["id"] == to:
                return node
        raise not_found(f"unknown node: {to}", node_id=to)
    if not nodes:
        raise HTTPError(404, 666, "no node registered to replicate to")
    return rank_nodes(nodes, bucket_id, key)[0]


async def _file_pieces(fd: int, size: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    offset = 0
    while offset < size:
        piece = await loop.run_in_executor(None, os.pread, fd, min(MIB, size - offset), offset)
        if not piece:
            raise OSError("short read")
        offset += len(piece)
        yield piece


async def replicate(peer: PeerState, ball: Ball, node: dict[str, Any]) -> int:
    """Push ``ball`` to ``node``; the elapsed milliseconds. Raises 502/504 on failure."""
    import httpx

    if peer.client is None:
        # Nodes are peers of the same deployment: P12 pushes carry this peer's own token.
        headers = {"Authorization": f"Bearer {peer.config.token}"} if peer.config.token else None
        peer.client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
                                        headers=headers, trust_env=False)
    client = peer.client
    if ball.inline:  # read now, like the fd below: a replacement meanwhile does not affect this push
        data = peer.storage.blob(ball.file)
        if data is None:
            raise not_found(f"ball not found: {ball.bucket_id}@{ball.key}")
        return await _push(client, data, ball, node)
    try:  # opened now: a replacement of the ball meanwhile does not affect this push
        fd = os.open(str(peer.storage.path(ball.file)), os.O_RDONLY)
    except FileNotFoundError:
        raise not_found(f"ball not found: {ball.bucket_id}@{ball.key}") from None
    try:
        return await _push(client, fd, ball, node)
    finally:
        os.close(fd)


async def _push(client: Any, source: int | bytes, ball: Ball, node: dict[str, Any]) -> int:
    """P1 then (unless the node has it) P3 of ``source``: an open version file, or inline bytes."""
    import httpx

    base = f"{node.get('protocol', 'http')}://{node['ip_addr']}:{node['port']}/api/v4"
    started = time.perf_counter()
    try:
        # The replica keeps the version, so both copies order against other writes alike.
        headers = {"Update": "1", **({VERSION_HEADER: ball.version} if ball.version else {})}
        response = await client.post(f"{base}/buckets/{ball.bucket_id}/metadata", json=ball.meta(),
                                     headers=headers)
        if response.status_code != 201:
            raise _failed(node, f"P1 answered {response.status_code}: {response.text[:200]}")
        answer = response.json()
        if not answer.get("exists"):
            response = await client.post(
                f"{base}/buckets/data/{answer['task_id']}/chunked",
                content=source if isinstance(source, bytes) else _file_pieces(source, ball.size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(ball.size)})
            if response.status_code != 201:
                raise _failed(node, f"P3 answered {response.status_code}: {response.text[:200]}")
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
        raise _failed(node, f"{type(exc).__name__}: {exc}") from None
    return int((time.perf_counter() - started) * 1000)


def _failed(node: dict[str, Any], why: str) -> HTTPError:
    return HTTPError(502, 504, f"replication to {node['id']} failed: {why}", node_id=node["id"])
