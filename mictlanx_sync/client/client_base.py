"""``ClientBase``: the state and the small helpers every part of ``Client`` shares.

``Client`` is one class, written in four modules by concern: :mod:`.client` (construction,
lifecycle, logging), :mod:`.client_writes` (``put*``, bulk), :mod:`.client_reads` (``get*``)
and :mod:`.client_buckets` (metadata, listings, deletes). Each part is a base of ``Client``
built on this one, which declares the attributes ``Client.__init__`` sets and holds what
they all call: the closed / fork check, the ``Err`` logging and the timeout resolution.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

from ..protocol.errors import ClientClosedError, MictlanXError
from ..protocol.policies import RetryPolicy
from ..protocol.result import Err
from ..protocol.router import Router
from ..protocol.timeouts import TimeoutArg, resolve_timeout
from .bulk import BulkRunner
from .dispatch import Dispatcher
from .lifecycle import Lifecycle
from .object_read import ObjectReader
from .writes import Writer

__all__ = ["ClientBase", "Timeout"]

#: A call's ``timeout`` argument: read seconds, a ``(connect, read)`` pair, or ``None`` (the client's).
Timeout = TimeoutArg


class ClientBase:
    """What the parts of ``Client`` share; set up by ``Client.__init__``, never used alone."""

    client_id: str
    max_workers: int
    max_bulk_workers: int
    verify: Any
    timeout: Tuple[float, float]
    progress: Optional[bool]
    #: chunks up to this many bytes travel inside their metadata request (0: never)
    inline_max: int
    logger: logging.Logger
    routers: List[Router]
    _lifecycle: Lifecycle
    _dispatcher: Dispatcher
    _writer: Writer
    _reader: ObjectReader
    _bulk: BulkRunner

    def _ready(self) -> Optional[Err[Any, MictlanXError]]:
        """``Err`` when the client is closed; else ``None``, after rebuilding what a fork broke."""
        try:
            self._lifecycle.check()
        except ClientClosedError as closed:
            return Err(closed)
        return None

    def _logged(self, operation: str, bucket_id: Any, key: Any, result: Any) -> Any:
        """ERROR once per operation that ends in ``Err`` (client-api §8.4); returns ``result``.

        Only when logging is configured (a handler exists for this logger or an ancestor):
        an unconfigured application never gets these lines from logging's last-resort
        stderr handler; it sees the ``Err`` it was returned.
        """
        if isinstance(result, Err) and self.logger.hasHandlers():
            error = result.unwrap_err()
            self.logger.error("%s bucket=%s key=%s failed: %s", operation, bucket_id, key,
                              " ".join(str(error).split())[:500])
        return result

    def _timeout(self, timeout: Timeout) -> Tuple[float, float]:
        """A call's ``timeout`` argument as ``(connect, read)``; ``None`` is the client's."""
        return resolve_timeout(timeout, self.timeout)

    def _call(self, describe: str, request: Any, timeout: Timeout, policy: Optional[RetryPolicy] = None) -> Any:
        """``request(router)`` through the dispatcher (router choice, breaker, retry) unless closed."""
        if (closed := self._ready()) is not None:
            return closed
        return self._dispatcher.call(describe, request, policy=policy)
