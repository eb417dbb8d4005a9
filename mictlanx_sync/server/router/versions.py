"""Version headers on the router (docs/consistency.md §2): parsing, and reading them from peers.

Every header a client sends is checked here *before* anything reaches a peer, so a bad value
is a 400/400 and never a half-applied write. Every version a peer reports goes through
:func:`reply_version` / :func:`reply_tombstone`, which also let the router's clock observe it:
a version the router assigns later then sorts after everything it has seen.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ...protocol.errors import ValidationError
from ...protocol.versions import (
    DROP_CURRENT_HEADER,
    IF_VERSION_HEADER,
    LEGACY,
    STAGE_HEADER,
    TOMBSTONE_HEADER,
    VERSION_HEADER,
    HybridClock,
    is_valid_version,
    parse_version,
)
from ..asgi.errors import bad_request
from ..request_values import parse_bool
from .fanout import Reply

__all__ = ["VERSION_HEADER", "STAGE_HEADER", "IF_VERSION_HEADER", "DROP_CURRENT_HEADER", "TOMBSTONE_HEADER",
           "LEGACY", "router_clock", "header_version", "header_if_version", "header_stage", "refuse_drop_current",
           "reply_version", "reply_tombstone", "newest", "observe_meta"]


def router_clock(router_id: str) -> HybridClock:
    """The router's clock, named by its id (ids that are not valid writer ids are cleaned)."""
    writer = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in router_id)[:64] or "router"
    return HybridClock(writer)


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    return headers.get(name.lower())


def header_version(headers: Mapping[str, str], name: str = VERSION_HEADER) -> Optional[str]:
    """The version id in header ``name`` (None when absent); 400/400 when malformed."""
    try:
        return parse_version(_header(headers, name), name)
    except ValidationError as exc:
        raise bad_request(str(exc)) from None


def header_if_version(headers: Mapping[str, str]) -> Optional[str]:
    return header_version(headers, IF_VERSION_HEADER)


def header_stage(headers: Mapping[str, str]) -> bool:
    """``Mictlanx-Stage``: ``1``/``true`` stages the write, ``0``/``false`` (or absent) does not."""
    value = _header(headers, STAGE_HEADER)
    if value is None:
        return False
    normalized = value.strip().lower()
    if normalized in ("1", "true"):
        return True
    if normalized in ("0", "false"):
        return False
    raise bad_request(f"invalid {STAGE_HEADER}: {value!r} (expected 0 or 1)")


def refuse_drop_current(headers: Mapping[str, str]) -> None:
    """400/400 for ``Mictlanx-Drop-Current`` on R13/R14: it is the rebalancer's peer-level move of
    one copy (docs/rebalancing.md §4); fanned out to every peer it would remove the object from all
    of them without a tombstone, so the router never forwards it (nor ignores it silently)."""
    if parse_bool(_header(headers, DROP_CURRENT_HEADER), DROP_CURRENT_HEADER):
        raise bad_request(f"{DROP_CURRENT_HEADER} is a peer operation of rebalancing; a router delete removes "
                          "a key from every peer (use Mictlanx-Version for a delete)")


def _clean(value: Any) -> Optional[str]:
    """A version from a peer: a valid id, the legacy ``""``, or None when absent or garbage."""
    if value == LEGACY:
        return LEGACY
    return value if is_valid_version(value) else None


def reply_version(reply: Reply, clock: Optional[HybridClock] = None) -> str:
    """The version a peer's answer names: its ``Mictlanx-Version`` header, else the body's
    ``version`` (top level, then inside ``metadata``), else legacy ``""``. Observed by ``clock``."""
    found = _clean(reply.headers.get(VERSION_HEADER.lower()))
    if found is None and isinstance(reply.body, dict):
        found = _clean(reply.body.get("version"))
        meta = reply.body.get("metadata")
        if found is None and isinstance(meta, dict):
            found = _clean(meta.get("version"))
    version = found or LEGACY
    if clock is not None:
        clock.observe(version)
    return version


def reply_tombstone(reply: Reply, clock: Optional[HybridClock] = None) -> Optional[str]:
    """The ``Mictlanx-Tombstone`` of a peer's 404 (None when it names none)."""
    if reply.status != 404:
        return None
    found = _clean(reply.headers.get(TOMBSTONE_HEADER.lower()))
    if found and clock is not None:
        clock.observe(found)
    return found or None


def observe_meta(meta: Mapping[str, Any], clock: Optional[HybridClock] = None) -> str:
    """The ``version`` of a Metadata object (``""`` when absent), observed by ``clock``."""
    version = _clean(meta.get("version")) or LEGACY
    if clock is not None:
        clock.observe(version)
    return version


def newest(*versions: Optional[str]) -> Optional[str]:
    """The highest of ``versions`` ignoring None (None when all are None)."""
    present = [v for v in versions if v is not None]
    return max(present) if present else None
