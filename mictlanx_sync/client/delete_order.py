"""Catch ``client.delete("pets", "cat")``: arguments swapped against upstream's order.

``put`` and ``get`` take ``(bucket_id, key)``, but ``delete`` and ``delete_by_key`` mirror
upstream's ``(ball_id, bucket_id)`` / ``(key, bucket_id)``. A call written bucket first
deleted nothing and returned ``Ok(n_deletes=0)``, which looks like success. Upstream's
positional order keeps working; what changes:

- Keyword calls (``delete(bucket_id="pets", ball_id="cat")``, the documented form) are
  unambiguous and cost nothing extra.
- A positional call from the user (not one made inside ``delete_bucket``) first asks
  the router whether the *swapped* object exists (one metadata request). When it does
  and the object named in upstream's order does not, the call returns
  ``Err(ValidationError)`` saying which call was meant, and deletes nothing.
- When neither exists, the call stays idempotent: ``Ok`` with ``n_deletes == 0``.

:func:`check_delete_order` is the helper; :func:`guard_delete_order` wraps the two
facade methods so that it runs before them and their bodies stay as they are.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

from ..protocol.errors import MictlanXError, ValidationError
from ..protocol.result import Err
from .operation import current_operation, log_failure

__all__ = ["check_delete_order", "guard_delete_order"]

F = TypeVar("F", bound=Callable[..., Any])


def check_delete_order(client: Any, method: str, first: Any, bucket_id: Any) -> Optional[Err[Any, MictlanXError]]:
    """``Err(ValidationError)`` when ``method(first, bucket_id)`` looks swapped, else ``None``.

    ``first`` is the ``ball_id`` (``delete``) or the ``key`` (``delete_by_key``) as passed.
    Looks swapped: bucket ``first`` holds an object ``bucket_id`` while bucket ``bucket_id``
    holds no object ``first``. Any failure of the lookup itself gives ``None`` (the delete
    then runs and reports its own error).
    """
    if not (isinstance(first, str) and isinstance(bucket_id, str)) or first == bucket_id:
        return None
    if not (_exists(client, method, bucket=first, name=bucket_id) and not _exists(client, method, bucket_id, first)):
        return None
    field = "ball_id" if method == "delete" else "key"
    return Err(ValidationError(
        f"{method}({first!r}, {bucket_id!r}) deleted nothing: it means {field}={first!r} in bucket {bucket_id!r}, "
        f"which does not exist, while bucket {first!r} has an object {bucket_id!r}. The positional order is "
        f"{method}({field}, bucket_id), unlike put/get; to delete that object call "
        f"client.{method}(bucket_id={first!r}, {field}={bucket_id!r}).",
        bucket_id=bucket_id, key=first))


def _exists(client: Any, method: str, bucket: str, name: str) -> bool:
    """Whether ``bucket`` holds ``name`` (a ball for ``delete``, a key for ``delete_by_key``)."""
    t, dispatcher = client.timeout, client._dispatcher
    if method == "delete":
        found = dispatcher.call(f"stat {bucket}/{name}", lambda r: r.get_chunks_metadata(name, bucket, timeout=t))
        return bool(found.is_ok and found.unwrap().chunks)
    return bool(dispatcher.call(f"stat {bucket}/{name}", lambda r: r.get_metadata(bucket, name, timeout=t)).is_ok)


def guard_delete_order(method: F) -> F:
    """Run :func:`check_delete_order` before a user's positional ``delete``/``delete_by_key``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) >= 2 and current_operation() is None and not self._lifecycle.closed:
            swapped = check_delete_order(self, method.__name__, args[0], args[1])
            if swapped is not None:
                return log_failure(self.logger, method.__name__, args[1], args[0], swapped)
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
