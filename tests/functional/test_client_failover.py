"""Acceptance 2: a router fails in the middle of a 40-chunk put and of a 40-chunk get.

Both operations succeed through the other router; the failed router's breaker is open
(``client.breaker_state``) and closes again once the router is back and ``reset_timeout``
has passed. Two ways to fail: a graceful stop of an in-process router (then a restart
on the same port), and SIGKILL of a router subprocess (a crash mid-stream).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mictlanx_sync import BreakerPolicy, Client, RetryPolicy
from mictlanx_sync.protocol.uri import Endpoint, build
from tests.support.servers import ServerProcess

from .client_support import HOST, P5_GET_DATA, R7_PUT_DATA, Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(90)

CHUNK = 32 * 1024
N = 40
RETRY = RetryPolicy(retries=6, initial_delay=0.05, max_delay=0.5, deadline=30)
BREAKER = BreakerPolicy(fail_max=2, reset_timeout=1.0)


class _Routers:
    """Router 0 (the one that fails) and router 1 over the same 3 peers."""

    def __init__(self, cluster: Cluster, mode: str, tmp: Path) -> None:
        self.cluster = cluster
        self.mode = mode
        self.proc: Any = None
        if mode == "process":
            peers = build([Endpoint(p.server_id, HOST, p.port, protocol="http") for p in cluster.peers])
            self.proc = ServerProcess("router", ["--router-id", "mictlanx-router-9", "--data-dir", str(tmp / "r9"),
                                                 "--peers", peers, "--health-interval", "0.3"]).start()
            deadline = time.monotonic() + 15
            import requests
            while requests.get(f"{self.proc.url}/health", timeout=2).json()["available_peers"] != 3:
                assert time.monotonic() < deadline
                time.sleep(0.05)

    @property
    def uri(self) -> str:
        if self.mode == "thread":
            return self.cluster.uri(0, 1)
        r1 = self.cluster.routers[1]
        return build([Endpoint("mictlanx-router-9", HOST, self.proc.port, protocol="http"),
                      Endpoint(r1.server_id, HOST, r1.port, protocol="http")])

    def fail(self) -> None:
        if self.mode == "thread":
            self.cluster.stop_router(0)
        else:
            self.proc.kill()

    def recover(self) -> None:
        if self.mode == "thread":
            self.cluster.start_router(0)
            self.cluster.wait_ready()
        else:
            self.proc.start(self.proc.port)

    def close(self) -> None:
        if self.mode == "thread":
            self.cluster.start_router(0)
        elif self.proc is not None:
            self.proc.kill()


@pytest.fixture(scope="module")
def failover_cluster() -> Iterator[Cluster]:
    with Cluster(peers=3, routers=2) as instance:
        yield instance


@pytest.fixture(params=["thread", "process"])
def routers(request: pytest.FixtureRequest, failover_cluster: Cluster, tmp_path: Path) -> Iterator[_Routers]:
    instance = _Routers(failover_cluster, request.param, tmp_path)
    try:
        yield instance
    finally:
        failover_cluster.data_delay = 0.0
        instance.close()


def _in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def _wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _peer_count(cluster: Cluster, method: str, path: str) -> int:
    return cluster.log.count(server="mictlanx-peer", method=method, path=path, where=lambda s: s.status in (200, 201))


def _await_breaker_closed(client: Client, router: Any, probe: Callable[[], Any]) -> None:
    """Requests after ``reset_timeout``: the half-open probe reaches the router, which closes."""
    time.sleep(BREAKER.reset_timeout + 0.1)
    deadline = time.monotonic() + 10
    while client.breaker_state(router) != "closed":
        assert time.monotonic() < deadline, client.breaker_state(router)
        probe().unwrap()
        time.sleep(0.05)


def test_router_fails_during_put(routers: _Routers, tmp_path: Path, bucket: str) -> None:
    cluster = routers.cluster
    data = os.urandom(N * CHUNK - 5)
    # inline_max=0: the test counts (and delays) R7s, which small chunks would not use
    with new_client(routers.uri, tmp_path, retry=RETRY, breaker=BREAKER, load_balancing="ROUND_ROBIN",
                    inline_max=0) as client:
        failing = client.routers[0]
        cluster.data_delay = 0.03
        cluster.log.clear()
        thread, out = _in_background(lambda: client.put(bucket, "fo-put", data, chunk_size=CHUNK, rf=2,
                                                        max_concurrency=4))
        _wait_for(lambda: _peer_count(cluster, "POST", R7_PUT_DATA) >= 2 * 8)  # 8 chunks on both replicas
        routers.fail()
        thread.join(60)
        assert not thread.is_alive()
        assert out[0].unwrap() is True
        stored = _peer_count(cluster, "POST", R7_PUT_DATA)
        assert 2 * N <= stored < 2 * N + 2 * 12, stored  # the put was in flight when the router failed
        assert client.breaker_state(failing) == "open"
        assert client.breaker_state(client.routers[1]) == "closed"
        cluster.data_delay = 0.0
        got = client.get(bucket, "fo-put", force=True).unwrap()
        assert sha256(got.data) == sha256(data)

        routers.recover()
        _await_breaker_closed(client, failing, lambda: client.get_metadata_by_key(bucket, "fo-put_0"))
        assert client.breaker_state(failing) == "closed"


def test_router_fails_during_get(routers: _Routers, tmp_path: Path, bucket: str) -> None:
    cluster = routers.cluster
    data = os.urandom(N * CHUNK + 11)  # 41 chunks
    with new_client(routers.uri, tmp_path, retry=RETRY, breaker=BREAKER, capacity_storage="0",
                    load_balancing="ROUND_ROBIN") as client:
        assert client.put(bucket, "fo-get", data, chunk_size=CHUNK, rf=2).unwrap()
        failing = client.routers[0]
        cluster.data_delay = 0.03
        cluster.log.clear()
        thread, out = _in_background(lambda: client.get(bucket, "fo-get", max_paralell_gets=4))
        _wait_for(lambda: _peer_count(cluster, "GET", P5_GET_DATA) >= 8)
        routers.fail()
        thread.join(60)
        assert not thread.is_alive()
        got = out[0].unwrap()
        assert sha256(got.data) == sha256(data)
        assert _peer_count(cluster, "GET", P5_GET_DATA) < N + 1 + 12  # it was mid-way, not restarted
        assert client.breaker_state(failing) == "open"
        cluster.data_delay = 0.0

        routers.recover()
        _await_breaker_closed(client, failing, lambda: client.get(bucket, "fo-get"))
        assert client.get(bucket, "fo-get").unwrap().data.tobytes() == data


def test_retry_moves_to_another_router(failover_cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    """A stalling router (read timeout) first in the URI: the retry goes to the other one,
    whose breaker stays closed; the stalling one's opens and is skipped afterwards."""
    from .client_support import StallingServer

    healthy = failover_cluster.routers[1]
    with StallingServer() as stall:
        uri = build([Endpoint("stall", HOST, stall.port, protocol="http"),
                     Endpoint(healthy.server_id, HOST, healthy.port, protocol="http")])
        policy = RetryPolicy(retries=2, initial_delay=0.01, jitter=False, deadline=20)
        with new_client(uri, tmp_path, timeout=(1, 1), retry=policy,
                        breaker=BreakerPolicy(fail_max=1, reset_timeout=60)) as client:
            started = time.monotonic()
            assert client.put(bucket, "moved", b"data").unwrap() is True
            assert 1.0 <= time.monotonic() - started < 4
            assert len(stall.accepted) == 1
            assert [client.breaker_state(r) for r in client.routers] == ["open", "closed"]
            started = time.monotonic()
            assert client.get(bucket, "moved").unwrap().data.tobytes() == b"data"
            assert time.monotonic() - started < 1  # the open breaker is skipped: no timeout
            assert len(stall.accepted) == 1
