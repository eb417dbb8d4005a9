"""The version-aware parts of the peer endpoints (docs/consistency.md §2.2-§2.4).

Pinned lookups for P4/P5/P11, versioned and exact-version deletes for P8/P9 (and the
rebalancer's drop of exactly the current version, docs/rebalancing.md §4), the tombstones
of P6/P7, and P24 (commit a ball_id at a version).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ...protocol.versions import DROP_CURRENT_HEADER, IF_VERSION_HEADER, TOMBSTONE_HEADER, VERSION_HEADER
from ..asgi.errors import HTTPError, not_found
from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from ..request_values import parse_bool
from . import lww, versionstore
from .state import PeerState
from .storage import STAGED, SUPERSEDED, Ball


def _missing(peer: PeerState, bucket_id: str, key: str, version: Optional[str]) -> HTTPError:
    """404 for a key; names the hiding tombstone (header and field) when an unpinned read finds one."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    buried = "" if version is not None else versionstore.hidden_by(peer.storage, bucket_id, key)
    if buried:
        headers[TOMBSTONE_HEADER] = buried
        extra["tombstone"] = buried
    if version is not None:
        extra["version"] = version
    return not_found(f"ball not found: {bucket_id}@{key}" + (f" at version {version}" if version else ""),
                     headers=headers, bucket_id=bucket_id, key=key, **extra)


def lookup(peer: PeerState, req: Request, bucket_id: str, key: str) -> Ball:
    """The version a read serves: exactly the pinned one (any state), else the current one; or 404."""
    version = lww.header_version(req)
    if version is not None:
        peer.clock.observe(version)
        ball = versionstore.find(peer.storage, bucket_id, key, version)
    else:
        ball = peer.storage.get(bucket_id, key)
    if ball is None:
        raise _missing(peer, bucket_id, key, version)
    return ball


def include_tombstones(req: Request) -> bool:
    return parse_bool(req.query.get("include_tombstones"), "include_tombstones")


# --- deletes ------------------------------------------------------------------------------------------
def delete_headers(req: Request) -> tuple[Optional[str], Optional[str]]:
    """(``Mictlanx-Version``, ``Mictlanx-If-Version``) of P8/P9; both together is 400/400."""
    version, if_version = lww.header_version(req), lww.header_if_version(req)
    if version is not None and if_version is not None:
        raise HTTPError(400, 400, "Mictlanx-Version and Mictlanx-If-Version cannot be combined")
    return version, if_version


def drop_current_requested(req: Request, if_version: Optional[str]) -> bool:
    """``Mictlanx-Drop-Current`` of P8; it only qualifies ``Mictlanx-If-Version`` (400/400 without it)."""
    drop = parse_bool(req.headers.get(DROP_CURRENT_HEADER.lower()), DROP_CURRENT_HEADER)
    if drop and if_version is None:
        raise HTTPError(400, 400, f"{DROP_CURRENT_HEADER} needs {IF_VERSION_HEADER}: the version to drop")
    return drop


def refuse_drop_current_of_ball_id(req: Request) -> None:
    """P9 has no Drop-Current: a rebalancer moves one chunk key at a time (400/400, nothing changed)."""
    if parse_bool(req.headers.get(DROP_CURRENT_HEADER.lower()), DROP_CURRENT_HEADER):
        raise HTTPError(400, 400, f"{DROP_CURRENT_HEADER} applies to one key (DELETE /buckets/{{bucket_id}}/{{key}}), "
                                  "not to a ball_id")


def _deleted(name_field: str, name: str, headers: dict[str, str], **extra: Any) -> HTTPError:
    return not_found(f"nothing to delete for {name}", headers={"n-deletes": "0", **headers},
                     **{name_field: name}, **extra)


def tombstone_key(peer: PeerState, bucket_id: str, key: str, version: str, preconditions: Any) -> Response:
    """P8 with ``Mictlanx-Version: D``: tombstone D; the current version below D superseded."""
    peer.clock.observe(version)
    current = peer.storage.get(bucket_id, key)
    if current is not None and current.version < version:
        preconditions(current)  # If-Match / Task-Id still guard what would be removed
    removed = peer.storage.essential(versionstore.delete_key, peer.storage, bucket_id, key, version)
    headers = {VERSION_HEADER: version}
    if not removed:
        raise _deleted("key", key, headers, bucket_id=bucket_id, version=version)
    return json_response({"n_deletes": len(removed), "key": key, "version": version}, 200,
                         {"n-deletes": str(len(removed)), "ETag": f'"{removed[0].checksum}"', **headers})


def tombstone_ball_id(peer: PeerState, bucket_id: str, ball_id: str, version: str) -> Response:
    """P9 with ``Mictlanx-Version: D``: tombstone D for the ball_id; its versions below D superseded."""
    peer.clock.observe(version)
    removed = peer.storage.essential(versionstore.delete_ball_id, peer.storage, bucket_id, ball_id, version)
    headers = {VERSION_HEADER: version}
    if not removed:
        raise _deleted("ball_id", ball_id, headers, bucket_id=bucket_id, version=version)
    return json_response({"n_deletes": len(removed), "ball_id": ball_id, "version": version}, 200,
                         {"n-deletes": str(len(removed)), **headers})


def _refuse_current(bucket_id: str, name: str, version: str) -> HTTPError:
    return HTTPError(412, 405, f"version {version} of {bucket_id}@{name} is current: it is never un-committed",
                     bucket_id=bucket_id, version=version)


def drop_key_version(peer: PeerState, bucket_id: str, key: str, version: str) -> Response:
    """P8 with ``Mictlanx-If-Version: V``: remove exactly V if staged or superseded."""
    current = peer.storage.get(bucket_id, key)
    if current is not None and current.version == version:
        raise _refuse_current(bucket_id, key, version)
    record = versionstore.non_current(peer.storage, bucket_id, key, version)
    if record is None:
        raise _deleted("key", key, {}, bucket_id=bucket_id, version=version)
    peer.storage.essential(versionstore.remove_versions, peer.storage, [record])
    return json_response({"n_deletes": 1, "key": key, "version": version}, 200, {"n-deletes": "1"})


def _not_current(bucket_id: str, key: str, version: str, current: str) -> HTTPError:
    return HTTPError(409, 409, f"version {version} of {bucket_id}@{key} is not the current one "
                               f"({current or 'a legacy version'} is): nothing dropped",
                     bucket_id=bucket_id, key=key, version=version, current=current)


def drop_current_version(peer: PeerState, bucket_id: str, key: str, version: str,
                         preconditions: Callable[[Ball], None]) -> Response:
    """P8 with ``Mictlanx-If-Version: V`` and ``Mictlanx-Drop-Current: 1``: a rebalancer moving a copy away.

    Removes the key's current version only while it is exactly V, and records no tombstone:
    the object is not deleted, this peer just stops holding it (a copy of V may come back).
    409/409 when another version is current (a newer write landed: keep it), 404 when nothing
    is current; both change nothing. The check and the change run in one event-loop step, so a
    write committing V+1 lands wholly before (409) or after (V+1 becomes current over nothing).
    The dropped V becomes superseded: pinned reads that chose this peer still get it for
    ``version_grace``, then the GC frees it.
    """
    current = peer.storage.get(bucket_id, key)
    if current is None:
        raise _deleted("key", key, {}, bucket_id=bucket_id, version=version)
    if current.version != version:
        raise _not_current(bucket_id, key, version, current.version)
    preconditions(current)  # If-Match / Task-Id still guard what would be removed
    dropped = peer.storage.essential(versionstore.drop_current, peer.storage, bucket_id, key, version)
    if dropped is None:  # cannot happen (nothing runs between the check and the change): never claim a drop
        raise _not_current(bucket_id, key, version, "another version")
    return json_response({"n_deletes": 1, "key": key, "version": version}, 200,
                         {"n-deletes": "1", "ETag": f'"{dropped.checksum}"', VERSION_HEADER: version})


def drop_ball_id_version(peer: PeerState, bucket_id: str, ball_id: str, version: str) -> Response:
    """P9 with ``Mictlanx-If-Version: V``: remove the staged or superseded V of every key of the ball_id.

    Refused (412/405, nothing removed) when V is current for any of them.
    """
    storage = peer.storage
    if any(ball.version == version for ball in storage.group(bucket_id, ball_id, include_disabled=True)):
        raise _refuse_current(bucket_id, ball_id, version)
    records = [record for state in (STAGED, SUPERSEDED)
               for record in versionstore.records_of(storage, bucket_id, ball_id, state) if record.version == version]
    if not records:
        raise _deleted("ball_id", ball_id, {}, bucket_id=bucket_id, version=version)
    storage.essential(versionstore.remove_versions, storage, records)
    return json_response({"n_deletes": len(records), "ball_id": ball_id, "version": version}, 200,
                         {"n-deletes": str(len(records))})


# --- P24 ------------------------------------------------------------------------------------------------
async def commit(peer: PeerState, req: Request, bucket_id: str, ball_id: str) -> Response:
    """P24: promote the staged chunks of a ball_id at version V and supersede what V replaces."""
    version = lww.header_version(req)
    if version is None:
        raise HTTPError(400, 400, f"{VERSION_HEADER} is required")
    peer.clock.observe(version)
    storage = peer.storage
    committed, superseded = storage.essential(versionstore.commit_ball_id, storage, bucket_id, ball_id, version)
    return json_response({"bucket_id": bucket_id, "ball_id": ball_id, "version": version, "committed": committed,
                          "superseded": superseded}, 200, {VERSION_HEADER: version})

