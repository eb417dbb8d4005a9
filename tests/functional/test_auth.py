"""Optional bearer tokens: raw HTTP, ``Peer``, ``Router``, URIs and ``LocalVSS``."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync import LocalVSS, MictlanXURI, Peer, Router
from mictlanx_sync.errors import AuthenticationError
from mictlanx_sync.protocol import uri
from tests.support.servers import ServerProcess, start_peer, start_router

PEER_TOKEN = "peer-s3cret-token"
ROUTER_TOKEN = "router-t0ken"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MICTLANX_PEER_TOKEN", "MICTLANX_ROUTER_TOKEN")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ServerProcess], ServerProcess]]:
    base = tmp_path_factory.mktemp("auth")
    peers = [start_peer(base / "p0", "mictlanx-peer-0", "--token", PEER_TOKEN, env=clean_env()),
             start_peer(base / "p1", "mictlanx-peer-1", env={**clean_env(), "MICTLANX_PEER_TOKEN": PEER_TOKEN})]
    router = start_router(base / "r", [("mictlanx-peer-0", peers[0].url), ("mictlanx-peer-1", peers[1].url)],
                          "--token", ROUTER_TOKEN, "--peer-token", PEER_TOKEN, "--health-interval", "0.2",
                          env=clean_env())
    try:
        yield peers, router
    finally:
        router.stop()
        for peer in peers:
            peer.stop()


def test_raw_http_401_without_or_with_wrong_token_health_open(cluster: tuple[list[ServerProcess], ServerProcess],
                                                              ) -> None:
    peers, router = cluster
    for url, token, path in ((peers[0].url, PEER_TOKEN, "/api/v4/balls/len"),
                             (peers[1].url, PEER_TOKEN, "/api/v4/balls/len"),
                             (router.url, ROUTER_TOKEN, "/api/v4/peers")):
        open_health = requests.get(f"{url}/health", timeout=10)
        assert open_health.status_code == 200 and "WWW-Authenticate" in open_health.headers
        authed_health = requests.get(f"{url}/health", headers=bearer(token), timeout=10)
        assert authed_health.status_code == 200 and "WWW-Authenticate" not in authed_health.headers
        for headers in ({}, bearer("wrong"), bearer(token + "x"), {"Authorization": token},
                        {"Authorization": f"Basic {token}"}):
            resp = requests.get(f"{url}{path}", headers=headers, timeout=10)
            assert resp.status_code == 401, (url, headers)
            assert resp.json() == {"detail": {"code": 401, "msg": "missing or invalid bearer token"}}
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert requests.get(f"{url}/openapi.json", timeout=10).status_code == 401
        assert requests.get(f"{url}{path}", headers=bearer(token), timeout=10).status_code == 200
        # a body is never read without the token
        resp = requests.post(f"{url}/api/v4/buckets/b/metadata", json={"key": "k"}, timeout=10)
        assert resp.status_code == 401
    # the router's token is not the peers' token
    assert requests.get(f"{peers[0].url}/api/v4/balls/len", headers=bearer(ROUTER_TOKEN),
                        timeout=10).status_code == 401


def test_router_sends_peer_token_health_and_data(cluster: tuple[list[ServerProcess], ServerProcess]) -> None:
    peers, router = cluster
    health = requests.get(f"{router.url}/health", timeout=10).json()
    assert health["available_peers"] == 2  # health checks carry the peer token
    data = os.urandom(100_000)
    host, port = router.url.rsplit("//", 1)[1].rsplit(":", 1)
    with Router("mictlanx-router-0", host, int(port), "http", token=ROUTER_TOKEN) as r:
        meta = r.put_metadata("k", len(data), hashlib.sha256(data).hexdigest(), "", "application/octet-stream",
                              "k", "authb", replication_factor=2).unwrap()
        r.put_chunked(meta.tasks_ids[0], data).unwrap()
        with r.get_streaming("authb", "k").unwrap() as resp:
            assert resp.content == data
        assert r.get_peers().unwrap()
        assert "token" not in repr(r) and ROUTER_TOKEN not in repr(r) and ROUTER_TOKEN not in str(r.to_dict())
    with Router("mictlanx-router-0", host, int(port), "http") as anonymous:
        error = anonymous.get_metadata("authb", "k").unwrap_err()
        assert isinstance(error, AuthenticationError) and error.status_code == 401
        assert anonymous.health().is_ok  # /health is open
    for peer in peers:
        p_host, p_port = peer.url.rsplit("//", 1)[1].rsplit(":", 1)
        with Peer("p", p_host, int(p_port), token=PEER_TOKEN) as p:
            assert p.get_metadata("authb", "k").unwrap().metadata.size == len(data)
        with Peer("p", p_host, int(p_port), token="nope") as p:
            assert isinstance(p.get_metadata("authb", "k").unwrap_err(), AuthenticationError)


def test_router_without_peer_token_sees_no_peer(tmp_path: Path, cluster: tuple[list[ServerProcess], ServerProcess],
                                                ) -> None:
    peers, _ = cluster
    router = start_router(tmp_path / "r", [("mictlanx-peer-0", peers[0].url)], env=clean_env())
    try:
        assert requests.get(f"{router.url}/health", timeout=10).json()["available_peers"] == 0
    finally:
        router.stop()
    # the peers URI's token= is the router's peer token when --peer-token is not given
    spec = f"mictlanx-peer-0@{peers[0].url.split('://', 1)[1]}"
    router = ServerProcess("router", ["--data-dir", str(tmp_path / "r2"), "--peers",
                                      f"mictlanx://{spec}/?protocol=http&token={PEER_TOKEN}"], clean_env()).start()
    try:
        assert requests.get(f"{router.url}/health", timeout=10).json()["available_peers"] == 1
    finally:
        router.stop()


def test_token_is_never_logged(tmp_path: Path) -> None:
    peer = ServerProcess("peer", ["--data-dir", str(tmp_path / "p"), "--no-fsync", "--log-level", "debug",
                                  "--token", PEER_TOKEN], clean_env())
    peer.stderr_path = tmp_path / "stderr.log"
    peer.start()
    try:
        requests.get(f"{peer.url}/api/v4/balls/len", headers=bearer(PEER_TOKEN), timeout=10)
        requests.get(f"{peer.url}/api/v4/balls/len", headers=bearer("guess"), timeout=10)
    finally:
        peer.stop()
    log = (tmp_path / "stderr.log").read_text()
    assert "/api/v4/balls/len" in log and PEER_TOKEN not in log and "guess" not in log


def test_uri_token_parse_build_and_objects() -> None:
    text = "mictlanx://r0@10.0.0.5:60666,r1@10.0.0.6:60666/?protocol=http&token=a%2Fb%3Dc"
    endpoints = uri.parse(text)
    assert {e.token for e in endpoints} == {"a/b=c"}
    assert "a/b=c" not in repr(endpoints[0])
    assert uri.parse(uri.build(endpoints)) == endpoints
    routers = MictlanXURI.parse(text)
    assert [r.token for r in routers] == ["a/b=c", "a/b=c"]
    assert MictlanXURI.parse(MictlanXURI.build(routers))[0].token == "a/b=c"
    assert MictlanXURI.parse(text, token="other")[0].token == "other"
    assert MictlanXURI.parse_peers(text)[1].token == "a/b=c"
    assert uri.parse("mictlanx://h:1/?protocol=http")[0].token is None
    assert uri.parse("mictlanx://h:1/?protocol=http&token=")[0].token is None
    with pytest.raises(ValueError):
        uri.build([uri.Endpoint("a", "h", 1, token="x"), uri.Endpoint("b", "h", 2, token="y")])
    for router in routers:
        router.close()


def test_local_vss_token_everywhere() -> None:
    with LocalVSS(peers=2, token="vss-token", health_interval=0.2) as vss:
        assert "token=vss-token" in vss.uri
        for url in [*vss.router_urls, *vss.peer_urls.values()]:
            assert requests.get(f"{url}/health", timeout=10).status_code == 200
            assert requests.get(f"{url}/api/v4/xballs", timeout=10).status_code in (401,)
        router = MictlanXURI.parse(vss.uri)[0]
        assert router.get_peers().unwrap()
        assert all(p.get_balls_len().is_ok for p in vss.peers)
        vss.add_peer()
        deadline = time.monotonic() + 10
        while router.health().unwrap().available_peers != 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        router.close()


def test_fault_admin_route_needs_the_token() -> None:
    with LocalVSS(peers=1, token="tk2", faults="[]", health_interval=0.2) as vss:
        peer = vss.peer_urls["mictlanx-peer-0"]
        rules = [{"route": "P21", "action": "drop_before_first_byte", "stage": "request", "count": 1}]
        assert requests.post(f"{peer}/_faults", json=rules, timeout=10).status_code == 401
        assert requests.post(f"{peer}/_faults", json=rules, headers=bearer("tk2"), timeout=10).status_code == 200
        with pytest.raises(requests.ConnectionError):  # the open /health can still be faulted
            requests.get(f"{peer}/health", timeout=10)
        assert requests.get(f"{peer}/health", timeout=10).status_code == 200
