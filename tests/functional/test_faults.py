"""Fault injection (``server.faults``): off by default, each action end to end on real servers."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import BreakerPolicy, Client, RetryPolicy
from mictlanx_sync.errors import CircuitOpenError, MictlanXError
from mictlanx_sync.server.local import LocalVSS
from mictlanx_sync.server.router.placement import rank
from tests.functional.conftest import RouterAPI, random_bytes
from tests.support.servers import start_peer

FAST_RETRY = RetryPolicy(retries=4, initial_delay=0.05, backoff_factor=1.0, max_delay=0.1, jitter=False,
                         deadline=30.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_faults(url: str, rules: list[dict[str, Any]]) -> None:
    resp = requests.post(f"{url}/_faults", json=rules, timeout=10)
    assert resp.status_code == 200, resp.text


def faults(url: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{url}/_faults", timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["faults"])


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=2, health_interval=0.2, faults="[]") as instance:
        yield instance


@pytest.fixture()
def api(vss: LocalVSS) -> Iterator[RouterAPI]:
    helper = RouterAPI(vss.router_urls[0], vss.peer_urls)
    yield helper
    helper.close()
    for url in [*vss.router_urls, *vss.peer_urls.values()]:
        assert requests.delete(f"{url}/_faults", timeout=10).status_code == 204


def ranked(vss: LocalVSS, bucket: str, key: str) -> list[str]:
    return rank(list(vss.peer_urls), bucket, key)


# --- off by default, CLI option, environment -------------------------------------------------------------
def test_off_by_default_no_middleware_no_admin_route(tmp_path: Path) -> None:
    from mictlanx_sync.server import faults as faults_module
    from mictlanx_sync.server.peer.app import create_app as create_peer
    from mictlanx_sync.server.peer.config import PeerConfig
    from mictlanx_sync.server.router.app import create_app as create_router
    from mictlanx_sync.server.router.config import RouterConfig

    assert not isinstance(create_peer(PeerConfig(data_dir=tmp_path / "p")), faults_module.FaultMiddleware)
    assert not isinstance(create_router(RouterConfig(data_dir=tmp_path / "r")), faults_module.FaultMiddleware)
    env = {k: v for k, v in os.environ.items() if k != "MICTLANX_FAULTS"}
    peer = start_peer(tmp_path / "plain", env=env)
    try:
        for method in ("GET", "POST", "DELETE"):
            resp = requests.request(method, f"{peer.url}/_faults", json=[], timeout=10)
            assert resp.status_code in (404, 405), resp.text
            assert resp.json()["detail"]["code"] in (404, 400)
    finally:
        peer.stop()


def test_cli_option_and_environment_enable_rules(tmp_path: Path) -> None:
    rule = [{"route": "P17", "action": "status", "status": 503, "code": 500, "count": 1}]
    by_option = start_peer(tmp_path / "a", "mictlanx-peer-0", "--faults", json.dumps(rule))
    by_env = start_peer(tmp_path / "b", env={"MICTLANX_FAULTS": json.dumps(rule)})
    try:
        for peer in (by_option, by_env):
            first = requests.get(f"{peer.url}/api/v4/balls/len", timeout=10)
            assert first.status_code == 503 and first.json()["detail"]["code"] == 500
            assert requests.get(f"{peer.url}/api/v4/balls/len", timeout=10).status_code == 200
            assert faults(peer.url)[0]["applied"] == 1
    finally:
        by_option.stop()
        by_env.stop()


def test_invalid_spec_is_rejected(vss: LocalVSS, api: RouterAPI) -> None:
    url = vss.router_urls[0]
    for bad in ({"action": "explode"}, [{"action": "status", "count": -1}], [{"action": "delay", "oops": 1}],
                [{"action": "status", "path": "("}]):
        resp = requests.post(f"{url}/_faults", json=bad, timeout=10)
        assert resp.status_code == 422 and resp.json()["detail"]["code"] == 400
    assert faults(url) == []


# --- each action ------------------------------------------------------------------------------------------
def test_status_with_count_skip_and_headers(vss: LocalVSS, api: RouterAPI) -> None:
    peer = vss.peer_urls["mictlanx-peer-0"]
    set_faults(peer, [{"route": "P11", "action": "status", "status": 429, "code": 429, "skip": 1, "count": 2,
                       "headers": {"Retry-After": "1"}}])
    statuses = [requests.get(f"{peer}/api/v4/buckets/b/nokey/size", timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [404, 429, 429, 404]
    assert statuses[1].headers["Retry-After"] == "1"
    assert statuses[1].json()["detail"]["code"] == 429
    assert faults(peer)[0]["matched"] == 4 and faults(peer)[0]["applied"] == 2


def test_delay_by_method_and_path_regex(vss: LocalVSS, api: RouterAPI) -> None:
    peer = vss.peer_urls["mictlanx-peer-1"]
    set_faults(peer, [{"method": "GET", "path": r"^/api/v4/stats/ufs$", "action": "delay", "delay": 0.4}])
    started = time.monotonic()
    assert requests.get(f"{peer}/api/v4/stats/ufs", timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert requests.get(f"{peer}/api/v4/balls/len", timeout=10).status_code == 200
    assert time.monotonic() - started < 0.4


def test_drop_before_first_byte_both_stages(vss: LocalVSS, api: RouterAPI) -> None:
    peer = vss.peer_urls["mictlanx-peer-0"]
    set_faults(peer, [{"route": "P20", "action": "drop_before_first_byte", "count": 1},
                      {"route": "P17", "action": "drop_before_first_byte", "stage": "request", "count": 1}])
    with pytest.raises(requests.ConnectionError):
        requests.delete(f"{peer}/api/v4/tasks", timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{peer}/api/v4/balls/len", timeout=10)
    assert requests.get(f"{peer}/api/v4/balls/len", timeout=10).status_code == 200


def test_drop_after_first_byte_and_truncate(vss: LocalVSS, api: RouterAPI) -> None:
    data = random_bytes(300_000)
    api.put("fb", "obj", data, rf=2)
    peer = vss.peer_urls["mictlanx-peer-0"]
    set_faults(peer, [{"route": "P5", "action": "drop_after_first_byte", "count": 1},
                      {"route": "P5", "action": "truncate", "bytes": 1000, "count": 1},
                      {"route": "P5", "action": "truncate", "bytes": 1000, "fix_length": True, "count": 1}])
    url = f"{peer}/api/v4/buckets/fb/obj"
    with requests.get(url, stream=True, timeout=10) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Length"] == str(len(data))
        received = bytearray()
        with pytest.raises(requests.RequestException):
            for piece in resp.iter_content(1):
                received += piece
        assert bytes(received) == data[:1]
    with pytest.raises(requests.RequestException):
        requests.get(url, timeout=10)
    looks_complete = requests.get(url, timeout=10)
    assert looks_complete.status_code == 200 and len(looks_complete.content) == 1000
    assert looks_complete.headers["ETag"] == f'"{sha(data)}"'  # the ETag still names the whole ball
    assert requests.get(url, timeout=10).content == data


# --- the router and the client react ------------------------------------------------------------------------
def test_router_fails_over_when_top_peer_drops_p5_before_first_byte(vss: LocalVSS, api: RouterAPI) -> None:
    data = random_bytes(200_000)
    api.put("fo", "k1", data, rf=2)
    top, other = ranked(vss, "fo", "k1")
    set_faults(vss.peer_urls[top], [{"route": "P5", "action": "drop_before_first_byte"}])
    for _ in range(2):
        resp = api("GET", "/api/v4/buckets/fo/k1")
        assert resp.status_code == 200 and resp.content == data
        assert resp.headers["Peer-Id"] == other
    assert faults(vss.peer_urls[top])[0]["applied"] == 2


def test_router_aborts_when_peer_breaks_mid_stream_and_client_recovers(vss: LocalVSS, api: RouterAPI) -> None:
    data = random_bytes(500_000)
    with Client(vss.uri, retry=FAST_RETRY, capacity_storage="0", progress=False) as client:
        assert client.put("cl", "obj", data, rf=2, chunk_size="1MB").unwrap() is True
        top, _ = ranked(vss, "cl", "obj_0")
        set_faults(vss.peer_urls[top], [{"route": "P5", "action": "drop_after_first_byte", "count": 1}])
        with pytest.raises(requests.RequestException):
            api("GET", "/api/v4/buckets/cl/obj_0")  # the router aborts: no truncated 200
        set_faults(vss.peer_urls[top], [{"route": "P5", "action": "drop_after_first_byte", "count": 1}])
        got = client.get("cl", "obj")
        assert got.is_ok, got
        assert bytes(got.unwrap().data) == data
        assert faults(vss.peer_urls[top])[0]["applied"] == 1


def test_client_retries_injected_503_on_router(vss: LocalVSS, api: RouterAPI) -> None:
    data = random_bytes(10_000)
    router = vss.router_urls[0]
    with Client(vss.uri, retry=FAST_RETRY, capacity_storage="0", progress=False, breaker=None) as client:
        assert client.put("rt", "obj", data, rf=1).unwrap() is True
        set_faults(router, [{"route": "R3", "action": "status", "status": 503, "code": 666, "count": 2}])
        got = client.get("rt", "obj")
        assert got.is_ok, got
        assert bytes(got.unwrap().data) == data
        assert faults(router)[0]["applied"] == 2
        set_faults(router, [{"route": "R3", "action": "status", "status": 503, "code": 500}])
        failed = client.get("rt", "obj")
        assert failed.is_err and isinstance(failed.unwrap_err(), MictlanXError)
        assert failed.unwrap_err().status_code == 503
        assert faults(router)[0]["applied"] == FAST_RETRY.retries


def test_client_breaker_opens_on_injected_500(vss: LocalVSS, api: RouterAPI) -> None:
    router = vss.router_urls[0]
    policy = RetryPolicy(retries=1, initial_delay=0.01, jitter=False)
    with Client(vss.uri, retry=policy, capacity_storage="0", progress=False,
                breaker=BreakerPolicy(fail_max=2, reset_timeout=60.0)) as client:
        set_faults(router, [{"route": "R3", "action": "status", "status": 500, "code": 500}])
        errors = [client.get_metadata_by_key("br", "k_0").unwrap_err() for _ in range(4)]
        assert [e.status_code for e in errors[:2]] == [500, 500]
        assert all(isinstance(e, CircuitOpenError) for e in errors[2:])
        assert faults(router)[0]["applied"] == 2  # an open breaker sends nothing to the router


def test_router_marks_peer_unavailable_while_its_health_fails(vss: LocalVSS, api: RouterAPI) -> None:
    peer_id = "mictlanx-peer-1"
    set_faults(vss.peer_urls[peer_id], [{"route": "P21", "action": "status", "status": 503, "code": 500}])

    def unavailable() -> list[str]:
        return [p["peer_id"] for p in api("GET", "/api/v4/peers").json()["unavailable"]]

    deadline = time.monotonic() + 10
    while unavailable() != [peer_id]:
        assert time.monotonic() < deadline, "the router never noticed the failing health checks"
        time.sleep(0.05)
    assert requests.delete(f"{vss.peer_urls[peer_id]}/_faults", timeout=10).status_code == 204
    deadline = time.monotonic() + 10
    while unavailable():
        assert time.monotonic() < deadline, "the router never saw the peer recover"
        time.sleep(0.05)
