"""The user's operation behind every request, so logs name ``put photos/cat``, not a step.

A call such as ``client.put("photos", "cat", ...)`` runs several internal steps (list the
key's chunks, declare metadata, send chunk 3...), each with its own retries. The facade
methods of ``Client`` run inside :func:`user_operation`, which records ``"put photos/cat"``
in a context variable; :class:`~.dispatch.Dispatcher` reads it with :func:`current_operation`
when it logs a retry, and copies the context into the transfer pool's threads.

>>> with user_operation("get", "photos", "cat"):
...     current_operation()
'get photos/cat'
>>> current_operation() is None
True
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from typing import Any, Callable, Iterator, Optional, TypeVar

from .messages import explain

__all__ = ["current_operation", "user_operation", "named_operation", "operation", "run_operation", "describe_step",
           "log_failure"]

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("mictlanx_operation", default=None)


def current_operation() -> Optional[str]:
    """The user's operation running in this context (``"put photos/cat"``), or ``None``."""
    return _CURRENT.get()


@contextlib.contextmanager
def user_operation(name: str, bucket_id: Any = None, key: Any = None) -> Iterator[str]:
    """Name the user's operation for the duration of the block; an outer one is kept."""
    outer = _CURRENT.get()
    if outer is not None:  # e.g. delete_bucket calling delete: the user called delete_bucket
        yield outer
        return
    label = name if bucket_id is None else (f"{name} {bucket_id}" if key is None else f"{name} {bucket_id}/{key}")
    token = _CURRENT.set(label)
    try:
        yield label
    finally:
        _CURRENT.reset(token)


def named_operation(name: str, method: F) -> F:
    """Wrap a ``Client`` method so it runs inside :func:`user_operation` (signature kept)."""
    signature = inspect.signature(method)
    # The names positional arguments bind to, when no ``*args`` parameter comes first: then the
    # names wanted are found without ``Signature.bind_partial`` (~80 µs a call; issue 13).
    kinds = [param.kind for param in signature.parameters.values()]
    positional: Optional[list[str]] = None if inspect.Parameter.VAR_POSITIONAL in kinds else [
        param.name for param in signature.parameters.values()
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    known = {p.name for p in signature.parameters.values()  # the names a keyword may bind to
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}

    def wanted(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The arguments by name, as ``bind_partial`` would give them; None when it would raise."""
        if positional is not None and len(args) <= len(positional) and known.issuperset(kwargs):
            bound = dict(zip(positional, args, strict=False))  # args may be fewer
            if not bound.keys() & kwargs.keys():  # a name given twice: bind_partial raises
                bound.update(kwargs)
                return bound
        try:
            return dict(signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            return None

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = wanted(args, kwargs)
        if bound is None:
            return method(*args, **kwargs)  # let the method raise its own TypeError
        key = next((bound[k] for k in ("key", "ball_id") if k in bound), None)
        return run_operation(name, bound.get("bucket_id"), key, lambda: method(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def operation(name: str) -> Callable[[F], F]:
    """Decorator form of :func:`named_operation`: ``@operation("put")``."""
    return lambda method: named_operation(name, method)


def run_operation(name: str, bucket_id: Any, key: Any, call: Callable[[], Any]) -> Any:
    """``call()`` as the user's operation ``name`` on ``bucket_id/key``: its retries are logged
    under that name, and an ``Err`` it returns is explained in the user's words
    (:func:`~.messages.explain`) unless an outer operation (``delete_bucket``) runs it."""
    with user_operation(name, bucket_id, key) as label:
        result = call()
        if getattr(result, "is_err", False) and current_operation() == label:  # not inside delete_bucket
            explain(result.unwrap_err(), name, label, bucket_id, key)
        return result


def log_failure(logger: logging.Logger, name: str, bucket_id: Any, key: Any, result: Any) -> Any:
    """ERROR once per operation that ends in ``Err`` (client-api §8.4); returns ``result``.

    Only when logging is configured (a handler exists for this logger or an ancestor): an
    unconfigured application never gets these lines from logging's last-resort stderr
    handler; it sees the ``Err`` it was returned.
    """
    if getattr(result, "is_err", False) and logger.hasHandlers():
        error = result.unwrap_err()
        logger.error("%s bucket=%s key=%s failed: %s", name, bucket_id, key, " ".join(str(error).split())[:500])
    return result


def describe_step(step: str) -> str:
    """``"put photos/cat (list photos/cat)"``: the user's operation, then the internal step."""
    operation = current_operation()
    if operation is None or operation == step:
        return step
    return f"{operation} ({step})"
