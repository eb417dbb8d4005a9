"""Router read endpoints: R1, R2, R3, R10, R11, R12, R20 (protocol §P4.3, §P4.5)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional
from urllib.parse import quote

from ...protocol.direct import DIRECT_HEADER
from ...protocol.inline import INLINE_MAX_HEADER, inline_max
from ...protocol.sizes import format_size
from ..asgi.errors import ClientDisconnected, HTTPError, StreamBroken, not_found
from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from ..grants import grant_query
from ..request_values import parse_bool, parse_chunk_size, parse_int_query, path_id
from . import reconcile
from .fanout import Reply, call, fan_out, fan_out_early, missing, no_peer_available
from .peers import PeerEntry
from .read_relay import Opened, PassThrough, open_first, relay
from .state import RouterState
from .versions import TOMBSTONE_HEADER, VERSION_HEADER, header_version, observe_meta, reply_version

#: R2 answers at most this many balls per call; a longer window (an unpaged listing, or a larger
#: ``end``) is cut with ``extra.truncated`` and ``extra.next_after`` (docs/reliability.md
#: "Listings at scale"). Settable with MICTLANX_ROUTER_MAX_LISTING (no CLI flag yet).
MAX_LISTING = max(1, int(os.environ.get("MICTLANX_ROUTER_MAX_LISTING", "100000")))

#: P6/P7 query flag: peers add their tombstones, so a listing can hide stale copies elsewhere
WITH_TOMBSTONES = {"include_tombstones": "1"}


def _pin_headers(version: Optional[str]) -> dict[str, str]:
    return {VERSION_HEADER: version} if version else {}


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
    pin = header_version(req.headers)
    entries = st.ranked_available(bucket_id, key)
    replies = await fan_out(st.registry, entries, "GET", f"/buckets/{bucket_id}/{key}/size",
                            headers=_pin_headers(pin))
    found = []
    for reply in replies:
        if reply.status == 200 and isinstance(reply.body, dict):
            found.append({"bucket_id": bucket_id, "key": key, "peer_id": reply.peer_id,
                          "size": reply.body.get("size", 0)})
    if found:
        return json_response(found)
    raise missing(st.registry, [r.peer_id for r in replies if r.failed and not r.late], f"{bucket_id}@{key}",
                  late=[r.peer_id for r in replies if r.late], bucket_id=bucket_id, key=key)


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
    capped = end <= 0 or end - start > MAX_LISTING  # else: a page, merged exactly as before
    fetch = start + MAX_LISTING if capped else end
    params: dict[str, Any] = {"include_disabled": "1" if include else "0", "start": "0", **WITH_TOMBSTONES}
    if after is not None:
        params["after"] = after
    if fetch > 0:
        params["end"] = str(fetch)
    replies = await fan_out_early(st.registry, entries, "GET", f"/buckets/{bucket_id}/metadata", params=params,
                                  decides=reconcile.listing_decides, stream=True)
    visible, answered = reconcile.merge_listings(st, bucket_id, replies)
    # late peers (silent for the grace after a listing showed something) are listed as failed
    failed = [r.peer_id for r in replies if r.peer_id not in answered]
    balls = sorted(visible, key=lambda meta: str(meta["key"]))
    extra: dict[str, Any] = {"failed_peers": sorted(failed)}
    if capped:
        balls, next_after = _cap(replies, answered, balls, start, fetch)
        if next_after is not None:
            extra.update(truncated=True, next_after=next_after)
    else:
        balls = balls[start:end] if end > 0 else balls[start:]
    answered.sort()
    return json_response({"bucket_id": bucket_id, "peers_ids": answered, "peer_ids": answered, "balls": balls,
                          "extra": extra})


def _cap(replies: list[Reply], answered: list[str], balls: list[dict], start: int,
         fetch: int) -> tuple[list[dict], Optional[str]]:
    """``balls[start:]`` cut to ``MAX_LISTING``, and the key to continue ``after`` (None: complete).

    A peer that sent all ``fetch`` rows asked for may hold more: the merge is exact only up to
    the smallest last key among such peers, so entries beyond it are dropped and the listing
    continues from it.
    """
    bound: Optional[str] = None
    for reply in replies:
        rows = reply.body.get("balls") if reply.peer_id in answered and isinstance(reply.body, dict) else None
        if isinstance(rows, list) and len(rows) >= fetch and rows and isinstance(rows[-1], dict):
            last = str(rows[-1].get("key"))
            bound = last if bound is None else min(bound, last)
    if bound is not None:
        balls = [meta for meta in balls if str(meta["key"]) <= bound]
    page = balls[start:start + MAX_LISTING]
    if len(balls) > start + MAX_LISTING:
        return page, str(page[-1]["key"])
    return page, bound


# --- R3 ------------------------------------------------------------------------------------
async def get_metadata(st: RouterState, req: Request, bucket_id: str, key: str) -> Response:
    """R3: the newest visible version across peers, or exactly the pinned one (consistency §2.2)."""
    version = header_version(req.headers)
    pinned = _pinned(st, req)
    limit = inline_max(req.headers.get(INLINE_MAX_HEADER.lower()))  # small balls come with their bytes
    res = await reconcile.resolve(st, bucket_id, key, version, [pinned] if pinned is not None else None,
                                  extra_headers={INLINE_MAX_HEADER: str(limit)} if limit else None)
    if res.best is None:
        raise _unresolved(st, res, pinned, f"metadata of {bucket_id}@{key}", bucket_id=bucket_id, key=key)
    body = res.best.body
    body.setdefault("version", res.version)
    return json_response(body, headers={VERSION_HEADER: res.version} if res.version else None)


def _unresolved(st: RouterState, res: reconcile.Resolution, pinned: Optional[PeerEntry], what: str,
                **extra: Any) -> HTTPError:
    """The error for a key no asked peer serves: §4.3 outcomes, or the ``Peer-Id`` ones."""
    if pinned is None:
        return reconcile.not_found(st, res, what, **extra)
    if res.failed or res.late:
        return HTTPError(502, 503, f"peer {pinned.peer_id} failed", **extra)
    headers = {TOMBSTONE_HEADER: res.tombstone} if res.tombstone else None
    return HTTPError(404, 404, f"{what} not found on {pinned.peer_id}", headers=headers, **extra)


# --- R12 and the listing R10 starts with ------------------------------------------------------
async def _chunks(st: RouterState, bucket_id: str, ball_id: str, include: bool) -> tuple[list[dict], list[str]]:
    entries = st.registry.available()
    replies = await fan_out_early(st.registry, entries, "GET", f"/buckets/{bucket_id}/metadata/{ball_id}/group",
                                  params={"include_disabled": "1" if include else "0", **WITH_TOMBSTONES},
                                  decides=reconcile.listing_decides, stream=True)
    chunks, _ = reconcile.merge_listings(st, bucket_id, replies)
    failed = [r.peer_id for r in replies if r.status != 200 and r.status != 404 and not r.late]
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


async def _filename(st: RouterState, req: Request, entry: PeerEntry, bucket_id: str, key: str,
                    version: Optional[str]) -> str:
    if req.query.get("filename"):
        return req.query["filename"]
    reply = await call(st.registry, entry, "GET", f"/buckets/{bucket_id}/metadata/{key}",
                       headers=_pin_headers(version))
    meta = reply.body.get("metadata") if reply.status == 200 and isinstance(reply.body, dict) else None
    if isinstance(meta, dict):
        for tag in ("fullname", "filename"):
            if _tag(meta, tag):
                return _tag(meta, tag)
    return f"{bucket_id}_{key}"


def _start(status: int, headers: list[tuple[str, str]]) -> dict:
    return {"type": "http.response.start", "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]}


async def get_data(st: RouterState, req: Request, bucket_id: str, key: str) -> Optional[Response]:
    attachment = parse_bool(req.query.get("attachment"), "attachment")
    parse_chunk_size(req.headers.get("chunk-size"))
    parse_bool(req.headers.get("force-get"), "Force-Get", default=True)
    version = header_version(req.headers)
    pinned = _pinned(st, req)
    candidates, failed_before, version = await _read_plan(st, bucket_id, key, version, pinned)
    # A direct read (docs/protocol-extensions.md §3): whole objects only, in their own type.
    if req.headers.get(DIRECT_HEADER.lower()) == "1" and version and not attachment \
            and "range" not in req.headers and not req.query.get("content_type"):
        redirect = await _redirect(st, candidates, bucket_id, key, version)
        if redirect is not None:
            return redirect
    headers = {"Range": req.headers["range"]} if "range" in req.headers else {}
    headers.update(_pin_headers(version))
    try:
        opened, failed = await open_first(st.registry, candidates, f"/buckets/{bucket_id}/{key}", headers)
    except PassThrough as exc:
        passed = {"content-type": "application/json"}
        if "content-range" in exc.headers:
            passed["content-range"] = exc.headers["content-range"]
        return Response(exc.status, exc.body, passed)
    if opened is None:
        failed = sorted(set(failed) | set(failed_before))
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
        if version:
            out.append((VERSION_HEADER, version))
        if attachment:
            name = await _filename(st, req, opened.entry, bucket_id, key, version)
            out.append(("content-disposition", _disposition(name)))
    except BaseException:
        await opened.aclose()
        raise
    gone = asyncio.ensure_future(req.wait_disconnect())
    try:
        await req.send(_start(opened.status, out))
        await relay(req.send, opened, gone=gone)
    finally:
        gone.cancel()
    return None


async def _redirect(st: RouterState, candidates: list[PeerEntry], bucket_id: str, key: str,
                    version: str) -> Optional[Response]:
    """307 to the first candidate holding ``version`` readable (P4 pinned says so), with a read
    grant when peers need the token; None when no candidate qualifies (then R11 streams, and
    fails over, as usual). A peer the router may not send the token to gets no grant either."""
    token = st.registry.client.peer_token
    path = f"/api/v4/buckets/{bucket_id}/{key}"
    for entry in candidates:
        if token and not entry.trusted:
            continue
        reply = await call(st.registry, entry, "GET", f"/buckets/{bucket_id}/metadata/{key}",
                           headers=_pin_headers(version))
        meta = reply.body.get("metadata") if reply.status == 200 and isinstance(reply.body, dict) else None
        if not isinstance(meta, dict) or meta.get("is_disabled") or reply_version(reply, st.clock) != version:
            continue
        location = entry.client_url + path + (f"?{grant_query(token, path, version)}" if token else "")
        return Response(307, b"", {"location": location, VERSION_HEADER: version, "peer-id": entry.peer_id,
                                   "cache-control": "no-store"})
    return None


async def _read_plan(st: RouterState, bucket_id: str, key: str, version: Optional[str],
                     pinned: Optional[PeerEntry]) -> tuple[list[PeerEntry], list[str], Optional[str]]:
    """Where R11 reads from and which version: ``(candidates, peers that failed, version)``.

    Pinned: every holder in ranking order, as the spec walks them. Unpinned: the version is
    resolved as R3 does, then read pinned from the peers that reported it (then those whose
    lookup failed), so a stale copy on a peer that missed a write or delete is never served.
    """
    if version is not None:
        return ([pinned] if pinned is not None else st.ranked_available(bucket_id, key)), [], version
    res = await reconcile.resolve(st, bucket_id, key, None, [pinned] if pinned is not None else None)
    if res.best is None:
        raise _unresolved(st, res, pinned, f"{bucket_id}@{key}", bucket_id=bucket_id, key=key)
    if not res.version:  # peers without versions: read the legacy copy as before
        return res.holders, res.failed, None
    retry = [e for e in st.ranked_available(bucket_id, key) if e.peer_id in res.failed]
    return [*res.holders, *retry], [], res.version


# --- R10 -----------------------------------------------------------------------------------
async def merge(st: RouterState, req: Request, bucket_id: str, ball_id: str) -> None:
    attachment = parse_bool(req.query.get("attachment"), "attachment")
    parse_chunk_size(req.headers.get("chunk-size"))
    parse_bool(req.headers.get("force-get"), "Force-Get", default=True)
    pin = header_version(req.headers)
    chunks, failed = await _chunks(st, bucket_id, ball_id, False)
    what = f"ball {bucket_id}/{ball_id}"
    by_index = {}
    for meta in chunks:
        index = _index(meta)
        if index is not None and index not in by_index:
            by_index[index] = meta
    # Unpinned: the ball's version is chunk 0's newest visible version (what R3 would answer).
    version = pin if pin is not None else (observe_meta(by_index[0]) if 0 in by_index else None)
    if pin:
        await _pin_parts(st, bucket_id, ball_id, by_index, pin, (0,), strict=True)
    if 0 not in by_index:
        raise missing(st.registry, failed, what, bucket_id=bucket_id, ball_id=ball_id)
    first = by_index[0]
    try:
        count = int(_tag(first, "num_chunks") or "1")
    except ValueError:
        count = 1
    count = max(count, 1)
    if version:
        await _pin_parts(st, bucket_id, ball_id, by_index, version, range(1, count), strict=pin is not None)
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
           ("content-length", str(total)), ("etag", f'"{full}"'), *([(VERSION_HEADER, version)] if version else [])]
    if attachment:
        name = (req.query.get("filename") or _tag(first, "fullname") or _tag(first, "filename")
                or f"{bucket_id}_{ball_id}")
        out.append(("content-disposition", _disposition(name)))
    gone = asyncio.ensure_future(req.wait_disconnect())
    try:
        await req.send(_start(200, out))
        await relay(req.send, opened, last=count == 1, gone=gone)
        for i, part in enumerate(parts[1:], start=1):
            if gone.done():
                raise ClientDisconnected()
            next_chunk = await _open_chunk(st, bucket_id, part)
            if next_chunk is None:
                raise StreamBroken(f"{what}: no holder could serve chunk {part.get('key')}")
            await relay(req.send, next_chunk, last=i == count - 1, gone=gone)
    finally:
        gone.cancel()
    return None


async def _pin_parts(st: RouterState, bucket_id: str, ball_id: str, by_index: dict[int, dict], version: str,
                     indexes: Any, *, strict: bool) -> None:
    """Make ``by_index[i]`` the metadata of version ``version`` for every ``i`` in ``indexes``:
    entries the listing shows at another version (an older, longer object; chunks staged at
    ``version`` whose commit has not reached every peer) are looked up pinned (P4).

    When no peer has chunk ``i`` at ``version``: ``strict`` (the client pinned it) drops the
    entry; otherwise the listing's newest visible version stays, because chunks that an upstream
    client wrote as separate puts each got their own version from the router. Mixing is still
    caught by the ``full_checksum`` check (§5 rule 3), and each chunk is read pinned to the
    version chosen here, so a stale copy is never served."""
    wrong = [i for i in indexes if i not in by_index or observe_meta(by_index[i]) != version]
    keys = [str(by_index[i]["key"]) if i in by_index else f"{ball_id}_{i}" for i in wrong]
    found = await asyncio.gather(*(reconcile.resolve(st, bucket_id, key, version) for key in keys))
    for index, res in zip(wrong, found, strict=True):
        meta = res.best.body.get("metadata") if res.best is not None else None
        if isinstance(meta, dict):
            meta.setdefault("version", version)
            by_index[index] = meta
        elif strict:
            by_index.pop(index, None)


async def _open_chunk(st: RouterState, bucket_id: str, meta: dict) -> Optional[Opened]:
    """Open chunk ``meta`` pinned to its version (unpinned for a legacy chunk), holders in ranking order."""
    key = str(meta.get("key"))
    try:
        opened, _ = await open_first(st.registry, st.ranked_available(bucket_id, key), f"/buckets/{bucket_id}/{key}",
                                     _pin_headers(observe_meta(meta)), expect_size=int(meta.get("size", 0) or 0))
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

