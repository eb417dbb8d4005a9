"""``Dispatcher``: how every request of one client is sent, the client's one retry layer.

Each attempt of :meth:`Dispatcher.call` picks a router through the :class:`~.balancer.Balancer`
(skipping routers whose circuit breaker is open, moving away from the one that just failed),
runs one request on it, and tells that router's breaker the outcome; the retry policy
(:func:`mictlanx_sync.protocol.retrying.call_with_retry`) decides whether to try again. The
decisions read what the error says of itself (client-api §8.1, :mod:`mictlanx_sync.protocol.errors`):

- ``error.retryable``: another attempt may succeed, and it goes to another router;
- ``error.router_fault``: the router's breaker counts a failure (else a success: the router
  answered);
- ``error.retry_after``: the wait the server (or the client's own replica failover) asked for.

One deadline bounds a whole call, attempts and waits included, on the sockets themselves
(a call scope): a router that drips its answer cannot hold it longer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

from ..protocol.errors import (
    CircuitOpenError,
    ClientClosedError,
    MictlanXError,
    RequestTimeoutError,
    UnknownError,
)
from ..protocol.policies import BreakerPolicy, RetryPolicy
from ..protocol.result import Err, Result
from ..protocol.retrying import call_with_retry
from ..protocol.router import Router
from .balancer import Balancer
from .breaker import Breaker, make_breakers
from .lifecycle import Lifecycle
from .operation import describe_step

T = TypeVar("T")

__all__ = ["Dispatcher", "Request"]

#: One attempt's request, run on the router the attempt chose.
Request = Callable[[Router], Result[T, MictlanXError]]


class Dispatcher:
    """Routers, their breakers and the retry policy of one client. Thread-safe.

    ``call(describe, request)`` is the only way the client sends a request; operations
    never pick a router, retry or record an outcome themselves.
    """

    def __init__(self, routers: Sequence[Router], *, retry: RetryPolicy, breaker: Optional[BreakerPolicy],
                 load_balancing: str, logger: logging.Logger, lifecycle: Lifecycle) -> None:
        self.routers = list(routers)
        self.retry = retry
        self.logger = logger
        self.lifecycle = lifecycle
        self._breaker_policy = breaker
        self._load_balancing = load_balancing
        self.balancer = self._new_balancer()
        lifecycle.on_fork(self._after_fork)

    def _new_balancer(self) -> Balancer[Router]:
        return Balancer(self.routers, self._load_balancing, make_breakers(self.routers, self._breaker_policy))

    def _after_fork(self) -> None:
        self.balancer = self._new_balancer()  # breakers hold locks the parent may have held

    def breaker(self, router: Router) -> Breaker:
        """The circuit breaker of one of :attr:`routers`."""
        return self.balancer.breaker(router)

    def call(self, describe: str, request: Request[T], *, policy: Optional[RetryPolicy] = None,
             pin: Optional[Router] = None) -> Result[T, MictlanXError]:
        """Run ``request(router)`` with retries; each attempt chooses its router.

        ``pin`` sends every attempt to that router (write groups live on one router).
        Returns the last result; an error keeps its type and gets ``router`` set. A call
        cut by its deadline ends in ``RequestTimeoutError``, one cut by ``close()`` in
        ``ClientClosedError``.
        """
        if self.lifecycle.closed:
            return Err(ClientClosedError())
        failed: list[Router] = []

        def attempt(number: int) -> Result[T, MictlanXError]:
            if pin is not None:
                return self._attempt_on(pin, self.balancer.breaker(pin), request, failed, describe)
            try:
                lease = self.balancer.acquire(exclude=failed[-1:])
            except CircuitOpenError as error:
                return Err(error)
            with lease:
                return self._attempt_on(lease.router, lease.breaker, request, failed, describe)

        policy = policy or self.retry
        with self.lifecycle.scope(policy.deadline) as scope:
            result = call_with_retry(attempt, policy, logger=self.logger, describe=describe_step(describe),
                                     cancel=scope.cancelled)
        if result.is_err and scope.aborted:
            if scope.expired:
                return Err(_expired(describe, policy, result.unwrap_err()))
            if self.lifecycle.closed:
                return Err(ClientClosedError())
        return result

    def _attempt_on(self, router: Router, breaker: Breaker, request: Request[T], failed: list[Router],
                    describe: str) -> Result[T, MictlanXError]:
        started = time.monotonic()
        try:
            result = request(router)
        except MictlanXError as raised:  # defensive: the protocol layer returns, not raises
            result = Err(raised)
        except (OSError, RuntimeError) as raised:
            result = Err(UnknownError(f"{type(raised).__name__}: {raised}"))
        failure = result.unwrap_err() if result.is_err else None
        if failure is not None and failure.router_fault:
            breaker.record_failure()
        else:
            breaker.record_success()  # any answer that is not a fault proves the router is up
        if self.logger.isEnabledFor(logging.DEBUG):  # one line per attempt (client-api §8.4)
            outcome = "ok" if failure is None else f"{type(failure).__name__} {failure.status_code}/{failure.code}"
            self.logger.debug("%s %s %s %.1f ms", describe, router.base_url(), outcome,
                              (time.monotonic() - started) * 1000)
        if failure is not None:
            if failure.router is None:
                failure.router = router.base_url()
            if failure.retryable:
                failed.append(router)  # the next attempt prefers another router
        return result

    def close(self) -> None:
        """Close every router's pooled connections (the lifecycle has ended the calls)."""
        for router in self.routers:
            router.close()


def _expired(describe: str, policy: RetryPolicy, cause: Any) -> RequestTimeoutError:
    expired = RequestTimeoutError(f"{describe_step(describe)}: no answer within the {policy.deadline:g} s deadline",
                                  bucket_id=getattr(cause, "bucket_id", None), key=getattr(cause, "key", None),
                                  router=getattr(cause, "router", None))
    expired.__cause__ = cause
    return expired
