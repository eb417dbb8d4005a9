"""The state every ``Client`` operation shares, and the one way a request is sent.

:meth:`Engine.call` is the single retry layer of the client: each attempt picks a router
through the balancer (skipping open breakers, moving away from the router that just
failed), runs one request on it, records the outcome in that router's breaker, and the
retry policy decides whether to try again. Chunk transfers run in one bounded transfer
pool, and a client-wide semaphore of ``max_workers`` chunk buffers bounds memory whatever
the number of calling threads (client-api §8.2).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

from ..protocol.errors import CircuitOpenError, ClientClosedError, MictlanXError, RequestTimeoutError, UnknownError
from ..protocol.policies import BreakerPolicy, RetryPolicy, is_retryable
from ..protocol.result import Err, Result
from ..protocol.retrying import call_with_retry
from ..protocol.router import Router
from ..protocol.scopes import CallScope, call_scope
from .balancer import Balancer
from .breaker import make_breakers
from .cache import ChunkCache
from .operation import describe_step

T = TypeVar("T")

__all__ = ["Engine", "wait_in_slices"]

#: How long a waiting caller sleeps at a time, so Ctrl-C is seen promptly in notebooks.
WAIT_SLICE = 0.25

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Engine:
    """Routers, breakers, balancer, pools, buffer budget and cache of one client. Thread-safe."""

    def __init__(
        self, routers: Sequence[Router], *, retry: RetryPolicy, breaker: Optional[BreakerPolicy],
        load_balancing: str, max_workers: int, max_bulk_workers: int, cache: Optional[ChunkCache],
        logger: logging.Logger, name: str,
    ) -> None:
        self.routers = list(routers)
        self.retry = retry
        self.breaker_policy = breaker
        self.load_balancing = load_balancing
        self.max_workers = max_workers
        self.max_bulk_workers = max_bulk_workers
        self.cache = cache
        self.logger = logger
        self.name = name
        self.closing = threading.Event()
        #: the parent of every call scope of this client: close() aborts it, so no call
        #: outlives the client (a thread blocked in a read is woken by its socket's shutdown)
        self.root_scope = CallScope()
        self._forked = False
        self._build_process_state()
        _ENGINES.add(self)

    def _build_process_state(self) -> None:
        """Everything a forked child must not share with its parent: locks, threads, breakers."""
        self.balancer: Balancer[Router] = Balancer(
            self.routers, self.load_balancing, make_breakers(self.routers, self.breaker_policy))
        self.buffers = threading.BoundedSemaphore(self.max_workers)
        self._pool_lock = threading.Lock()
        self._transfer_pool: Optional[cf.ThreadPoolExecutor] = None
        self._bulk_pool: Optional[cf.ThreadPoolExecutor] = None
        self.bulk_jobs: dict[str, Any] = {}
        self.bulk_lock = threading.Lock()

    def check_process(self) -> None:
        """In a forked child, rebuild pools, locks and breakers and reopen the cache (once)."""
        if self._forked:
            self._forked = False
            self._build_process_state()
            if self.cache is not None:
                self.cache.reopen()

    # --- pools ---------------------------------------------------------------------------
    def transfer_pool(self) -> cf.ThreadPoolExecutor:
        """The one transfer pool: its tasks move chunk bytes and never wait on each other.

        Raises ``ClientClosedError`` once closing (never a new pool then).
        """
        with self._pool_lock:
            if self.closing.is_set():
                raise ClientClosedError()
            if self._transfer_pool is None:
                self._transfer_pool = cf.ThreadPoolExecutor(self.max_workers, f"mictlanx-{self.name}")
            return self._transfer_pool

    def bulk_pool(self) -> cf.ThreadPoolExecutor:
        """Bulk workers act as callers of the transfer pool (they may wait on it)."""
        with self._pool_lock:
            if self.closing.is_set():
                raise ClientClosedError()
            if self._bulk_pool is None:
                self._bulk_pool = cf.ThreadPoolExecutor(self.max_bulk_workers, f"mictlanx-bulk-{self.name}")
            return self._bulk_pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Run ``fn(*args)`` in the transfer pool; a closed client raises ``ClientClosedError``
        (typed, so callers return it), never ``RuntimeError`` from a pool shut down meanwhile."""
        try:
            # The context carries the user's operation, so a chunk's retries are logged under it.
            return self.transfer_pool().submit(contextvars.copy_context().run, fn, *args)
        except RuntimeError:  # close() shut the pool down between the lookup and the submit
            raise ClientClosedError() from None

    def acquire_buffer(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Take one chunk buffer from the client-wide budget; ``False`` if cancelled meanwhile."""
        while not self.buffers.acquire(timeout=WAIT_SLICE):
            if cancelled() or self.closing.is_set():
                return False
        return True

    def scope(self, seconds: Optional[float] = None) -> Any:
        """A call scope (``protocol.scopes``) under the current one, else under this client's
        root: its calls end at its deadline, on ``abort()``, or when the client closes."""
        return call_scope(seconds, self.root_scope)

    def shutdown(self, wait: bool = True) -> None:
        self.closing.set()
        self.root_scope.abort("closed")  # calls blocked in a read return now
        with self._pool_lock:
            pools = [p for p in (self._bulk_pool, self._transfer_pool) if p is not None]
            self._bulk_pool = self._transfer_pool = None
        for pool in pools:
            pool.shutdown(wait=wait, cancel_futures=True)
        for router in self.routers:
            router.close()
        if self.cache is not None:
            self.cache.close()

    # --- requests ------------------------------------------------------------------------
    def call(
        self, describe: str, request: Callable[[Router], Result[T, MictlanXError]], *,
        policy: Optional[RetryPolicy] = None, pin: Optional[Router] = None,
    ) -> Result[T, MictlanXError]:
        """Run ``request(router)`` with retries; each attempt chooses its router.

        ``pin`` sends every attempt to that router (write groups live on one router).
        Returns the last result; an error keeps its type and gets ``router`` set.
        """
        if self.closing.is_set():
            return Err(ClientClosedError())
        failed: list[Router] = []

        def attempt(number: int) -> Result[T, MictlanXError]:
            if pin is not None:
                return self._attempt_on(pin, request, failed, describe=describe)
            try:
                lease = self.balancer.acquire(exclude=failed[-1:])
            except CircuitOpenError as error:
                return Err(error)
            with lease:
                return self._attempt_on(lease.router, request, failed, lease.breaker, describe=describe)

        policy = policy or self.retry
        # One deadline for the whole call, attempts and waits included, enforced on the
        # sockets themselves: a server that drips its answer cannot hold it longer.
        with self.scope(policy.deadline) as scope:
            result = call_with_retry(attempt, policy, logger=self.logger, describe=describe_step(describe),
                                     cancel=scope.cancelled)
        if result.is_err and scope.aborted:
            if scope.expired:
                cause = result.unwrap_err()
                expired = RequestTimeoutError(f"{describe_step(describe)}: no answer within the {policy.deadline:g} s "
                                              "deadline", bucket_id=getattr(cause, "bucket_id", None),
                                              key=getattr(cause, "key", None), router=getattr(cause, "router", None))
                expired.__cause__ = cause
                return Err(expired)
            if self.closing.is_set():
                return Err(ClientClosedError())
        return result

    def _attempt_on(self, router: Router, request: Callable[[Router], Result[T, MictlanXError]],
                    failed: list[Router], breaker: Any = None, describe: str = "") -> Result[T, MictlanXError]:
        if breaker is None:
            breaker = self.balancer.breaker(router)
        started = time.monotonic()
        try:
            result = request(router)
        except MictlanXError as raised:  # defensive: the protocol layer returns, not raises
            result = Err(raised)
        except (OSError, RuntimeError) as raised:
            result = Err(UnknownError(f"{type(raised).__name__}: {raised}"))
        breaker.record(result)
        if self.logger.isEnabledFor(logging.DEBUG):  # one line per attempt (client-api §8.4)
            outcome = "ok" if result.is_ok else _status(result.unwrap_err())
            self.logger.debug("%s %s %s %.1f ms", describe, router.base_url(), outcome,
                              (time.monotonic() - started) * 1000)
        if result.is_err:
            failure = result.unwrap_err()
            if isinstance(failure, MictlanXError) and failure.router is None:
                failure.router = router.base_url()
            if is_retryable(failure):
                failed.append(router)
        return result


def _status(error: object) -> str:
    if isinstance(error, MictlanXError):
        return f"{type(error).__name__} {error.status_code}/{error.code}"
    return type(error).__name__


def wait_in_slices(futures: Iterable[cf.Future], return_when: str = cf.FIRST_COMPLETED,
                   cancelled: Callable[[], bool] = lambda: False) -> tuple[set[cf.Future], set[cf.Future]]:
    """``concurrent.futures.wait`` in short slices, so KeyboardInterrupt reaches the caller."""
    pending = set(futures)
    done: set[cf.Future] = set()
    while pending:
        finished, pending = cf.wait(pending, timeout=WAIT_SLICE, return_when=return_when)
        done |= finished
        if finished and return_when == cf.FIRST_COMPLETED:
            break
        if return_when == cf.FIRST_EXCEPTION and any(f.exception() is not None for f in finished if not f.cancelled()):
            break
        if cancelled():
            break
    return done, pending
