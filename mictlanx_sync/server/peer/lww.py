"""Last-writer-wins for P1 and the phase-2 commit (docs/consistency.md §2.1), and the version headers.

A write carrying ``Mictlanx-Version`` follows only the version order. A write without it
gets a version from the peer's clock and keeps the spec's ``Update`` rules (§3.2), so
clients that know nothing of versions see the behaviour they always did.
"""

from __future__ import annotations

from typing import Optional

from ...protocol.errors import ValidationError
from ...protocol.versions import IF_VERSION_HEADER, STAGE_HEADER, VERSION_HEADER, parse_version
from ..asgi.errors import HTTPError, bad_request
from ..asgi.request import Request
from ..request_values import parse_bool
from . import versionstore
from .storage import CURRENT, STAGED, Storage

EXISTS, SHARE, NEW = "exists", "share", "new"


def header_version(req: Request, name: str = VERSION_HEADER) -> Optional[str]:
    """A version header's value, None when absent; 400/400 when it is not a version id."""
    try:
        return parse_version(req.headers.get(name.lower()), name)
    except ValidationError as exc:
        raise bad_request(str(exc)) from None


def header_if_version(req: Request) -> Optional[str]:
    return header_version(req, IF_VERSION_HEADER)


def header_stage(req: Request) -> bool:
    return parse_bool(req.headers.get(STAGE_HEADER.lower()), STAGE_HEADER)


def superseded(bucket_id: str, key: str, version: str, by: str) -> HTTPError:
    """409/409: a newer version or a tombstone at or above ``version`` is already recorded."""
    return HTTPError(409, 409, f"version {version} of {bucket_id}@{key} is superseded by {by}",
                     bucket_id=bucket_id, key=key, version=version, superseded_by=by)


def _other_content(bucket_id: str, key: str, version: str) -> HTTPError:
    return HTTPError(409, 405, f"version {version} of {bucket_id}@{key} exists with other content",
                     bucket_id=bucket_id, key=key, version=version)


def check_write(storage: Storage, bucket_id: str, key: str, ball_id: str, size: int, checksum: str,
                version: str, staged: bool, update: bool = True) -> str:
    """The table of §2.1: ``EXISTS``, ``SHARE`` (commit V now on the current file) or ``NEW``.

    Raises 409/409 when the write is superseded, 409/405 when version V already exists
    with different content (two writes cannot honestly share a version id), and 409/405
    for an unstaged write without ``Update`` over other current content: the spec's
    create-only rule (§3.2), which upstream clients rely on. Routers assign versions to
    their writes, so that rule must survive versions; our client sends ``Update: 1`` and
    checks create-only itself (docs/consistency.md §3.1).
    """
    buried = versionstore.tombstone_over(storage, bucket_id, key, ball_id)
    if buried and version <= buried:
        raise superseded(bucket_id, key, version, buried)
    current = storage.get(bucket_id, key)
    same = current is not None and (current.size, current.checksum) == (size, checksum)
    if staged:
        held = versionstore.find(storage, bucket_id, key, version)
        if held is not None and held.state in (CURRENT, STAGED) and (held.size, held.checksum) == (size, checksum):
            return EXISTS
        return NEW
    if current is None:
        return NEW
    if current.version > version:
        raise superseded(bucket_id, key, version, current.version)
    if current.version == version:
        if same:
            return EXISTS
        raise _other_content(bucket_id, key, version)
    if not same and not update:
        raise HTTPError(409, 405, f"{bucket_id}@{key} exists with different content (use Update: 1)",
                        bucket_id=bucket_id, key=key)
    return SHARE if same else NEW


def check_commit(storage: Storage, bucket_id: str, key: str, ball_id: str, size: int, checksum: str,
                 version: str, staged: bool, update: bool = True) -> bool:
    """The phase-2 re-check, run in the same event-loop step as the swap.

    True: commit. False: the same content is already there (nothing to do). Raises like
    ``check_write``.
    """
    return check_write(storage, bucket_id, key, ball_id, size, checksum, version, staged, update) != EXISTS
