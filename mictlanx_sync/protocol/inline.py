"""Small balls inline in their metadata answer (issue 13, "one round trip for small objects").

A reader that sends ``Mictlanx-Inline-Max: N`` with P4 or R3 asks for the ball's bytes in the
same answer when the ball has at most ``N`` bytes (servers cap ``N`` at :data:`INLINE_CAP`):
the JSON answer then carries ``data_base64``, the bytes of exactly the version it describes,
base64-encoded. A server that does not know the header ignores it, and a ball above the limit,
a disabled ball, or a version file gone meanwhile is answered without the field; the reader
then fetches the data as before (R11). The reader verifies the bytes against the answer's
checksum like any other read.

Writes the other way round: a P1 or R5 body with ``data_base64`` (the ball's bytes, at most
:data:`INLINE_CAP`) is phase 1 and phase 2 in one request; the answer says ``committed``.
See docs/protocol-extensions.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

__all__ = ["INLINE_MAX_HEADER", "INLINE_FIELD", "INLINE_CAP", "IF_ABSENT_HEADER", "inline_max", "encode_inline",
           "decode_inline"]

#: Request header: the largest ball, in bytes, the reader wants inline.
INLINE_MAX_HEADER = "Mictlanx-Inline-Max"
#: Answer field: the ball's bytes, standard base64 with padding.
INLINE_FIELD = "data_base64"
#: R5 request header of a one-request *create* (with ``data_base64``): the router first looks
#: the key up on every available peer as R3 does, and writes only if no version is visible:
#: identical content answers ``extra.identical`` (nothing written), other content 409/405, a
#: visible version or tombstone at or above the write's own version 409/409 naming it.
IF_ABSENT_HEADER = "Mictlanx-If-Absent"
#: The most a server inlines, whatever the reader asks (an answer is held in memory whole),
#: and the most a one-request write may carry: its base64 must fit the servers' 1 MiB limit
#: on JSON bodies, with room for the metadata.
INLINE_CAP = 512 * 1024


def inline_max(raw: Optional[str]) -> int:
    """The inline limit a request asks for (the header's value), capped at :data:`INLINE_CAP`;
    0 when absent or not a non-negative decimal integer (an extension is ignored, never an
    error)."""
    if raw is None:
        return 0
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 12:
        return 0
    return min(int(raw), INLINE_CAP)


def encode_inline(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_inline(body: Any) -> Optional[bytes]:
    """The inline bytes of a metadata answer (a parsed JSON object), or None when absent or
    not valid base64 (then the reader fetches the data as if none had been sent)."""
    value = body.get(INLINE_FIELD) if isinstance(body, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
