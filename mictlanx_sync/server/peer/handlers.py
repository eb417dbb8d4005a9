"""Peer endpoints (protocol §3.3): each takes ``(peer, req, *path)`` and returns its answer; the data
streams (P2/P3 in ``upload``, P5 in ``download``) send theirs through ``req.send``."""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator, Optional

from ...protocol.ids import new_task_id
from ...protocol.inline import INLINE_FIELD, INLINE_MAX_HEADER, encode_inline, inline_max
from ...protocol.versions import VERSION_HEADER
from ..asgi.errors import HTTPError, bad_request, not_found
from ..asgi.request import Request
from ..asgi.responses import Answer, StreamedJSON, dumps, empty, json_response
from ..phase2 import inline_write
from ..request_values import header_task_id, parse_bool, parse_if_match, parse_int_query, path_id, path_task_id
from . import download, lww, replicate, upload, versioned, versionstore
from .state import PeerState
from .storage import Ball
from .tasks import Task
from .validation import parse_node, parse_put_metadata


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _include_disabled(req: Request) -> bool:
    return parse_bool(req.query.get("include_disabled"), "include_disabled")


def _window(req: Request, default_end: int = 0) -> tuple[int, int]:
    start = parse_int_query(req.query.get("start"), "start", 0, minimum=0)
    end = parse_int_query(req.query.get("end"), "end", default_end)
    return start, end


def _after_pair(req: Request) -> Optional[tuple[str, str]]:
    value = req.query.get("after")
    if value is None:
        return None
    bucket_id, sep, key = value.partition("@")
    if not sep:
        raise bad_request(f"invalid after: {value!r} (expected bucket_id@key)")
    return path_id(bucket_id, "after bucket_id"), path_id(key, "after key")


def _limit(start: int, end: int) -> Optional[int]:
    """The rows of the ``[start:end]`` window (§2.7); None: to the end."""
    return None if end <= 0 else max(0, end - start)


class _Listed:
    """What a streamed listing has sent so far: the count and the last ball."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Optional[Ball] = None


def _items(peer: PeerState, bucket_id: Optional[str], include: bool, after: Any, start: int,
           limit: Optional[int], render: Callable[[Ball], bytes], listed: _Listed) -> Iterator[bytes]:
    """The rendered balls of a listing window, comma-separated, one keyset batch at a time."""
    sep = b""
    for batch in peer.storage.scan(bucket_id, include_disabled=include, after=after, start=start, limit=limit):
        yield sep + b",".join(render(b) for b in batch)
        sep = b","
        listed.count += len(batch)
        listed.last = batch[-1]


def _missing(bucket_id: str, key: str) -> HTTPError:
    return not_found(f"ball not found: {bucket_id}@{key}", bucket_id=bucket_id, key=key)


def _committed(peer: PeerState, bucket_id: str, key: str) -> Ball:
    ball = peer.storage.get(bucket_id, key)
    if ball is None:
        raise _missing(bucket_id, key)
    return ball


#: ``Mictlanx-Client``: the address a router forwards for its client (trusted only with the peer token)
CLIENT_HEADER = "mictlanx-client"
_CLIENT = re.compile(r"[0-9A-Za-z:._\[\]-]{1,64}")


def client_of(peer: PeerState, req: Request) -> str:
    """Whom a reservation is counted against: the TCP peer address, or, when the peer requires a
    token (so only token holders, i.e. routers and operators, get here), ``Mictlanx-Client``."""
    forwarded = req.headers.get(CLIENT_HEADER)
    if forwarded and peer.config.token and _CLIENT.fullmatch(forwarded):
        return forwarded
    client = req.scope.get("client")
    return str(client[0]) if client else ""


def _admit(peer: PeerState, size: int, client: str, bucket_id: str, key: str) -> None:
    """507/502 unless ``size`` fits and ``client`` stays within its cap of not-yet-streaming reservations."""
    tasks = peer.tasks
    why: Optional[str] = None
    for attempt in (0, 1):
        if attempt:
            tasks.purge(force=True)  # expired tasks and timed-out reservations may still count
        pending = tasks.pending_of(client)
        cap = peer.max_pending_per_client()
        why = peer.fits(size)
        if why is None and pending and pending + size > cap:
            why = (f"client {client} already holds {pending} bytes in reservations whose phase 2 has not started "
                   f"(cap {cap} bytes)")
        if why is None:
            return
    raise HTTPError(507, 502, why or "insufficient storage", bucket_id=bucket_id, key=key)


# --- phase 1 and 2 -----------------------------------------------------------------------------
async def put_metadata(peer: PeerState, req: Request, bucket_id: str) -> Answer:
    """P1: validate, apply the existing-key rules (§3.2, or LWW when versioned), reserve capacity, create a task."""
    started = time.perf_counter()
    requested_id = header_task_id(req.headers.get("task-id"))
    update = parse_bool(req.headers.get("update"), "Update")
    version = lww.header_version(req)
    staged = lww.header_stage(req)
    body = await req.json()
    meta = parse_put_metadata(body, bucket_id)
    key, size, checksum = meta.pop("key"), meta.pop("size"), meta.pop("checksum")
    inline = inline_write(body, size, checksum)  # checked before anything is reserved or stored
    config, tasks, storage = peer.config, peer.tasks, peer.storage
    if size > config.max_ball_size:
        raise HTTPError(413, 400, f"size {size} exceeds the peer's max_ball_size {config.max_ball_size}")
    tasks.purge()
    if requested_id is not None and requested_id in tasks:
        raise HTTPError(409, 405, f"a pending task with id {requested_id} exists", task_id=requested_id)
    versioned = version is not None
    peer.clock.observe(version)
    outcome = lww.NEW
    if versioned or staged:
        version = version or peer.clock.next()
        outcome = lww.check_write(storage, bucket_id, key, meta["ball_id"], size, checksum, version, staged, update)
    else:
        version, outcome = _unversioned_write(peer, bucket_id, key, size, checksum, meta, update)
    exists = outcome != lww.NEW
    client = client_of(peer, req)
    if not exists:
        _admit(peer, size, client, bucket_id, key)
    task_id = requested_id
    while task_id is None or task_id in tasks.tasks:
        task_id = new_task_id()
    if outcome == lww.SHARE:  # identical content at a newer version: committed now, sharing the file
        current = _committed(peer, bucket_id, key)
        versionstore.commit_current(storage, Ball(bucket_id, key, size, checksum, task_id=task_id,
                                                  file=current.file, version=version, **meta))
    ttl = config.exists_ttl if exists else config.task_ttl
    now = time.monotonic()
    task = Task(task_id, bucket_id, key, size, checksum, meta, update, exists, now + ttl, version=version,
                staged=staged, versioned=versioned, client=client, reserve_until=now + config.reserve_timeout)
    tasks.add(task)
    answer: dict[str, Any] = {"key": key, "service_time": _ms(started), "task_id": task_id,
                              "node_id": config.peer_id, "exists": exists, "version": version}
    if inline is not None:  # phase 2 now, from the bytes that came with this request
        claimed = tasks.claim(task_id)
        assert claimed is task  # added above, with no await in between
        answer.update(await upload.store_inline(peer, task, inline), committed=True,
                      service_time=_ms(started))
    return json_response(answer, 201, {VERSION_HEADER: version})


def _unversioned_write(peer: PeerState, bucket_id: str, key: str, size: int, checksum: str,
                       meta: dict[str, Any], update: bool) -> tuple[str, str]:
    """The §3.2 table for a write without ``Mictlanx-Version``: (version, EXISTS or NEW).

    Same content is an idempotent retry of the current version (with ``Update``, its
    metadata is replaced in place); new content gets a version from the peer's clock,
    which has observed every stored version, so it sorts after the current one.
    """
    current = peer.storage.get(bucket_id, key)
    if current is None:
        return peer.clock.next(), lww.NEW
    if (current.size, current.checksum) == (size, checksum):
        if update:
            for name, value in meta.items():
                setattr(current, name, value)
            peer.storage.essential(peer.storage.update_meta, current)
        return current.version, lww.EXISTS
    if not update:
        raise HTTPError(409, 405, f"{bucket_id}@{key} exists with different content (use Update: 1)",
                        bucket_id=bucket_id, key=key)
    return peer.clock.next(), lww.NEW


async def put_data_raw(peer: PeerState, req: Request, task_id: str) -> None:
    """P3 (streamed: the answer is sent by ``upload``)."""
    await upload.handle_phase2(peer, req, req.send, path_task_id(task_id), multipart=False)


async def put_data_multipart(peer: PeerState, req: Request, task_id: str) -> None:
    """P2 (streamed: the answer is sent by ``upload``)."""
    await upload.handle_phase2(peer, req, req.send, path_task_id(task_id), multipart=True)


# --- reads -----------------------------------------------------------------------------------------
async def get_data(peer: PeerState, req: Request, bucket_id: str, key: str) -> None:
    """P5 (streamed by ``download``)."""
    await download.handle_get_data(peer, req, req.send, bucket_id, key)


async def get_metadata(peer: PeerState, req: Request, bucket_id: str, key: str) -> Answer:
    """P4: disabled balls included."""
    started = time.perf_counter()
    ball = versioned.lookup(peer, req, bucket_id, key)
    peer_id = peer.config.peer_id
    answer = {"service_time": _ms(started), "peer_id": peer_id, "local_peer_id": peer_id,
              "metadata": ball.meta(), "version": ball.version}
    inline = download.read_inline(peer, ball, inline_max(req.headers.get(INLINE_MAX_HEADER.lower())))
    if inline is not None:
        answer[INLINE_FIELD] = encode_inline(inline)
    return json_response(answer, headers={VERSION_HEADER: ball.version})


async def get_size(peer: PeerState, req: Request, bucket_id: str, key: str) -> Answer:
    """P11."""
    ball = versioned.lookup(peer, req, bucket_id, key)
    return json_response({"bucket_id": bucket_id, "key": key, "peer_id": peer.config.peer_id, "size": ball.size},
                         headers={VERSION_HEADER: ball.version})


async def list_bucket(peer: PeerState, req: Request, bucket_id: str) -> Answer:
    """P6, streamed from keyset batches (a bucket of any size costs one batch of memory)."""
    after = req.query.get("after")
    if after is not None:
        after = path_id(after, "after")
    start, end = _window(req)
    include, tombstones = _include_disabled(req), versioned.include_tombstones(req)
    limit = _limit(start, end)
    listed = _Listed()

    def pieces() -> Iterator[bytes]:
        yield b'{"peer_id":' + dumps(peer.config.peer_id) + b',"balls":['
        yield from _items(peer, bucket_id, include, after, start, limit, lambda b: dumps(b.meta()), listed)
        yield b"]"
        if tombstones:
            # The key tombstones of the window these keys came from: after the cursor and, when
            # the page was cut short by its end, up to its last key (the next page has the rest).
            upto = listed.last.key if listed.last is not None and listed.count == limit else None
            yield b',"tombstones":' + dumps(versionstore.tombstones_in_bucket(peer.storage, bucket_id, after, upto))
        yield b"}"

    return StreamedJSON(200, pieces())


def _group(peer: PeerState, req: Request, bucket_id: str, ball_id: str) -> list[Ball]:
    return peer.storage.group(bucket_id, ball_id, include_disabled=_include_disabled(req))


async def get_group(peer: PeerState, req: Request, bucket_id: str, ball_id: str) -> Answer:
    """P7: 404 when no ball has this ball_id."""
    balls = _group(peer, req, bucket_id, ball_id)
    tombstones = (versionstore.tombstones_of_ball_id(peer.storage, bucket_id, ball_id)
                  if versioned.include_tombstones(req) else None)
    if not balls and not tombstones:  # a tombstone alone is an answer: it proves a delete
        raise not_found(f"no balls with ball_id {ball_id} in {bucket_id}", bucket_id=bucket_id, ball_id=ball_id)
    body: dict[str, Any] = {"bucket_id": bucket_id, "ball_id": ball_id, "size": sum(b.size for b in balls),
                            "balls": [b.meta() for b in balls]}
    if tombstones is not None:
        body["tombstones"] = tombstones
    return json_response(body)


async def get_chunks(peer: PeerState, req: Request, bucket_id: str, ball_id: str) -> Answer:
    """P22: P7's selection as a bare array."""
    balls = _group(peer, req, bucket_id, ball_id)
    return json_response([b.meta() for b in balls])


# --- changes -------------------------------------------------------------------------------------
async def delete_key(peer: PeerState, req: Request, bucket_id: str, key: str) -> Answer:
    """P8: the optional If-Match and Task-Id preconditions; or a tombstone, or one exact version
    (with ``Mictlanx-Drop-Current``, the current one: docs/rebalancing.md §4)."""
    parse_bool(req.headers.get("force"), "Force")
    if_match = parse_if_match(req.headers.get("if-match"))
    task_id = header_task_id(req.headers.get("task-id"))
    version, if_version = versioned.delete_headers(req)
    drop_current = versioned.drop_current_requested(req, if_version)

    def preconditions(ball: Ball) -> None:
        if if_match is not None and if_match != ball.checksum:
            raise HTTPError(412, 405, "If-Match precondition failed: the checksum differs", bucket_id=bucket_id,
                            key=key)
        if task_id is not None and task_id != ball.task_id:
            raise HTTPError(412, 405, "Task-Id precondition failed: another task committed this version",
                            bucket_id=bucket_id, key=key)

    if version is not None:
        return versioned.tombstone_key(peer, bucket_id, key, version, preconditions)
    if if_version is not None and drop_current:
        return versioned.drop_current_version(peer, bucket_id, key, if_version, preconditions)
    if if_version is not None:
        return versioned.drop_key_version(peer, bucket_id, key, if_version)
    ball = peer.storage.get(bucket_id, key)
    if ball is None:
        raise not_found(f"ball not found: {bucket_id}@{key}", headers={"n-deletes": "0"}, bucket_id=bucket_id,
                        key=key)
    preconditions(ball)
    peer.storage.essential(peer.storage.delete, bucket_id, key)
    return json_response({"n_deletes": 1, "key": key}, headers={"n-deletes": "1", "ETag": f'"{ball.checksum}"'})


async def delete_ball_id(peer: PeerState, req: Request, bucket_id: str, ball_id: str) -> Answer:
    """P9: every current ball of the ball_id; or a tombstone, or one exact version of each."""
    parse_bool(req.headers.get("force"), "Force")
    version, if_version = versioned.delete_headers(req)
    versioned.refuse_drop_current_of_ball_id(req)
    if version is not None:
        return versioned.tombstone_ball_id(peer, bucket_id, ball_id, version)
    if if_version is not None:
        return versioned.drop_ball_id_version(peer, bucket_id, ball_id, if_version)
    count = len(peer.storage.essential(peer.storage.delete_ball_id, bucket_id, ball_id))
    return json_response({"n_deletes": count, "ball_id": ball_id}, headers={"n-deletes": str(count)})


async def disable(peer: PeerState, req: Request, bucket_id: str, key: str) -> Answer:
    """P10."""
    if not peer.storage.essential(peer.storage.disable, bucket_id, key):
        raise _missing(bucket_id, key)
    return empty(204)


async def replicate_ball(peer: PeerState, req: Request, bucket_id: str, key: str) -> Answer:
    """P12."""
    to = req.query.get("to")
    if to is not None:
        to = path_id(to, "to")
    ball = _committed(peer, bucket_id, key)
    node = replicate.pick_node(peer, bucket_id, key, to)
    elapsed = await replicate.replicate(peer, ball, node)
    return json_response({"peer_id": peer.config.peer_id, "replica_peer_id": node["id"], "bucket_id": bucket_id,
                          "key": key, "size": ball.size, "ok": True, "response_time": elapsed})


# --- stats and inventory ------------------------------------------------------------------------
def _disk(peer: PeerState) -> tuple[int, int, float]:
    total, used = peer.total_disk(), peer.storage.used
    return total, used, (used / total if total > 0 else 0.0)


async def stats(peer: PeerState, req: Request) -> Answer:
    """P13: exactly seven keys; ``balls`` streamed."""
    start, end = _window(req, default_end=100)
    include = _include_disabled(req)
    total, used, uf = _disk(peer)
    head = {"peer_id": peer.config.peer_id, "used_disk": used, "total_disk": total,
            "available_disk": max(0, total - used), "disk_uf": uf}

    def pieces() -> Iterator[bytes]:
        yield dumps(head)[:-1] + b',"balls":['
        yield from _items(peer, None, include, None, start, _limit(start, end), lambda b: dumps(b.meta()), _Listed())
        yield b'],"peers":' + dumps([node["id"] for node in peer.storage.nodes()]) + b"}"

    return StreamedJSON(200, pieces())


async def ufs(peer: PeerState, req: Request) -> Answer:
    """P14."""
    total, used, uf = _disk(peer)
    return json_response({"total_disk": total, "used_disk": used, "disk_uf": uf})


def _inventory(peer: PeerState, req: Request, render: Callable[[Ball], bytes], *, after: bool = True,
               listed: Optional[_Listed] = None) -> Iterator[bytes]:
    """The comma-separated rendered balls of an inventory window (P15, P16, P18), streamed.
    The query is parsed at the call, so a bad one is a 400 before anything is sent."""
    include = _include_disabled(req)
    position = _after_pair(req) if after else None
    start, end = _window(req)
    return _items(peer, None, include, position, start, _limit(start, end), render, listed or _Listed())


async def xballs(peer: PeerState, req: Request) -> Answer:
    """P15."""
    items = _inventory(peer, req, lambda b: dumps({"bucket_id": b.bucket_id, "key": b.key, "size": b.size}))
    return StreamedJSON(200, _array(items))


async def xballs_size(peer: PeerState, req: Request) -> Answer:
    """P16."""
    items = _inventory(peer, req, lambda b: dumps([b.bucket_id, b.key, b.size]))
    return StreamedJSON(200, _array(items))


def _array(items: Iterator[bytes]) -> Iterator[bytes]:
    yield b"["
    yield from items
    yield b"]"


async def balls_len(peer: PeerState, req: Request) -> Answer:
    """P17."""
    return json_response({"len": peer.storage.count(include_disabled=_include_disabled(req))})


async def peers_state(peer: PeerState, req: Request) -> Answer:
    """P18: this peer and the P19 nodes; the balls paginated (and streamed)."""
    me = peer.config.peer_id
    items = _inventory(peer, req, lambda b: dumps(f"{b.bucket_id}@{b.key}") + b":"
                       + dumps({"locations": [me], "size": b.size}), after=False)
    server = req.scope.get("server") or (peer.config.host, peer.config.port)
    nodes = [{"node_id": me, "ip_addr": server[0], "port": int(server[1] or 0)}]
    nodes += [{"node_id": n["id"], "ip_addr": n["ip_addr"], "port": n["port"]}
              for n in peer.storage.nodes() if n["id"] != me]

    def pieces() -> Iterator[bytes]:
        yield b'{"nodes":' + dumps(nodes) + b',"balls":{'
        yield from items
        yield b"}}"

    return StreamedJSON(200, pieces())


# --- nodes, tasks, health ------------------------------------------------------------------------
async def register_node(peer: PeerState, req: Request) -> Answer:
    """P19: persisted; re-registering an id replaces it."""
    node = parse_node(await req.json())
    peer.storage.put_node(node)
    return json_response({k: v for k, v in node.items() if k != "protocol"}, 201)


async def flush_tasks(peer: PeerState, req: Request) -> Answer:
    """P20."""
    peer.tasks.flush()
    return empty(204)


async def cancel_task(peer: PeerState, req: Request, task_id: str) -> Answer:
    """P23."""
    task_id = path_task_id(task_id)
    if not peer.tasks.cancel(task_id):
        raise not_found(f"no pending task {task_id}", task_id=task_id)
    return empty(204)


async def health(peer: PeerState, req: Request) -> Answer:
    """P21."""
    answer = {"status": "ok", "peer_id": peer.config.peer_id}
    if peer.config.advertise_url:
        answer["advertise_url"] = peer.config.advertise_url
    return json_response(answer)
