"""Size strings (protocol §P2.4): decimal units unless an IEC unit is explicit."""

from __future__ import annotations

import re

from .errors import ValidationError

__all__ = ["parse_size", "format_size", "clamp"]

_SIZE = re.compile(r"\s*(\d{1,30}(?:\.\d{1,30})?|\.\d{1,30})\s*([A-Za-z]{0,5})\s*")
_DECIMAL = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
            "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15}
_BINARY = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}
_UNITS = ((10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB"))


def parse_size(value: str | int) -> int:
    """Bytes for ``"1MB"`` (1,000,000), ``"1MiB"`` (1,048,576), ``"256kb"`` or ``"42"``.

    Follows humanfriendly's ``parse_size`` defaults. Raises ``ValidationError``.

    >>> parse_size("1m"), parse_size("1KiB")
    (1000000, 1024)
    """
    if isinstance(value, bool):
        raise ValidationError(f"invalid size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValidationError(f"invalid size: {value!r}")
        return value
    if not isinstance(value, str):
        raise ValidationError(f"invalid size: {value!r}")
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValidationError(f"invalid size: {value!r}")
    number, unit = match.group(1), match.group(2).lower()
    factor = _DECIMAL.get(unit) or _BINARY.get(unit)
    if factor is None:
        raise ValidationError(f"invalid size unit in {value!r}")
    # At most 30 digits each side (the pattern), so neither int() nor float() can overflow.
    if "." in number:
        return int(float(number) * factor)
    return int(number) * factor


def format_size(num_bytes: int) -> str:
    """Decimal units as humanfriendly's ``format_size``: ``1000000`` -> ``"1 MB"``."""
    if num_bytes == 1:
        return "1 byte"
    for factor, unit in _UNITS:
        if num_bytes >= factor:
            text = f"{num_bytes / factor:.2f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    return f"{num_bytes} bytes"


def clamp(value: int, low: int, high: int) -> int:
    """``value`` limited to ``[low, high]``."""
    return max(low, min(high, value))
