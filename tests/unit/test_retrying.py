import logging
import time

import pytest

from mictlanx_sync.protocol.errors import (
    ConnectFailedError,
    NotFoundError,
    RequestTimeoutError,
    ResponseFormatError,
    UnknownError,
)
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.result import Err, Ok
from mictlanx_sync.protocol.retrying import call_with_retry

LOGGER = logging.getLogger("tests.retrying")


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def run(operation, policy, **kwargs):
    fake = kwargs.pop("fake", None) or FakeTime()
    result = call_with_retry(operation, policy, logger=LOGGER, describe="GET b/k",
                             sleep=fake.sleep, clock=fake.clock, **kwargs)
    return result, fake


def failing(*errors):
    """An operation returning the given errors in turn (the last one repeats)."""
    attempts = []

    def operation(attempt):
        attempts.append(attempt)
        return Err(errors[min(len(attempts), len(errors)) - 1])

    return operation, attempts


NO_JITTER = RetryPolicy(retries=4, initial_delay=1.0, backoff_factor=2.0, max_delay=10.0, jitter=False)


def test_success_needs_one_attempt_and_no_sleep():
    result, fake = run(lambda attempt: Ok(attempt), NO_JITTER)
    assert result == Ok(1) and fake.sleeps == []


def test_retries_count_all_attempts_and_no_sleep_follows_the_last():
    operation, attempts = failing(ConnectFailedError("refused"))
    result, fake = run(operation, NO_JITTER)
    assert attempts == [1, 2, 3, 4]
    assert fake.sleeps == [1.0, 2.0, 4.0]  # three waits between four attempts
    assert isinstance(result, Err) and isinstance(result.error, ConnectFailedError)


def test_success_after_retries_returns_ok():
    calls = []

    def operation(attempt):
        calls.append(attempt)
        return Ok("done") if attempt == 3 else Err(UnknownError("boom", 503, 500))

    result, fake = run(operation, NO_JITTER)
    assert result == Ok("done") and calls == [1, 2, 3] and fake.sleeps == [1.0, 2.0]


def test_last_error_is_returned_unchanged():
    first, last = RequestTimeoutError("t"), UnknownError("server fault", 500, 500)
    operation, attempts = failing(first, first, last)
    result, _ = run(operation, RetryPolicy(retries=3, jitter=False))
    assert result.unwrap_err() is last


@pytest.mark.parametrize("error", [NotFoundError(), ResponseFormatError(), UnknownError("x", 400, 400)])
def test_non_retryable_errors_return_at_once(error):
    operation, attempts = failing(error)
    result, fake = run(operation, NO_JITTER)
    assert attempts == [1] and fake.sleeps == []
    assert result.unwrap_err() is error


def test_a_non_retryable_error_after_retries_stops_the_loop():
    gone = NotFoundError()
    operation, attempts = failing(ConnectFailedError(), gone)
    result, _ = run(operation, NO_JITTER)
    assert attempts == [1, 2] and result.unwrap_err() is gone


def test_no_attempt_starts_after_the_deadline():
    # Waits 1, 2, 4, 8...: attempt 4 would start at 7 s, past a 6 s deadline.
    policy = RetryPolicy(retries=50, initial_delay=1.0, backoff_factor=2.0, max_delay=10.0,
                         jitter=False, deadline=6.0)
    operation, attempts = failing(ConnectFailedError())
    result, fake = run(operation, policy)
    assert attempts == [1, 2, 3] and fake.sleeps == [1.0, 2.0]
    assert fake.now < policy.deadline
    assert isinstance(result.unwrap_err(), ConnectFailedError)


def test_deadline_counts_time_spent_in_attempts():
    policy = RetryPolicy(retries=50, initial_delay=1.0, backoff_factor=1.0, jitter=False, deadline=10.0)
    fake = FakeTime()
    attempts = []

    def slow(attempt):
        attempts.append(attempt)
        fake.now += 4.0  # each attempt takes 4 s
        return Err(RequestTimeoutError())

    run(slow, policy, fake=fake)
    # Starts at 0 and 5; a third would start at 10 = the deadline.
    assert attempts == [1, 2]


def test_jittered_waits_stay_below_the_backoff():
    policy = RetryPolicy(retries=6, initial_delay=1.0, backoff_factor=2.0, max_delay=5.0, jitter=True)
    operation, _ = failing(ConnectFailedError())
    _, fake = run(operation, policy)
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(fake.sleeps) == 5
    assert all(0.0 <= s <= c for s, c in zip(fake.sleeps, ceilings, strict=True))


def test_retry_after_replaces_the_backoff_for_429_and_503():
    throttled = UnknownError("slow down", 429, 500, {"retry_after": "3"})
    operation, _ = failing(throttled, throttled, UnknownError("late", 503, 500, {"retry_after": "99"}))
    _, fake = run(operation, RetryPolicy(retries=4, initial_delay=0.1, max_delay=7.0, jitter=True))
    assert fake.sleeps == [3.0, 3.0, 7.0]


def test_each_retry_logs_one_warning_line_and_calls_on_retry(caplog):
    seen = []
    operation, _ = failing(ConnectFailedError("refused\nby peer"))
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        run(operation, RetryPolicy(retries=3, jitter=False),
            on_retry=lambda attempt, error, wait: seen.append((attempt, type(error), wait)))
    records = [r for r in caplog.records if r.name == LOGGER.name]
    assert len(records) == 2 and all(r.levelno == logging.WARNING for r in records)
    assert all("\n" not in r.getMessage() and "GET b/k" in r.getMessage() for r in records)
    assert seen == [(1, ConnectFailedError, 0.5), (2, ConnectFailedError, 1.0)]


def test_exceptions_from_the_operation_propagate_unchanged():
    def operation(attempt):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(operation, NO_JITTER)


def test_an_interrupted_sleep_propagates():
    fake = FakeTime()

    def sleep(seconds):
        raise KeyboardInterrupt

    operation, attempts = failing(ConnectFailedError())
    with pytest.raises(KeyboardInterrupt):
        call_with_retry(operation, NO_JITTER, logger=LOGGER, describe="x", sleep=sleep, clock=fake.clock)
    assert attempts == [1]


def test_each_call_is_independent():
    policy = RetryPolicy(retries=2, jitter=False)
    for _ in range(3):
        operation, attempts = failing(ConnectFailedError())
        run(operation, policy)
        assert attempts == [1, 2]


def test_default_sleep_and_clock_work():
    policy = RetryPolicy(retries=2, initial_delay=0.0, jitter=False)
    operation, attempts = failing(ConnectFailedError())
    result = call_with_retry(operation, policy, logger=LOGGER, describe="real")
    assert attempts == [1, 2] and result.is_err


def test_cancel_ends_a_sleep_and_starts_no_further_attempt():
    import threading

    cancel = threading.Event()
    # Real sleeps: 0.01 s, then 100 s, which the cancel cuts short.
    policy = RetryPolicy(retries=5, initial_delay=0.01, backoff_factor=10_000.0, max_delay=100.0, jitter=False)
    attempts = []

    def operation(attempt):
        attempts.append(attempt)
        if attempt == 2:
            threading.Timer(0.05, cancel.set).start()
        return Err(ConnectFailedError(f"attempt {attempt}"))

    t0 = time.monotonic()
    result = call_with_retry(operation, policy, logger=LOGGER, describe="x", cancel=cancel)
    assert time.monotonic() - t0 < 5.0
    assert attempts == [1, 2]
    assert result.unwrap_err().message == "attempt 2"
