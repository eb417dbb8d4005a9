import threading
import time

import pytest

from mictlanx_sync.client.breaker import NullBreaker, RouterBreaker, counts_as_failure, make_breakers
from mictlanx_sync.protocol.errors import (
    CircuitOpenError,
    ConnectFailedError,
    DNSResolutionError,
    GetChunkError,
    MaxAvailabilityReachedError,
    NotFoundError,
    PeerOperationError,
    PutChunksError,
    RequestTimeoutError,
    TLSVerificationError,
    UnknownError,
    UpstreamProtocolError,
)
from mictlanx_sync.protocol.policies import BreakerPolicy
from mictlanx_sync.protocol.result import Err, Ok


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(fail_max=3, reset_timeout=30.0):
    clock = FakeClock()
    return RouterBreaker(BreakerPolicy(fail_max=fail_max, reset_timeout=reset_timeout), name="r0", clock=clock), clock


@pytest.mark.parametrize("error", [
    ConnectFailedError(), DNSResolutionError(), RequestTimeoutError(), UpstreamProtocolError(),
    UnknownError(), UnknownError("shutting down", 503, 500),
])
def test_transport_errors_and_code_500_count(error):
    assert counts_as_failure(error)


@pytest.mark.parametrize("error", [
    NotFoundError(), NotFoundError("404: upstream", 500, 404), CircuitOpenError(),
    MaxAvailabilityReachedError("x", 503, 666), GetChunkError(), PutChunksError(), PeerOperationError(),
    ValueError("not ours"), None, TLSVerificationError(),
])
def test_other_answers_do_not_count(error):
    assert not counts_as_failure(error)


def test_opens_after_fail_max_consecutive_failures():
    breaker, _ = make(fail_max=3)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow() and not breaker.is_available()


def test_a_success_resets_the_failure_count():
    breaker, _ = make(fail_max=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.fail_counter == 1


def test_404s_do_not_open_the_breaker():
    breaker, _ = make(fail_max=2)
    for _ in range(10):
        breaker.record(Err(NotFoundError()))
    assert breaker.state == "closed" and breaker.fail_counter == 0
    breaker.record(Err(ConnectFailedError()))
    breaker.record(ConnectFailedError())
    assert breaker.state == "open"


def test_half_open_lets_one_probe_through_at_a_time():
    breaker, clock = make(fail_max=1, reset_timeout=30.0)
    breaker.record_failure()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.is_available()
    assert breaker.allow()  # the probe
    assert breaker.state == "half-open"
    assert not breaker.allow() and not breaker.allow()
    assert not breaker.is_available()


def test_successful_probe_closes():
    breaker, clock = make(fail_max=1)
    breaker.record_failure()
    clock.now += 31
    assert breaker.allow()
    breaker.record(Ok(None))
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_another_reset_timeout():
    breaker, clock = make(fail_max=1, reset_timeout=10.0)
    breaker.record_failure()
    clock.now += 11
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 9
    assert not breaker.allow()
    clock.now += 2
    assert breaker.allow()


def test_a_probe_that_never_reports_is_forgotten_after_reset_timeout():
    breaker, clock = make(fail_max=1, reset_timeout=10.0)
    breaker.record_failure()
    clock.now += 11
    assert breaker.allow()
    clock.now += 5
    assert not breaker.allow()
    clock.now += 6
    assert breaker.allow()


def test_late_answers_while_open_are_ignored():
    breaker, clock = make(fail_max=1)
    breaker.record_failure()
    breaker.record_success()  # a request sent before the breaker opened
    assert breaker.state == "open" and not breaker.allow()


def test_only_one_of_many_threads_gets_the_probe():
    breaker, clock = make(fail_max=1)
    breaker.record_failure()
    clock.now += 31
    barrier = threading.Barrier(16)
    granted = []

    def worker():
        barrier.wait()
        granted.append(breaker.allow())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 1


def test_requests_never_run_inside_the_breaker_lock():
    """A slow request in one thread does not block allow()/record in another."""
    breaker = RouterBreaker(BreakerPolicy(fail_max=5))
    started, finish = threading.Event(), threading.Event()

    def slow_request():
        assert breaker.allow()
        started.set()
        finish.wait(5)  # the "request" runs with no breaker lock held
        breaker.record_success()

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert started.wait(5)
        t0 = time.monotonic()
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state == "closed"
        assert time.monotonic() - t0 < 0.5
    finally:
        finish.set()
        thread.join()


def test_concurrent_records_are_counted_exactly():
    breaker = RouterBreaker(BreakerPolicy(fail_max=1000))

    def worker():
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.fail_counter == 800 and breaker.state == "closed"


def test_null_breaker_always_allows():
    breaker = NullBreaker()
    for _ in range(100):
        breaker.record_failure()
        breaker.record(Err(ConnectFailedError()))
    assert breaker.allow() and breaker.is_available() and breaker.state == "closed"


class FakeRouter:
    def __init__(self, url):
        self.url = url

    def base_url(self):
        return self.url


def test_make_breakers_one_per_router():
    routers = [FakeRouter("http://a"), FakeRouter("http://b")]
    breakers = make_breakers(routers, BreakerPolicy(fail_max=2))
    assert set(breakers) == set(routers)
    assert all(isinstance(b, RouterBreaker) for b in breakers.values())
    assert breakers[routers[0]].name == "http://a"
    assert breakers[routers[0]] is not breakers[routers[1]]
    assert all(isinstance(b, NullBreaker) for b in make_breakers(routers, None).values())
