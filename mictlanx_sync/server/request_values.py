"""The values requests carry in paths, headers and queries (protocol §2.2, §2.5, §2.7):
each parsed here, or answered 400/400."""

from __future__ import annotations

import re
from functools import partial
from typing import Callable, Mapping, Optional

from ..protocol.errors import ValidationError
from ..protocol.ids import is_valid_task_id, validate_id, validate_key, validate_task_id
from ..protocol.sizes import clamp, parse_size
from .asgi.errors import HTTPError, bad_request
from .units import KIB, MIB

_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_IF_MATCH = re.compile(r'"([0-9a-fA-F]{64})"')


# --- ids -----------------------------------------------------------------------------
def path_id(value: str, field: str, *, key: bool = False) -> str:
    """Validate an id taken from the path or a header (400/400 when invalid)."""
    try:
        return validate_key(value, field) if key else validate_id(value, field)
    except ValidationError as exc:
        raise bad_request(exc.message) from None


#: the path parameters the routing tables validate by name (400/400 when invalid); task ids are
#: left to the handlers, because a phase 2 drains the body before it answers an invalid one
PATH_PARAMS: Mapping[str, Callable[[str], str]] = {
    "bucket_id": partial(path_id, field="bucket_id"),
    "peer_id": partial(path_id, field="peer_id"),
    "key": partial(path_id, field="key", key=True),
    "ball_id": partial(path_id, field="ball_id", key=True),
}


def path_task_id(value: str, field: str = "task_id") -> str:
    try:
        return validate_task_id(value, field)
    except ValidationError as exc:
        raise bad_request(exc.message) from None



def header_task_id(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not is_valid_task_id(value):
        raise bad_request(f"invalid Task-Id header: {value!r}")
    return value


# --- header and query values -------------------------------------------------------------
def parse_bool(value: Optional[str], name: str, default: bool = False) -> bool:
    """``0/1/true/false`` (any case) or 400/400."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_request(f"invalid boolean for {name}: {value!r} (use 0, 1, true or false)")


#: Paging values beyond this mean "to the end": SQLite integers are 64-bit, and a larger
#: offset or limit could only select nothing or everything anyway.
MAX_QUERY_INT = 2**62
_INT = re.compile(r"[+-]?[0-9]{1,40}")


def parse_int_query(value: Optional[str], name: str, default: int, *, minimum: Optional[int] = None) -> int:
    """A decimal integer query value (400/400 when malformed), clamped to +-2**62."""
    if value is None or value == "":
        return default
    if _INT.fullmatch(value.strip()) is None:
        raise bad_request(f"invalid integer for {name}: {value[:64]!r}")
    number = max(-MAX_QUERY_INT, min(MAX_QUERY_INT, int(value.strip(), 10)))
    if minimum is not None and number < minimum:
        raise bad_request(f"{name} must be >= {minimum}")
    return number


def parse_chunk_size(value: Optional[str], default: int = MIB) -> int:
    """The ``Chunk-Size`` header as a relay piece size, clamped to [4 KiB, 8 MiB]."""
    if value is None:
        return default
    try:
        size = parse_size(value)
    except ValidationError:
        raise bad_request(f"invalid Chunk-Size: {value!r}") from None
    return clamp(size, 4 * KIB, 8 * MIB)


def parse_if_match(value: Optional[str]) -> Optional[str]:
    """One quoted checksum, returned lowercase; anything else is 400/400."""
    if value is None:
        return None
    match = _IF_MATCH.fullmatch(value.strip())
    if match is None:
        raise bad_request(f'invalid If-Match: {value!r} (expected "<64 hex>")')
    return match.group(1).lower()


def parse_range(value: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """The inclusive ``(first, last)`` byte range, or ``None`` to send the whole body.

    Multi-range or malformed headers are ignored (``None``); unsatisfiable ranges raise
    416 with ``Content-Range: bytes */size`` (§P2.5).
    """
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None or (match.group(1) == "" and match.group(2) == ""):
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> HTTPError:
    return HTTPError(416, 400, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})


