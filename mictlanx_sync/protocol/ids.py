"""Identifier rules (protocol §P2.2): validation only, never rewriting."""

from __future__ import annotations

import re
import secrets
import string

from .errors import ValidationError

__all__ = [
    "ID_PATTERN", "TASK_ID_PATTERN", "RESERVED", "MAX_OBJECT_KEY_LENGTH",
    "is_valid_id", "is_valid_task_id", "validate_id", "validate_key", "validate_task_id",
    "new_task_id",
]

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
RESERVED = "metadata"
#: Object keys stay short enough that chunk keys ``{key}_{i}`` remain valid ids (§P5).
MAX_OBJECT_KEY_LENGTH = 240
_ALPHABET = string.ascii_letters + string.digits


def is_valid_id(value: object) -> bool:
    """True for a bucket, key, ball, peer or router id of §P2.2."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None and ".." not in value


def is_valid_task_id(value: object) -> bool:
    """True for a task or group id (§P2.2); ``metadata`` is never one."""
    return isinstance(value, str) and TASK_ID_PATTERN.fullmatch(value) is not None and value != RESERVED


def validate_id(value: object, field: str = "id") -> str:
    """Return ``value`` unchanged if it is a valid id, else raise ``ValidationError``."""
    if not is_valid_id(value):
        raise ValidationError(
            f"invalid {field}: {value!r} (1-255 of [A-Za-z0-9._-], starting with a letter or digit, no '..')"
        )
    return value  # type: ignore[return-value]


def validate_key(value: object, field: str = "key") -> str:
    """A key or ball id: a valid id that is not the reserved word ``metadata``."""
    validate_id(value, field)
    if value == RESERVED:
        raise ValidationError(f"invalid {field}: {RESERVED!r} is reserved")
    return value  # type: ignore[return-value]


def validate_task_id(value: object, field: str = "task_id") -> str:
    """Return ``value`` if it is a valid task or group id, else raise ``ValidationError``."""
    if not is_valid_task_id(value):
        raise ValidationError(f"invalid {field}: {value!r} (1-128 of [A-Za-z0-9_-], not 'metadata')")
    return value  # type: ignore[return-value]


def new_task_id() -> str:
    """21 random characters from ``[A-Za-z0-9]`` drawn from a cryptographic RNG."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(21))
