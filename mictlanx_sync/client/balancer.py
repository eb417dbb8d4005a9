"""Router choice per attempt (client-api §8.1 "load_balancing" and "Router per attempt").

Routers are opaque hashable objects (the ``Router`` endpoint class); only their order and
identity matter here. A router is eligible when its breaker allows a request.

>>> balancer = Balancer(["r0", "r1"], "ROUND_ROBIN")
>>> with balancer.acquire() as lease:
...     lease.router, balancer.in_flight("r0")
('r0', 1)
>>> balancer.in_flight("r0")
0
"""

from __future__ import annotations

import random
import threading
from typing import Any, Callable, Collection, Generic, Mapping, Optional, Sequence, TypeVar

from ..protocol.errors import CircuitOpenError, ValidationError
from ..protocol.result import Err, Ok, Result
from .breaker import Breaker, NullBreaker

__all__ = ["Balancer", "Lease", "LOAD_BALANCING_POLICIES", "normalize_policy"]

R = TypeVar("R")

LOAD_BALANCING_POLICIES = ("ROUND_ROBIN", "LEAST_INFLIGHT", "2CHOICES")


def normalize_policy(name: str) -> str:
    """The canonical (upper-case) policy name; an unknown one raises ``ValidationError``."""
    if not isinstance(name, str):
        raise TypeError(f"load_balancing must be a str, got {type(name).__name__}")
    canonical = name.strip().upper()
    if canonical not in LOAD_BALANCING_POLICIES:
        raise ValidationError(f"unknown load_balancing {name!r}; expected one of {', '.join(LOAD_BALANCING_POLICIES)}")
    return canonical


class Lease(Generic[R]):
    """One request's hold on a router: counted in flight until :meth:`release` (or ``with`` exit).

    ``breaker`` is the router's breaker, to record the outcome: ``lease.breaker.record(result)``.
    """

    def __init__(self, router: R, breaker: Breaker, release: Callable[[R], None]) -> None:
        self.router = router
        self.breaker = breaker
        self._release = release
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Stop counting this request in flight; idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._release(self.router)

    def __enter__(self) -> Lease[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease(router={self.router!r}, released={self._released})"


class Balancer(Generic[R]):
    """Picks a router per attempt among those whose breaker allows a request. Thread-safe.

    - ``ROUND_ROBIN``: a shared counter walks the routers in the given order, skipping
      ineligible ones.
    - ``LEAST_INFLIGHT`` (default): the fewest requests in flight from this client; ties go
      to the earliest in the given (URI) order.
    - ``2CHOICES``: two distinct random eligible routers, keeping the one with fewer in flight.

    ``breakers`` maps each router to its breaker (missing ones get a ``NullBreaker``).
    """

    def __init__(
        self, routers: Sequence[R], policy: str = "LEAST_INFLIGHT",
        breakers: Optional[Mapping[R, Breaker]] = None, *, rng: Optional[random.Random] = None,
    ) -> None:
        self.policy = normalize_policy(policy)
        unique = list(dict.fromkeys(routers))  # same router twice would skew the counts
        if not unique:
            raise ValidationError("at least one router is required")
        self._routers: tuple[R, ...] = tuple(unique)
        given: Mapping[R, Breaker] = breakers if breakers is not None else {}
        self._breakers: dict[R, Breaker] = {r: given[r] if r in given else NullBreaker() for r in unique}
        self._in_flight: dict[R, int] = dict.fromkeys(unique, 0)
        self._next = 0
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()

    @property
    def routers(self) -> tuple[R, ...]:
        return self._routers

    def breaker(self, router: R) -> Breaker:
        """The breaker of ``router``."""
        return self._breakers[router]

    def in_flight(self, router: R) -> int:
        """Requests to ``router`` from this client now in flight (leases not released)."""
        with self._lock:
            return self._in_flight[router]

    def acquire(self, exclude: Collection[Any] = ()) -> Lease[R]:
        """A lease on the chosen router (use it with ``with``, or call ``release()``).

        ``exclude``: routers that just failed; another eligible router is preferred, and an
        excluded one is reused only when it is the only eligible one.

        Raises ``CircuitOpenError`` (retryable) when no router is eligible; see
        :meth:`try_acquire` for the ``Result`` form.
        """
        with self._lock:
            eligible = [r for r in self._routers if self._breakers[r].is_available()]
            candidates = [r for r in eligible if r not in exclude] or eligible
            while candidates:
                router = self._choose(candidates)
                # allow() reserves a half-open probe, so only the chosen router is asked.
                if self._breakers[router].allow():
                    self._in_flight[router] += 1
                    return Lease(router, self._breakers[router], self._release)
                candidates.remove(router)  # lost a race for the probe: pick again
        states = ", ".join(f"{_describe(r)}={self._breakers[r].state}" for r in self._routers)
        raise CircuitOpenError(f"no eligible router ({states})")

    def try_acquire(self, exclude: Collection[Any] = ()) -> Result[Lease[R], CircuitOpenError]:
        """:meth:`acquire`, returning ``Err(CircuitOpenError)`` instead of raising."""
        try:
            return Ok(self.acquire(exclude))
        except CircuitOpenError as error:
            return Err(error)

    def _choose(self, candidates: list[R]) -> R:
        if self.policy == "ROUND_ROBIN":
            count = len(self._routers)
            start = self._next
            self._next = (self._next + 1) % count
            for offset in range(count):
                router = self._routers[(start + offset) % count]
                if router in candidates:
                    return router
        if self.policy == "2CHOICES" and len(candidates) > 1:
            first, second = self._rng.sample(candidates, 2)
            return second if self._in_flight[second] < self._in_flight[first] else first
        # LEAST_INFLIGHT; min() keeps the first of equals, and candidates keep URI order.
        return min(candidates, key=lambda r: self._in_flight[r])

    def _release(self, router: R) -> None:
        with self._lock:
            self._in_flight[router] -= 1

    def __repr__(self) -> str:
        return f"Balancer(policy={self.policy!r}, routers={[_describe(r) for r in self._routers]})"


def _describe(router: Any) -> str:
    base_url = getattr(router, "base_url", None)
    return str(base_url()) if callable(base_url) else str(router)
