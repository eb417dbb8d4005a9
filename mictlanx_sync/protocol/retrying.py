"""The one retry layer of the client (client-api §8.1): :func:`call_with_retry`.

Sessions are mounted with ``max_retries=0``; every retry of the library happens here,
with a fresh ``tenacity.Retrying`` per call that needs a second attempt (a first attempt that
ends the call, the common case, builds none). Choosing the router and checking its breaker
happen inside ``operation``, so a retry can move to a healthy router.

>>> from mictlanx_sync.protocol.result import Ok
>>> import logging
>>> call_with_retry(lambda attempt: Ok(attempt), RetryPolicy(), logger=logging.getLogger("x"), describe="demo")
Ok(1)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Optional, TypeVar

import tenacity

from .policies import RetryPolicy, is_retryable, retry_after_seconds, wait_seconds
from .result import Err, Result

__all__ = ["call_with_retry", "retry_with_upstream_options", "OnRetry"]

T = TypeVar("T")

OnRetry = Callable[[int, Any, float], None]
"""``on_retry(failed_attempt_number, error, wait_seconds)``, called before each sleep."""


def call_with_retry(
    operation: Callable[[int], Result[T, Any]],
    policy: RetryPolicy,
    *,
    logger: logging.Logger,
    describe: str,
    on_retry: Optional[OnRetry] = None,
    cancel: Optional[threading.Event] = None,
    sleep: Optional[Callable[[float], Any]] = None,
    clock: Callable[[], float] = time.monotonic,
    rng: Any = random,
) -> Result[T, Any]:
    """Run ``operation(attempt)`` (attempt is 1-based) until it returns ``Ok`` or a final ``Err``.

    - Retried only when the ``Err``'s error passes :func:`~.policies.is_retryable`.
    - Stops after ``policy.retries`` attempts, or when the next attempt would start at or
      after ``policy.deadline`` seconds from the first (waits included). No sleep follows
      the last attempt.
    - Waits per :func:`~.policies.wait_seconds`; for 429/503, the transport's
      ``Retry-After`` (``error.detail["retry_after"]``) replaces the backoff, capped at
      ``max_delay``.
    - Logs one WARNING line per retry, calls ``on_retry`` before each sleep.
    - Returns the last ``Err`` unchanged (type kept, never a ``tenacity.RetryError``).
      An exception raised by ``operation`` (``KeyboardInterrupt`` included) propagates
      at once, as does one raised during a sleep (Ctrl-C interrupts it).
    - ``cancel``: once set (client closing, caller gone), a sleep in progress ends and no
      further attempt starts (the first always runs); the last ``Err`` is returned.

    ``sleep``, ``clock`` and ``rng`` are injectable for tests.
    """
    started = clock()
    attempts = 0
    last: Optional[Result[T, Any]] = None

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    def attempt_once() -> Result[T, Any]:
        nonlocal attempts, last
        if last is not None and cancelled():
            return last  # not a new attempt: the stop check below ends the loop
        attempts += 1
        last = operation(attempts)
        return last

    def should_retry(result: Any) -> bool:
        return isinstance(result, Err) and is_retryable(result.error)

    def next_wait(state: tenacity.RetryCallState) -> float:
        error = _last_error(state)
        return wait_seconds(policy, state.attempt_number, retry_after_seconds(error), rng)

    def out_of_budget(state: tenacity.RetryCallState) -> bool:
        # tenacity computes the wait before asking stop, so upcoming_sleep is the real one.
        if state.attempt_number >= policy.retries or cancelled():
            return True
        return clock() - started + state.upcoming_sleep >= policy.deadline

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = _last_error(state)
        wait = state.upcoming_sleep
        logger.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.2fs",
            describe, state.attempt_number, policy.retries, _one_line(error), wait,
        )
        if on_retry is not None:
            on_retry(state.attempt_number, error, wait)

    first = attempt_once()
    if not should_retry(first):
        return first  # the common case builds no retry machinery (issue 13: a small call's CPU)
    replay = [first]

    def replay_then_attempt() -> Result[T, Any]:
        # tenacity's first attempt is the one already made: it sees the same outcome.
        return replay.pop() if replay else attempt_once()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(should_retry),
        stop=out_of_budget,
        wait=next_wait,
        before_sleep=before_sleep,
        sleep=sleep if sleep is not None else _sleeper(cancel),
        # When the budget runs out, hand back the last Err itself, not a RetryError.
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    return retrying(replay_then_attempt)


def _sleeper(cancel: Optional[threading.Event]) -> Callable[[float], Any]:
    # Both block in an interruptible wait: Ctrl-C reaches the main thread during a sleep.
    return time.sleep if cancel is None else cancel.wait


def _last_error(state: tenacity.RetryCallState) -> Any:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    result = outcome.result()
    return result.error if isinstance(result, Err) else None


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())[:300]


def retry_with_upstream_options(
    fn: Callable[[], Result[T, Any]], *, tries: int, delay: float, max_delay: float, jitter: bool, backoff: float,
    logger: Optional[logging.Logger], describe: str,
) -> Result[T, Any]:
    """The ``*_with_retry`` methods of ``Peer``: upstream's arguments on the one retry layer.

    ``tries`` counts total attempts; the deadline is generous but finite (every attempt
    has its own timeout), so even ``tries=100`` ends.
    """
    if isinstance(tries, bool) or not isinstance(tries, int):
        raise TypeError(f"tries must be an int, not {type(tries).__name__}")
    policy = RetryPolicy(retries=max(1, tries), initial_delay=delay, backoff_factor=backoff, max_delay=max_delay,
                         jitter=jitter, deadline=max(300.0, max(1, tries) * (float(max_delay) + 5.0)))
    return call_with_retry(lambda _attempt: fn(), policy, logger=logger or logging.getLogger("mictlanx_sync.peer"),
                           describe=describe)
