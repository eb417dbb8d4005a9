"""The phase-2 body rules both servers apply (protocol §3.2, §4.5): when a body is refused
at once, how much of a refused body is drained, and the one-request write's inline bytes."""

from __future__ import annotations

import hashlib
from typing import Any, Optional

from ..protocol.inline import INLINE_CAP, INLINE_FIELD, decode_inline
from .asgi.errors import HTTPError, unprocessable
from .units import KIB, MIB

#: most a server reads to drain a phase-2 body it rejected at once (Content-Length check);
#: beyond that it answers with ``Connection: close`` instead of reading on (§3.2)
DRAIN_CAP = 8 * MIB
#: the multipart framing a P2/R6 body may add to the phase-1 size (§3.2)
MULTIPART_SLACK = 64 * KIB


def length_mismatch(declared: Optional[int], size: int, checksum: str, multipart: bool) -> Optional[HTTPError]:
    """The phase-2 "fail at once" rule (§P3.2) as applied by our servers.

    A body whose ``Content-Length`` exceeds the phase-1 ``size`` (raw: P3, R7) or ``size``
    + 64 KiB of framing (multipart: P2, R6) is answered **400/501** at once: nothing is
    stored or forwarded. The caller drains at most ``min(declared, size + slack,
    DRAIN_CAP)`` bytes and closes the connection if more remain. A *shorter* body is read
    (it is at most ``size``) and verified, so its error reports the received checksum.
    Chunked bodies (no ``Content-Length``) are checked as they arrive.
    """
    if declared is None:
        return None
    if declared > size + (MULTIPART_SLACK if multipart else 0):
        return HTTPError(400, 501, f"Content-Length {declared} does not match the size {size} declared at phase 1",
                         expected_size=size, received_size=declared, expected_checksum=checksum,
                         received_checksum="")
    return None


def inline_write(body: Any, size: int, checksum: str) -> Optional[bytes]:
    """The bytes of a one-request write (``data_base64`` in a P1/R5 body, docs/protocol-extensions.md),
    or None when the body has none. Checked before anything is reserved or stored: not base64
    is 422, above ``INLINE_CAP`` 413, other bytes than ``size``/``checksum`` declare 400/501
    (the integrity error of phase 2)."""
    if not isinstance(body, dict) or INLINE_FIELD not in body:
        return None
    raw = body[INLINE_FIELD]
    if not isinstance(raw, str):
        raise unprocessable(f"{INLINE_FIELD} must be a base64 string", ["body", INLINE_FIELD], "string_type")
    too_large = HTTPError(413, 400, f"inline data above {INLINE_CAP} bytes: use the two-phase write")
    if len(raw) > 4 * -(-INLINE_CAP // 3):  # longer than any encoding of INLINE_CAP bytes: not decoded
        raise too_large
    data = decode_inline(body)
    if data is None:
        raise unprocessable(f"{INLINE_FIELD} is not valid base64", ["body", INLINE_FIELD])
    if len(data) > INLINE_CAP:
        raise too_large
    received = hashlib.sha256(data).hexdigest()
    if len(data) != size or received != checksum:
        raise HTTPError(400, 501, f"integrity check failed: expected {size} bytes with SHA-256 {checksum}, "
                        f"received {len(data)} bytes with SHA-256 {received}", expected_size=size,
                        received_size=len(data), expected_checksum=checksum, received_checksum=received)
    return data

