"""Object version ids: a hybrid logical clock plus a writer id, ordered as plain strings.

A version id is ``{hlc:016x}-{writer}``: 16 lowercase hex digits of a hybrid logical clock
(milliseconds since the epoch shifted left by 16 bits, plus a 16-bit logical counter),
a dash, and the writer's id (1-64 of ``[A-Za-z0-9._-]``). Because the clock part has a
fixed width, comparing two ids as strings compares their clocks first and breaks ties by
writer: every pair of distinct versions is ordered, on every machine, with no parsing.
The empty string is the version of balls written before versions existed; it sorts first.

The wire headers that carry versions are named here so that the client, the router and
the peer cannot disagree on a spelling (docs/consistency.md).
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from typing import Callable, Optional

from .errors import ValidationError

__all__ = [
    "VERSION_HEADER", "STAGE_HEADER", "IF_VERSION_HEADER", "DROP_CURRENT_HEADER", "TOMBSTONE_HEADER",
    "VERSION_PATTERN", "LEGACY",
    "HybridClock", "is_valid_version", "parse_version", "validate_version", "version_time", "new_writer_id",
]

#: The version a write creates, a delete records, or a read is pinned to.
VERSION_HEADER = "Mictlanx-Version"
#: ``1``: store the write as staged (invisible until P24/R26 commits its version).
STAGE_HEADER = "Mictlanx-Stage"
#: On P8/P9/R13/R14: remove exactly this version of the ball(s), record no tombstone.
IF_VERSION_HEADER = "Mictlanx-If-Version"
#: ``1`` on P8 with ``Mictlanx-If-Version: V``: remove V even though it is the *current* version
#: (only when it still is), without a tombstone: a rebalancer moving a copy away (docs/rebalancing.md §4).
DROP_CURRENT_HEADER = "Mictlanx-Drop-Current"
#: On a 404 from P4/P5: the version of the tombstone that hides the ball, if any.
TOMBSTONE_HEADER = "Mictlanx-Tombstone"

VERSION_PATTERN = re.compile(r"[0-9a-f]{16}-[A-Za-z0-9._-]{1,64}")
#: The version of a ball committed before versions existed (or by a peer that has none).
LEGACY = ""

_WRITER_ALPHABET = string.ascii_letters + string.digits
_COUNTER_BITS = 16


def is_valid_version(value: object) -> bool:
    """True for a version id of the form ``{16 hex}-{writer}``."""
    return isinstance(value, str) and VERSION_PATTERN.fullmatch(value) is not None


def validate_version(value: object, field: str = "version") -> str:
    """Return ``value`` if it is a version id, else raise ``ValidationError``."""
    if not is_valid_version(value):
        raise ValidationError(f"invalid {field}: {value!r} (expected 16 lowercase hex digits, '-', a writer id)")
    return value  # type: ignore[return-value]


def parse_version(value: Optional[str], field: str = "version") -> Optional[str]:
    """A header value: None when absent, the version when valid, ``ValidationError`` otherwise."""
    if value is None:
        return None
    return validate_version(value.strip(), field)


def version_time(version: str) -> float:
    """The wall-clock seconds a version id was made at (0.0 for the legacy version)."""
    if not version:
        return 0.0
    return (int(version[:16], 16) >> _COUNTER_BITS) / 1000.0


def new_writer_id() -> str:
    """12 random characters: unique enough that two writers never share an id."""
    return "".join(secrets.choice(_WRITER_ALPHABET) for _ in range(12))


class HybridClock:
    """Hands out strictly increasing version ids for one writer. Thread-safe.

    A hybrid logical clock (Kulkarni et al., 2014): it follows the wall clock, never goes
    backwards when the wall clock does, and ``observe`` moves it past any version seen from
    another writer, so a write made after reading version ``v`` always sorts after ``v``
    even when this machine's clock lags.
    """

    def __init__(self, writer_id: Optional[str] = None, *, wall_ms: Callable[[], int] | None = None) -> None:
        self.writer_id = writer_id or new_writer_id()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.writer_id):
            raise ValidationError(f"invalid writer id: {self.writer_id!r}")
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        """A new version id, greater than every id this clock made or observed."""
        with self._lock:
            physical = self._wall_ms() << _COUNTER_BITS
            self._last = physical if physical > self._last else self._last + 1
            return f"{self._last:016x}-{self.writer_id}"

    def observe(self, version: Optional[str]) -> None:
        """Move the clock past ``version`` (ignored when it is empty or not a version id)."""
        if not version or not is_valid_version(version):
            return
        seen = int(version[:16], 16)
        with self._lock:
            if seen > self._last:
                self._last = seen

