"""The one ETag parser: a data answer's ``ETag`` is the SHA-256 of its bytes (client-api §8.6).

>>> etag_checksum('"9F86D081"')
'9f86d081'
>>> etag_checksum('W/"abc"'), etag_checksum(None), etag_checksum('""')
('abc', None, None)
"""

from __future__ import annotations

from typing import Optional

__all__ = ["etag_checksum"]


def etag_checksum(value: Optional[str]) -> Optional[str]:
    """The checksum an ``ETag`` value names: surrounding space, a weak ``W/`` prefix and the
    quotes removed, lower-cased; ``None`` when there is none. Whether it is a well-formed
    SHA-256 is for the caller to check (a mismatch is a bad copy either way)."""
    if not value:
        return None
    value = value.strip()
    if value[:2] in ("W/", "w/"):
        value = value[2:]
    return value.strip().strip('"').lower() or None
