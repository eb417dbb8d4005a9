"""Query and header values that ``Peer`` and ``Router`` both send.

Paging of listings (§P2.7: ``start``, ``end``, ``after``, ``include_disabled``) and the
``If-Match`` precondition. Pure: no ``requests``.

>>> paging_params(0, 100, "k")
{'start': 0, 'end': 100, 'after': 'k'}
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .errors import ValidationError
from .ids import validate_id

__all__ = ["if_match_value", "paging_params", "validate_after_composite"]


def if_match_value(checksum: Optional[str]) -> Optional[str]:
    """``If-Match`` header value: the checksum quoted once."""
    if checksum is None:
        return None
    return checksum if checksum.startswith('"') else f'"{checksum}"'


def paging_params(start: int = 0, end: int = 0, after: Optional[str] = None,
                  include_disabled: bool = False) -> Dict[str, Any]:
    """Query parameters of §P2.7: ``end`` only when > 0, ``after`` only when given."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    params: Dict[str, Any] = {"start": start}
    if end > 0:
        params["end"] = end
    if after is not None:
        params["after"] = after
    if include_disabled:
        params["include_disabled"] = "1"
    return params



def validate_after_composite(after: Optional[str]) -> None:
    """Check a ``"bucket_id@key"`` cursor (P15, P16); ``None`` passes."""
    if after is None:
        return
    if not isinstance(after, str) or "@" not in after:
        raise ValidationError(f"invalid after: {after!r} (expected 'bucket_id@key')")
    bucket_id, key = after.split("@", 1)
    validate_id(bucket_id, "after bucket_id")
    validate_id(key, "after key")
