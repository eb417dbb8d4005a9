"""Error messages that name the user's operation and object (issue 14 §2).

Internally a ``get`` asks for the metadata of chunk ``nokey_0``, so its 404 said
``metadata of photos@nokey_0 not found`` while ``stat`` said ``ball photos/nokey not found``.
:func:`explain` runs on every ``Err`` a ``Client`` operation returns: it rewrites a missing
object into one sentence shared by every read, and starts the message of a
network failure or a missing object with the operation (``get photos/nokey: ...``), so the
line alone says what failed. Other errors (validation, conflicts) already name the argument
or object at fault and are left as they are.
"""

from __future__ import annotations

from typing import Any, Optional

from ..protocol.errors import NetworkError, NotFoundError

__all__ = ["explain", "missing_object"]

_READS = ("get", "get_to_file", "get_chunk", "get_metadata", "get_metadata_by_key")


def missing_object(bucket_id: Any, key: Any) -> str:
    """The one sentence for an object that does not exist."""
    return (f"no object {key!r} in bucket {bucket_id!r}; list the bucket's objects with "
            f"`mictlanx-sync ls {bucket_id}` or client.get_bucket_metadata({bucket_id!r})")


def explain(error: Any, name: str, label: str, bucket_id: Any, key: Optional[Any]) -> None:
    """Rewrite ``error.message`` in place: ``"{label}: {what happened and what to do}"``."""
    if not isinstance(error, (NetworkError, NotFoundError)) or error.message.startswith(f"{label}:"):
        return  # other errors already name the argument or object at fault
    message = error.message
    if type(error) is NotFoundError and name in _READS and key is not None and _about_object(message, key):
        message = missing_object(bucket_id, key)
    error.message = f"{label}: {message}"
    error.args = (error.message,)


def _about_object(message: str, key: Any) -> bool:
    """Whether a 404's text is about the object itself (its chunk 0 or its ball), not a later chunk."""
    key = str(key)
    return any(marker in message for marker in (f"{key}_0 ", f"@{key}_0", f"/{key}_0", f"{key} not found",
                                                f"{key} has no chunks", "chunk 0 not found", f"{key}: not found"))
