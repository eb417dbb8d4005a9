"""Last-writer-wins outcomes of versioned writes (docs/consistency.md §2.1).

A replica that answers 409/409 *superseded* holds a newer version or tombstone: the write
lost the race everywhere that matters, so the whole R5/R7 answers 409/409 whatever the other
replicas said, naming the newest version that beat it.
"""

from __future__ import annotations

from typing import Any, Optional

from ...protocol.versions import is_valid_version
from ..asgi.errors import HTTPError
from .fanout import Reply, combine_failures

SUPERSEDED = (409, 409)


def is_superseded(reply: Reply) -> bool:
    return (reply.status, reply.code) == SUPERSEDED


def superseded_by(reply: Reply) -> Optional[str]:
    detail = reply.body.get("detail") if isinstance(reply.body, dict) else None
    value = detail.get("superseded_by") if isinstance(detail, dict) else None
    return value if is_valid_version(value) else None


def write_failure(failures: list[Reply], *, version: Optional[str] = None, **extra: Any) -> HTTPError:
    """The router's answer when replicas of a write failed: 409/409 if any was superseded,
    otherwise the rules of §P4.4 (:func:`fanout.combine_failures`)."""
    lost = [r for r in failures if is_superseded(r)]
    if not lost:
        return combine_failures(failures, **extra)
    winners = [v for v in (superseded_by(r) for r in lost) if v is not None]
    return HTTPError(409, 409, f"version {version} is superseded by a newer write or delete",
                     version=version, superseded_by=max(winners) if winners else None,
                     errors=[r.describe() for r in failures], **extra)


def tombstone_below(version: str, writer: str) -> Optional[str]:
    """A version just below ``version`` (one clock tick earlier, written by ``writer``).

    A tombstone there supersedes every older copy of a key but never ``version`` itself or
    anything newer, which is what cleaning up stale copies after a versioned write needs.
    None for the legacy version or the very first tick.
    """
    if not is_valid_version(version):
        return None
    tick = int(version[:16], 16)
    if tick == 0:
        return None
    return f"{tick - 1:016x}-{writer}"
