"""The transfer core of the client (issue 15): the bounded executor and the coordinator.

``BoundedExecutor.submit`` takes a buffer token before a task is queued and gives it back
when the task ends; ``TransferCoordinator.run`` is the one bounded parallel loop: a window,
the first failure stops submissions (the running tasks finish, or are aborted with
``fail_fast``), and a consumer that leaves aborts and waits for the running tasks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mictlanx_sync.client.coordinator import Aborted, TransferCoordinator
from mictlanx_sync.client.executor import BoundedExecutor
from mictlanx_sync.client.lifecycle import Lifecycle
from mictlanx_sync.protocol.errors import ClientClosedError, NotFoundError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture()
def executor() -> Any:
    lifecycle = Lifecycle()
    pool = BoundedExecutor(2, "test", lifecycle)
    yield pool
    lifecycle.close()
    pool.shutdown()


def _held(executor: BoundedExecutor) -> int:
    return executor.max_workers - executor._budget._value  # type: ignore[attr-defined]


def test_submit_holds_a_token_until_the_task_ends(executor: BoundedExecutor) -> None:
    release = threading.Event()
    future = executor.submit(release.wait)
    assert future is not None and _held(executor) == 1
    release.set()
    future.result(5)
    time.sleep(0.05)  # the done callback gives the token back
    assert _held(executor) == 0


def test_a_reservation_not_handed_to_a_task_is_given_back(executor: BoundedExecutor) -> None:
    with executor.reserve() as slot:
        assert slot is not None and _held(executor) == 1
    assert _held(executor) == 0
    with pytest.raises(ValueError), executor.reserve():
        raise ValueError("the caller's own failure")
    assert _held(executor) == 0


def test_waiting_for_a_token_ends_on_cancel_and_on_close(executor: BoundedExecutor) -> None:
    with executor.reserve(), executor.reserve():  # the whole budget
        assert executor.submit(lambda: None, cancelled=lambda: True) is None
        executor.lifecycle.close()
        with pytest.raises(ClientClosedError):
            executor.submit(lambda: None)


def test_the_window_bounds_the_tasks_in_flight(executor: BoundedExecutor) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def task(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    coordinator = TransferCoordinator(executor, lambda: 1)
    results = [value for _task, value in coordinator.run(lambda i=i: task(i) for i in range(5))]
    assert sorted(results) == list(range(5)) and peak[0] == 1


def test_a_failure_stops_submitting_lets_running_tasks_finish_and_is_raised(executor: BoundedExecutor) -> None:
    started: list[int] = []
    finished: list[int] = []

    def task(i: int) -> int:
        started.append(i)
        if i == 0:
            raise NotFoundError("chunk 0")
        time.sleep(0.1)
        finished.append(i)
        return i

    coordinator = TransferCoordinator(executor, lambda: 2)
    yielded = []
    with pytest.raises(NotFoundError):
        for _task, value in coordinator.run(lambda i=i: task(i) for i in range(10)):
            yielded.append(value)
    assert sorted(started) == [0, 1] and finished == [1] and yielded == [1]  # chunk 1 finished; nothing after
    assert [type(f) for f in coordinator.failures] == [NotFoundError]
    assert _held(executor) == 0


def test_fail_fast_aborts_the_running_tasks(executor: BoundedExecutor) -> None:
    def task(i: int) -> int:
        if i == 0:
            time.sleep(0.05)
            raise NotFoundError("chunk 0")
        coordinator.aborted.wait(5)  # a long read, which the abort ends
        raise Aborted()

    coordinator = TransferCoordinator(executor, lambda: 2, fail_fast=True)
    started = time.monotonic()
    with pytest.raises(NotFoundError):
        list(coordinator.run(lambda i=i: task(i) for i in range(2)))
    assert time.monotonic() - started < 2 and coordinator.aborted.is_set()


def test_a_consumer_that_leaves_aborts_and_waits_for_the_running_tasks(executor: BoundedExecutor) -> None:
    ended: list[int] = []
    running = threading.Event()

    def task(i: int) -> int:
        if i > 0:
            running.set()
            coordinator.aborted.wait(5)
            ended.append(i)
        return i

    coordinator = TransferCoordinator(executor, lambda: 2)
    outcomes = coordinator.run(lambda i=i: task(i) for i in range(2))
    next(outcomes)
    assert running.wait(5)
    outcomes.close()  # e.g. get_chunks closed early
    assert coordinator.aborted.is_set() and ended == [1]  # waited for, not left running
    assert coordinator.scope.aborted


def test_prepare_runs_in_the_callers_thread_holding_the_token(executor: BoundedExecutor) -> None:
    class Task:
        def __init__(self, i: int) -> None:
            self.i = i
            self.prepared_in: Any = None

        def prepare(self) -> None:
            self.prepared_in = (threading.current_thread(), _held(executor))

        def __call__(self) -> int:
            return self.i

    tasks = [Task(i) for i in range(3)]
    coordinator = TransferCoordinator(executor, lambda: 1)
    assert sorted(v for _t, v in coordinator.run(tasks)) == [0, 1, 2]
    assert all(t.prepared_in == (threading.current_thread(), 1) for t in tasks)


class _Router:
    def __init__(self, url: str) -> None:
        self.url = url

    def base_url(self) -> str:
        return self.url

    def close(self) -> None:
        pass


class _Signal(NotFoundError):
    """An error that states its own answers, as the client's internal signals do."""

    def __init__(self, retryable: bool, router_fault: bool) -> None:
        super().__init__("signal")
        self._retryable, self._router_fault = retryable, router_fault

    @property
    def retryable(self) -> bool:
        return self._retryable

    @property
    def router_fault(self) -> bool:
        return self._router_fault


def test_the_dispatcher_reads_what_each_error_says_of_itself() -> None:
    import logging

    from mictlanx_sync.client.dispatch import Dispatcher
    from mictlanx_sync.protocol.policies import BreakerPolicy, RetryPolicy
    from mictlanx_sync.protocol.result import Err, Ok

    routers = [_Router("http://r0"), _Router("http://r1")]
    dispatcher = Dispatcher(routers, retry=RetryPolicy(retries=3, initial_delay=0, jitter=False),  # type: ignore[arg-type]
                            breaker=BreakerPolicy(fail_max=5), load_balancing="ROUND_ROBIN",
                            logger=logging.getLogger("test"), lifecycle=Lifecycle())
    seen: list[str] = []

    def request(router: Any) -> Any:
        seen.append(router.url)
        if len(seen) == 1:
            return Err(_Signal(retryable=True, router_fault=False))  # a 404 status, retried all the same
        return Ok(router.url)

    assert dispatcher.call("get b/k", request).unwrap() == "http://r1"  # the retry moved to the other router
    assert dispatcher.breaker(routers[0]).fail_counter == 0  # not the router's fault
    seen.clear()
    faulty = dispatcher.call("get b/k", lambda r: Err(_Signal(retryable=False, router_fault=True)))
    assert isinstance(faulty.unwrap_err(), _Signal) and faulty.unwrap_err().router is not None
    assert sum(dispatcher.breaker(r).fail_counter for r in routers) == 1  # counted once, not retried
