import random
import threading

import pytest

from mictlanx_sync.client.balancer import Balancer, normalize_policy
from mictlanx_sync.client.breaker import RouterBreaker, make_breakers
from mictlanx_sync.protocol.errors import CircuitOpenError, ValidationError
from mictlanx_sync.protocol.policies import BreakerPolicy

ROUTERS = ["r0", "r1", "r2"]


def picks(balancer, n, exclude=()):
    chosen = []
    for _ in range(n):
        with balancer.acquire(exclude) as lease:
            chosen.append(lease.router)
    return chosen


@pytest.mark.parametrize("name, canonical", [
    ("round_robin", "ROUND_ROBIN"), ("Least_InFlight", "LEAST_INFLIGHT"), ("2choices", "2CHOICES"),
])
def test_policy_names_are_case_insensitive(name, canonical):
    assert normalize_policy(name) == canonical
    assert Balancer(ROUTERS, name).policy == canonical


def test_unknown_policy_or_no_router_is_rejected():
    with pytest.raises(ValidationError):
        Balancer(ROUTERS, "RANDOM")
    with pytest.raises(ValidationError):
        Balancer([], "ROUND_ROBIN")


def test_round_robin_cycles_in_order():
    assert picks(Balancer(ROUTERS, "ROUND_ROBIN"), 7) == ["r0", "r1", "r2", "r0", "r1", "r2", "r0"]


def test_least_inflight_prefers_idle_routers_and_breaks_ties_in_order():
    balancer = Balancer(ROUTERS, "LEAST_INFLIGHT")
    assert picks(balancer, 3) == ["r0", "r0", "r0"]  # nothing held: always the first
    held = [balancer.acquire(), balancer.acquire()]
    assert [lease.router for lease in held] == ["r0", "r1"]
    assert picks(balancer, 1) == ["r2"]
    held[0].release()
    assert picks(balancer, 1) == ["r0"]
    held[1].release()


def test_two_choices_keeps_the_less_loaded_of_two():
    balancer = Balancer(["a", "b"], "2CHOICES", rng=random.Random(1))
    busy = [balancer.acquire() for _ in range(3)]  # builds some load
    loads = {r: balancer.in_flight(r) for r in ("a", "b")}
    assert sum(loads.values()) == 3 and max(loads.values()) - min(loads.values()) <= 1
    with balancer.acquire() as lease:
        assert lease.router == min(loads, key=lambda r: loads[r])
    for lease in busy:
        lease.release()


def test_leases_count_in_flight_and_release_once():
    balancer = Balancer(ROUTERS)
    lease = balancer.acquire()
    assert balancer.in_flight("r0") == 1
    lease.release()
    lease.release()
    assert balancer.in_flight("r0") == 0
    with pytest.raises(RuntimeError):
        with balancer.acquire():
            raise RuntimeError("request failed")
    assert balancer.in_flight("r0") == 0


def test_exclude_moves_a_retry_to_another_router():
    balancer = Balancer(ROUTERS, "LEAST_INFLIGHT")
    assert picks(balancer, 1, exclude={"r0"}) == ["r1"]
    assert picks(balancer, 1, exclude={"r0", "r1"}) == ["r2"]
    # Only excluded routers left: one of them is reused.
    assert picks(balancer, 1, exclude=set(ROUTERS)) == ["r0"]


def test_routers_with_an_open_breaker_are_skipped():
    breakers = make_breakers(ROUTERS, BreakerPolicy(fail_max=1, reset_timeout=60))
    balancer = Balancer(ROUTERS, "ROUND_ROBIN", breakers)
    breakers["r1"].record_failure()
    assert set(picks(balancer, 6)) == {"r0", "r2"}
    for router in ROUTERS:
        breakers[router].record_failure()
    with pytest.raises(CircuitOpenError) as info:
        balancer.acquire()
    assert "r1=open" in info.value.message
    result = balancer.try_acquire()
    assert result.is_err and isinstance(result.unwrap_err(), CircuitOpenError)
    assert all(balancer.in_flight(r) == 0 for r in ROUTERS)


def test_half_open_router_gets_a_single_probe():
    now = [0.0]
    breakers = {r: RouterBreaker(BreakerPolicy(fail_max=1, reset_timeout=10), clock=lambda: now[0]) for r in ROUTERS}
    balancer = Balancer(ROUTERS, "LEAST_INFLIGHT", breakers)
    for breaker in breakers.values():
        breaker.record_failure()
    now[0] = 11.0
    probes = [balancer.acquire() for _ in range(3)]  # one probe per router
    assert sorted(lease.router for lease in probes) == ROUTERS
    with pytest.raises(CircuitOpenError):
        balancer.acquire()  # every router has its probe in flight
    probes[0].breaker.record_success()
    probes[0].release()
    assert picks(balancer, 2) == [probes[0].router] * 2


def test_filtering_candidates_does_not_consume_probes():
    now = [0.0]
    breakers = {r: RouterBreaker(BreakerPolicy(fail_max=1, reset_timeout=10), clock=lambda: now[0]) for r in ROUTERS}
    balancer = Balancer(ROUTERS, "LEAST_INFLIGHT", breakers)
    breakers["r2"].record_failure()
    now[0] = 11.0
    picks(balancer, 1)  # r0 is chosen; r2 was only looked at
    assert breakers["r2"].allow()


def test_thread_safety_of_in_flight_counts():
    balancer = Balancer(ROUTERS, "2CHOICES")
    errors = []

    def worker():
        try:
            for _ in range(500):
                with balancer.acquire():
                    pass
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(balancer.in_flight(r) == 0 for r in ROUTERS)


def test_duplicate_routers_are_merged():
    balancer = Balancer(["r0", "r0", "r1"], "ROUND_ROBIN")
    assert balancer.routers == ("r0", "r1")
