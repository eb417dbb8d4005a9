"""Circuit breakers per router: pybreaker behind a small interface of ours (client-api §8.1).

pybreaker's ``CircuitBreaker.call()`` holds the breaker's lock while the wrapped function
runs, so a request must never run inside it. A request is instead bracketed::

    if breaker.allow():                 # before: a short critical section
        result = send_request()         # no breaker lock held: requests run concurrently
        breaker.record(result)          # after: call() on a no-op or a raising callable

``allow()`` is ``True`` when closed; when open, ``False`` until ``reset_timeout`` has passed,
then ``True`` for **one** half-open probe at a time (the others get ``False`` until the
probe reports). Outcomes reported while open (late answers to requests sent before the
breaker opened) are ignored. A probe that never reports (its caller died) is forgotten
after ``reset_timeout``, so a router cannot stay excluded forever.

Fork: these objects hold locks; a child process builds new ones (client-api §8.2).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Optional, Union

import pybreaker

from ..protocol.errors import MictlanXError
from ..protocol.policies import BreakerPolicy
from ..protocol.result import Err

__all__ = ["RouterBreaker", "NullBreaker", "Breaker", "counts_as_failure", "make_breakers",
           "CLOSED", "OPEN", "HALF_OPEN"]

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN


def counts_as_failure(error: object) -> bool:
    """Whether ``error`` says the *router* is unhealthy (client-api §8.1): what the error says
    of itself, :attr:`~mictlanx_sync.protocol.errors.MictlanXError.router_fault`.

    Transport errors count (``NetworkError``), except ``CircuitOpenError``, which is ours, and
    ``TLSVerificationError``: the router answered the handshake, and the client's trust or
    the certificate is what is wrong, which opening the breaker would only hide behind
    ``CircuitOpenError``; so does code 500 (a server fault or shutdown). Every other answer,
    404s and the peer-side 5xx codes (502, 503, 504, 666) included, proves the router is up.
    """
    return isinstance(error, MictlanXError) and error.router_fault


class _RecordedFailure(Exception):
    """Raised inside pybreaker's ``call()`` to count one failure; never escapes."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _RecordedFailure()


class _OpenedAt(pybreaker.CircuitBreakerListener):
    """Notes when the breaker opens, on our (monotonic, injectable) clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.opened_at = 0.0

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        if new_state is not None and new_state.name == OPEN:
            self.opened_at = self.clock()


class RouterBreaker:
    """The breaker of one router. Thread-safe; requests never run under its locks.

    >>> breaker = RouterBreaker(BreakerPolicy(fail_max=1), name="router-0")
    >>> breaker.allow(), breaker.record_failure(), breaker.state, breaker.allow()
    (True, None, 'open', False)
    """

    def __init__(
        self, policy: Optional[BreakerPolicy] = None, *, name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy if policy is not None else BreakerPolicy()
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = _OpenedAt(clock)
        self._probe_started: Optional[float] = None
        # Opening returns our own exception rather than CircuitBreakerError: either is caught.
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max, reset_timeout=self.policy.reset_timeout,
            listeners=[self._opened], name=name or None, throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return str(self._breaker.current_state)

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted while closed."""
        return int(self._breaker.fail_counter)

    def is_available(self) -> bool:
        """Whether :meth:`allow` would say ``True`` now, without reserving the probe."""
        with self._lock:
            return self._available(self._clock())

    def allow(self) -> bool:
        """May a request go to this router now? ``True`` reserves the half-open probe."""
        with self._lock:
            now = self._clock()
            if not self._available(now):
                return False
            state = self._breaker.current_state
            if state == CLOSED:
                return True
            if state == OPEN:
                self._breaker.half_open()
            self._probe_started = now
            return True

    def record_success(self) -> None:
        """The router answered (any answer that is not a failure, 404s included)."""
        self._record(_succeed)

    def record_failure(self) -> None:
        """A transport error or code 500: counts towards ``fail_max``; a failed probe reopens."""
        self._record(_fail)

    def record(self, outcome: Union[Err, BaseException, object, None]) -> None:
        """Record a request's outcome: an ``Err``, an error, or anything else for success."""
        error = outcome.error if isinstance(outcome, Err) else outcome
        if counts_as_failure(error):
            self.record_failure()
        else:
            self.record_success()

    def _available(self, now: float) -> bool:
        state = self._breaker.current_state
        if state == CLOSED:
            return True
        if state == OPEN:
            return now - self._opened.opened_at >= self.policy.reset_timeout
        probe = self._probe_started
        return probe is None or now - probe >= self.policy.reset_timeout

    def _record(self, outcome: Callable[[], None]) -> None:
        with self._lock:
            if self._breaker.current_state == OPEN:
                return  # a late answer to a request sent before the breaker opened
            try:
                # A short critical section: pybreaker's lock is held only around the no-op.
                self._breaker.call(outcome)
            except (_RecordedFailure, pybreaker.CircuitBreakerError):
                pass
            if self._breaker.current_state != HALF_OPEN:
                self._probe_started = None

    def __repr__(self) -> str:
        return f"RouterBreaker(name={self.name!r}, state={self.state!r}, policy={self.policy!r})"


class NullBreaker:
    """The breaker when breakers are disabled (``breaker=None``): always closed."""

    name = ""
    state = CLOSED
    fail_counter = 0

    def is_available(self) -> bool:
        return True

    def allow(self) -> bool:
        return True

    def record_success(self) -> None:
        return None

    def record_failure(self) -> None:
        return None

    def record(self, outcome: object) -> None:
        return None

    def __repr__(self) -> str:
        return "NullBreaker()"


Breaker = Union[RouterBreaker, NullBreaker]


def make_breakers(routers: Iterable[Any], policy: Optional[BreakerPolicy]) -> dict[Any, Breaker]:
    """One breaker per router (a ``NullBreaker`` each when ``policy`` is ``None``).

    Each router must be hashable; its ``base_url()`` names the breaker when it has one.
    """
    breakers: dict[Any, Breaker] = {}
    for router in routers:
        if router in breakers:
            continue
        if policy is None:
            breakers[router] = NullBreaker()
        else:
            base_url = getattr(router, "base_url", None)
            name = str(base_url()) if callable(base_url) else str(router)
            breakers[router] = RouterBreaker(policy, name=name)
    return breakers
