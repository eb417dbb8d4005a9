"""Turning the upstream-shaped keyword arguments of ``Client`` calls into settings.

Upstream spellings are kept and the correct ones are aliases (client-api §1.6); two
spellings with different values are a ``ValidationError``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from ..protocol.errors import ValidationError
from ..protocol.inline import INLINE_CAP
from ..protocol.policies import RetryPolicy
from ..protocol.sizes import clamp, parse_size

__all__ = ["size_option", "merge_alias", "retry_policy", "piece_size", "positive_int", "positive_seconds",
           "chunk_size_bytes", "inline_limit"]

_MIN_PIECE = 64 * 1024
_MAX_PIECE = 8 * 1024 * 1024


def merge_alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """One value from an upstream spelling and its alias; ``None`` means "not given"."""
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise ValidationError(f"{name} and {alias} disagree ({value!r} != {alias_value!r})")
    return alias_value


def retry_policy(base: RetryPolicy, **options: Any) -> RetryPolicy:
    """``base`` with the per-call overrides that are not ``None``."""
    given = {k: v for k, v in options.items() if v is not None}
    return RetryPolicy.from_options(base, **given) if given else base


def chunk_size_bytes(chunk_size: Any) -> int:
    size = parse_size(chunk_size)
    if size <= 0:
        raise ValidationError(f"chunk_size must be > 0, got {chunk_size!r}")
    return size


def piece_size(chunk_size: Any) -> int:
    """A read's ``chunk_size``: the ``Chunk-Size`` header and the piece size, 64 KiB-8 MiB."""
    return clamp(parse_size(chunk_size), _MIN_PIECE, _MAX_PIECE)


def positive_int(name: str, value: Any, default: Optional[int] = None) -> int:
    if value is None:
        if default is None:
            raise ValidationError(f"{name} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValidationError(f"{name} must be >= 1, got {value}")
    return value


def positive_seconds(name: str, value: Any) -> float:
    """A finite number of seconds > 0 (``TypeError`` for a wrong type)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValidationError(f"{name} must be > 0 and finite, got {value!r}")
    return float(value)


def size_option(name: str, value: Union[str, int]) -> int:
    """A ``Client`` size argument: bytes as an int or a size string (``"256MiB"``), 0 or more."""
    try:
        return parse_size(value)
    except ValidationError:
        raise ValidationError(f"{name} must be a size of 0 or more, not {value!r}") from None


def inline_limit(value: Union[str, int]) -> int:
    """``Client(inline_max=...)``: bytes, 0 to turn the one-request paths off; at most the
    servers' ``INLINE_CAP`` (a larger limit would only be declined by them)."""
    limit = parse_size(value) if isinstance(value, str) else value
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValidationError(f"inline_max must be a size of 0 or more, not {value!r}")
    if limit > INLINE_CAP:
        raise ValidationError(f"inline_max is at most {INLINE_CAP} bytes (512 KiB), not {value!r}")
    return limit
