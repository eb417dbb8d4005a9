"""Router read endpoints: R1, R2, R3, R10, R11, R12, R20 (protocol §P4.3, §P4.5)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional
from urllib.parse import quote

from ...protocol.sizes import format_size
from ..common import HTTPError, not_found, parse_bool, parse_chunk_size, parse_int_query, path_id
from .fanout import Reply, call, fan_out, missing, no_peer_available
from .placement import score
from .registry import PeerEntry
from .state import Request, Response, RouterState, json_response
from .streaming import ClientGone, Opened, PassThrough, StreamBroken, open_first, relay, watch_disconnect


def _best(copies: dict[str, tuple[str, dict]], bucket_id: str, peer_id: str, meta: dict) -> None:
    """Keep, per key, the copy of the highest-ranked peer for ``(bucket_id, key)`` (§P4.3)."""
    key = meta.get("key")
    if not isinstance(key, str):
        return
    current = copies.get(key)
    if current is None or (-score(peer_id, bucket_id, key), peer_id) < (-score(current[0], bucket_id, key),
                                                                        current[0]):
        copies[key] = (peer_id, meta)


def _pinned(st: RouterState, req: Request) -> Optional[PeerEntry]:
    value = req.headers.get("peer-id")
    if value is None:
        return None
    peer_id = path_id(value, "Peer-Id")
    entry = st.registry.get(peer_id)
    if entry is None:
        raise not_found(f"unknown peer: {peer_id}")
    return entry


# --- R1 ------------------------------------------------------------------------------------
async def sizes(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    entries = st.ranked_available(bucket_id, key)
    replies = await fan_out(st.registry, entries, "GET", f"/buckets/{bucket_id}/{key}/size")
    found = []
    for reply in replies:
        if reply.status == 200 and isinstance(reply.body, dict):
            found.append({"bucket_id": bucket_id, "key": key, "peer_id": reply.peer_id,
                          "size": reply.body.get("size", 0)})
    if found:
        return json_response(found)
    raise missing(st.registry, [r.peer_id for r in replies if r.failed], f"{bucket_id}@{key}",
                  bucket_id=bucket_id, key=key)


# --- R2 ------------------------------------------------------------------------------------
async def list_bucket(st: RouterState, req: Request, bucket_id: str) -> Response:
    include = parse_bool(req.query.get("include_disabled"), "include_disabled")
    start = parse_int_query(req.query.get("start"), "start", 0, minimum=0)
    end = parse_int_query(req.query.get("end"), "end", 0)
    after = req.query.get("after")
    if after is not None:
        path_id(after, "after")
    entries = st.registry.available()
    if not entries:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids(), bucket_id=bucket_id)
    params: dict[str, Any] = {"include_disabled": "1" if include else "0", "start": "0"}
    if after is not None:
        params["after"] = after
    if end > 0:
        params["end"] = str(end)
    replies = await fan_out(st.registry, entries, "GET", f"/buckets/{bucket_id}/metadata", params=params)
    copies: dict[str, tuple[str, dict]] = {}
    answered, failed = [], []
    for reply in replies:
        if reply.status == 200 and isinstance(reply.body, dict) and isinstance(reply.body.get("balls"), list):
            answered.append(reply.peer_id)
            for meta in reply.body["balls"]:
                if isinstance(meta, dict):
                    _best(copies, bucket_id, reply.peer_id, meta)
        else:
            failed.append(reply.peer_id)
    balls = [copies[k][1] for k in sorted(copies)]
    balls = balls[start:end] if end > 0 else balls[start:]
    answered.sort()
    return json_response({"bucket_id": bucket_id, "peers_ids": answered, "peer_ids": answered, "balls": balls,
                          "extra": {"failed_peers": sorted(failed)}})


# --- R3 ------------------------------------------------------------------------------------
async def get_metadata(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    path = f"/buckets/{bucket_id}/metadata/{key}"
    pinned = _pinned(st, req)
    if pinned is not None:
        reply = await call(st.registry, pinned, "GET", path)
        if reply.status == 200:
            return json_response(reply.body)
        if reply.failed:
            raise HTTPError(502, 503, f"peer {pinned.peer_id} failed: {reply.msg}", bucket_id=bucket_id, key=key)
        raise not_found(f"{bucket_id}@{key} not found on {pinned.peer_id}", bucket_id=bucket_id, key=key)
    entries = st.ranked_available(bucket_id, key)
    failed: list[str] = []
    for batch in (entries[:3], entries[3:]):
        if not batch:
            continue
        replies = await fan_out(st.registry, batch, "GET", path)
        for reply in replies:
            if reply.status == 200 and isinstance(reply.body, dict):
                return json_response(reply.body)
        failed.extend(r.peer_id for r in replies if r.failed)
    raise missing(st.registry, failed, f"metadata of {bucket_id}@{key}", bucket_id=bucket_id, key=key)


# --- R12 and the listing R10 starts with ------------------------------------------------------
async def _chunks(st: RouterState, bucket_id: str, ball_id: str, include: bool) -> tuple[list[dict], list[str]]:
    entries = st.registry.available()
    replies = await fan_out(st.registry, entries, "GET", f"/buckets/{bucket_id}/metadata/{ball_id}/group",
                            params={"include_disabled": "1" if include else "0"})
    copies: dict[str, tuple[str, dict]] = {}
    failed = []
    for reply in replies:
        if reply.status == 200 and isinstance(reply.body, dict) and isinstance(reply.body.get("balls"), list):
            for meta in reply.body["balls"]:
                if isinstance(meta, dict):
                    _best(copies, bucket_id, reply.peer_id, meta)
        elif reply.status != 404:
            failed.append(reply.peer_id)
    chunks = [meta for _, meta in copies.values()]
    chunks.sort(key=_index_order)
    return chunks, failed


def _index(meta: dict) -> Optional[int]:
    tags = meta.get("tags")
    value = tags.get("index") if isinstance(tags, dict) else None
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _index_order(meta: dict) -> tuple:
    index = _index(meta)
    return (0, index, "") if index is not None else (1, 0, str(meta.get("key", "")))


def _tag(meta: dict, name: str) -> str:
    tags = meta.get("tags")
    value = tags.get(name) if isinstance(tags, dict) else None
    return value if isinstance(value, str) else ""


async def list_chunks(st: RouterState, req: Request, bucket_id: str, ball_id: str) -> Response:
    include = parse_bool(req.query.get("include_disabled"), "include_disabled")
    chunks, failed = await _chunks(st, bucket_id, ball_id, include)
    if not chunks:
        raise missing(st.registry, failed, f"ball {bucket_id}/{ball_id}", bucket_id=bucket_id, ball_id=ball_id)
    total = sum(int(c.get("size", 0) or 0) for c in chunks)
    return json_response({"bucket_id": bucket_id, "ball_id": ball_id, "size": format_size(total),
                          "size_bytes": total, "checksum": _tag(chunks[0], "full_checksum"), "chunks": chunks})


# --- R11 -----------------------------------------------------------------------------------
def _disposition(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.replace('"', "").replace("\r", "").replace("\n", "") or "download"
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _filename(st: RouterState, req: Request, entry: PeerEntry, bucket_id: str, key: str) -> str:
    if req.query.get("filename"):
        return req.query["filename"]
    reply = await call(st.registry, entry, "GET", f"/buckets/{bucket_id}/metadata/{key}")
    meta = reply.body.get("metadata") if reply.status == 200 and isinstance(reply.body, dict) else None
    if isinstance(meta, dict):
        for tag in ("fullname", "filename"):
            if _tag(meta, tag):
                return _tag(meta, tag)
    return f"{bucket_id}_{key}"


def _start(status: int, headers: list[tuple[str, str]]) -> dict:
    return {"type": "http.response.start", "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]}


async def get_data(st: RouterState, req: Request, send: Callable[[dict], Any], bucket_id: str,
                   key: str) -> Optional[Response]:
    attachment = parse_bool(req.query.get("attachment"), "attachment")
    parse_chunk_size(req.headers.get("chunk-size"))
    parse_bool(req.headers.get("force-get"), "Force-Get", default=True)
    pinned = _pinned(st, req)
    candidates = [pinned] if pinned is not None else st.ranked_available(bucket_id, key)
    headers = {"Range": req.headers["range"]} if "range" in req.headers else {}
    try:
        opened, failed = await open_first(st.registry, candidates, f"/buckets/{bucket_id}/{key}", headers)
    except PassThrough as exc:
        out = [("content-type", "application/json")]
        if "content-range" in exc.headers:
            out.append(("content-range", exc.headers["content-range"]))
        return Response(exc.status, exc.body, out)
    if opened is None:
        if pinned is not None:
            if failed:
                raise HTTPError(502, 503, f"peer {pinned.peer_id} failed", bucket_id=bucket_id, key=key)
            raise not_found(f"{bucket_id}@{key} not found on {pinned.peer_id}", bucket_id=bucket_id, key=key)
        raise missing(st.registry, failed, f"{bucket_id}@{key}", bucket_id=bucket_id, key=key)
    try:
        peer = opened.headers
        out = [("content-type", req.query.get("content_type") or peer.get("content-type")
                or "application/octet-stream")]
        for name in ("content-length", "etag", "accept-ranges", "content-range"):
            if name in peer:
                out.append((name, peer[name]))
        out.append(("peer-id", opened.entry.peer_id))
        if attachment:
            out.append(("content-disposition", _disposition(await _filename(st, req, opened.entry, bucket_id, key))))
    except BaseException:
        await opened.aclose()
        raise
    gone = asyncio.ensure_future(watch_disconnect(req.receive))
    try:
        await send(_start(opened.status, out))
        await relay(send, opened, gone=gone)
    finally:
        gone.cancel()
    return None


# --- R10 -----------------------------------------------------------------------------------
async def merge(st: RouterState, req: Request, send: Callable[[dict], Any], bucket_id: str,
                ball_id: str) -> Optional[Response]:
    attachment = parse_bool(req.query.get("attachment"), "attachment")
    parse_chunk_size(req.headers.get("chunk-size"))
    parse_bool(req.headers.get("force-get"), "Force-Get", default=True)
    chunks, failed = await _chunks(st, bucket_id, ball_id, False)
    what = f"ball {bucket_id}/{ball_id}"
    by_index = {}
    for meta in chunks:
        index = _index(meta)
        if index is not None and index not in by_index:
            by_index[index] = meta
    if 0 not in by_index:
        raise missing(st.registry, failed, what, bucket_id=bucket_id, ball_id=ball_id)
    first = by_index[0]
    try:
        count = int(_tag(first, "num_chunks") or "1")
    except ValueError:
        count = 1
    count = max(count, 1)
    if any(i not in by_index for i in range(count)):
        raise missing(st.registry, failed, f"{what}: missing chunks", bucket_id=bucket_id, ball_id=ball_id)
    parts = [by_index[i] for i in range(count)]
    full = _tag(first, "full_checksum")
    if any(_tag(p, "full_checksum") != full for p in parts):
        raise HTTPError(400, 501, f"{what}: chunks of mixed versions", bucket_id=bucket_id, ball_id=ball_id)
    total = sum(int(p.get("size", 0) or 0) for p in parts)
    opened = await _open_chunk(st, bucket_id, parts[0])
    if opened is None:
        raise missing(st.registry, [], f"{what}: chunk 0", bucket_id=bucket_id, ball_id=ball_id)
    out = [("content-type", req.query.get("content_type") or "application/octet-stream"),
           ("content-length", str(total)), ("etag", f'"{full}"')]
    if attachment:
        name = (req.query.get("filename") or _tag(first, "fullname") or _tag(first, "filename")
                or f"{bucket_id}_{ball_id}")
        out.append(("content-disposition", _disposition(name)))
    gone = asyncio.ensure_future(watch_disconnect(req.receive))
    try:
        await send(_start(200, out))
        await relay(send, opened, last=count == 1, gone=gone)
        for i, part in enumerate(parts[1:], start=1):
            if gone.done():
                raise ClientGone()
            next_chunk = await _open_chunk(st, bucket_id, part)
            if next_chunk is None:
                raise StreamBroken(f"{what}: no holder could serve chunk {part.get('key')}")
            await relay(send, next_chunk, last=i == count - 1, gone=gone)
    finally:
        gone.cancel()
    return None


async def _open_chunk(st: RouterState, bucket_id: str, meta: dict) -> Optional[Opened]:
    key = str(meta.get("key"))
    try:
        opened, _ = await open_first(st.registry, st.ranked_available(bucket_id, key), f"/buckets/{bucket_id}/{key}",
                                     {}, expect_size=int(meta.get("size", 0) or 0))
    except PassThrough:
        return None
    return opened


# --- R20 -----------------------------------------------------------------------------------
async def stats(st: RouterState, req: Request) -> Response:
    start = parse_int_query(req.query.get("start"), "start", 0, minimum=0)
    end = parse_int_query(req.query.get("end"), "end", 100)
    entries = st.registry.available()
    if not entries:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids())
    replies: list[Reply] = await fan_out(st.registry, entries, "GET", "/stats",
                                         params={"start": str(start), "end": str(end)})
    return json_response({r.peer_id: r.body for r in sorted(replies, key=lambda r: r.peer_id)
                          if r.status == 200 and isinstance(r.body, dict)})

