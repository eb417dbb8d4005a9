"""Router registry endpoints R15–R19 and R16/R24 on a router subprocess with its own registry."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Iterator

import pytest

from mictlanx_sync.server.local import LocalVSS
from tests.functional.conftest import RouterAPI, detail
from tests.support.servers import ServerProcess, start_router


@pytest.fixture()
def router(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_router(tmp_path / "router", (), "--health-interval", "0.3")
    yield server
    server.stop()


@pytest.fixture()
def rapi(router: ServerProcess, vss: LocalVSS) -> Iterator[RouterAPI]:
    helper = RouterAPI(router.url, vss.peer_urls)
    yield helper
    helper.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def item(peer_id: str, url: str) -> dict:
    return {"peer_id": peer_id, "hostname": "127.0.0.1", "port": int(url.rsplit(":", 1)[1]), "protocol": "http"}


def test_register_list_remove(rapi: RouterAPI, router: ServerProcess, vss: LocalVSS, tmp_path: Path) -> None:
    assert rapi("GET", "/api/v4/peers").json() == {"available": [], "unavailable": []}
    assert rapi("GET", "/health").json() == {"status": "ok", "available_peers": 0}
    p0, p1 = sorted(vss.peer_urls.items())
    one = {k: v for k, v in item(*p0).items() if k != "protocol"}
    assert rapi("POST", "/api/v4/peers", json=one).status_code == 204
    dead = {"peer_id": "dead-peer", "hostname": "127.0.0.1", "port": closed_port()}
    assert rapi("POST", "/api/v4/xpeers", json=[item(*p1), dead]).status_code == 204
    listing = rapi("GET", "/api/v4/peers").json()
    assert listing["available"] == [item(*p0), item(*p1)]
    assert listing["unavailable"] == [{**dead, "protocol": "http"}]
    assert rapi("GET", "/health").json()["available_peers"] == 2
    saved = json.loads((tmp_path / "router" / "peers.json").read_text())
    assert sorted(p["peer_id"] for p in saved) == ["dead-peer", p0[0], p1[0]]
    # the registry survives a restart
    router.restart()
    assert rapi("GET", "/api/v4/peers").json() == listing
    assert rapi("DELETE", "/api/v4/peers/dead-peer").status_code == 204
    missing = rapi("DELETE", "/api/v4/peers/dead-peer")
    assert missing.status_code == 404 and detail(missing)["code"] == 404
    assert rapi("DELETE", "/api/v4/xpeers", params={"peers": [p0[0], "unknown"]}).status_code == 204
    assert rapi("DELETE", "/api/v4/xpeers", json=[p1[0]]).status_code == 204
    assert rapi("GET", "/api/v4/peers").json() == {"available": [], "unavailable": []}


def test_registration_validation(rapi: RouterAPI, vss: LocalVSS) -> None:
    p0 = sorted(vss.peer_urls.items())[0]
    bad_items = [
        {"hostname": "127.0.0.1", "port": 1},
        {"peer_id": "a/b", "hostname": "127.0.0.1", "port": 1},
        {"peer_id": "p", "hostname": "127.0.0.1", "port": "80"},
        {"peer_id": "p", "hostname": "127.0.0.1", "port": 70000},
        {"peer_id": "p", "hostname": "", "port": 1},
        {"peer_id": "p", "hostname": "h", "port": 1, "protocol": "ftp"},
    ]
    for bad in bad_items:
        resp = rapi("POST", "/api/v4/peers", json=bad)
        assert resp.status_code == 422 and detail(resp)["code"] == 400, bad
        resp = rapi("POST", "/api/v4/xpeers", json=[item(*p0), bad])
        assert resp.status_code == 422, bad
    assert rapi("POST", "/api/v4/xpeers", json={"not": "a list"}).status_code == 422
    assert rapi("POST", "/api/v4/peers", data=b"{").status_code == 422
    assert rapi("GET", "/api/v4/peers").json() == {"available": [], "unavailable": []}
    assert rapi("DELETE", "/api/v4/peers/a%2Fb").status_code == 400


def test_router_with_configured_peers_serves_data(rapi: RouterAPI, vss: LocalVSS) -> None:
    for peer_id, url in vss.peer_urls.items():
        assert rapi("POST", "/api/v4/peers", json=item(peer_id, url)).status_code == 204
    rapi.put("regbucket", "k", b"hello", rf=2)
    # the shared VSS router sees the same placement without talking to this one
    shared = RouterAPI(vss.router_urls[0], vss.peer_urls)
    try:
        resp = shared("GET", "/api/v4/buckets/regbucket/k")
        assert resp.status_code == 200 and resp.content == b"hello"
    finally:
        shared.close()


def test_root_path_serves_both_forms(tmp_path: Path, vss: LocalVSS) -> None:
    peers = sorted(vss.peer_urls.items())
    server = start_router(tmp_path / "prefixed", peers, "--root-path", "/mx")
    api = RouterAPI(server.url, vss.peer_urls)
    try:
        for prefix in ("", "/mx"):
            assert api("GET", f"{prefix}/health").json()["available_peers"] == 2
            api.put("rootpath", f"k{len(prefix)}", b"data", rf=1)
            got = api("GET", f"{prefix}/api/v4/buckets/rootpath/k{len(prefix)}")
            assert got.status_code == 200 and got.content == b"data"
            assert "R11" in json.dumps(api("GET", f"{prefix}/openapi.json").json())
        wrong_method = api("PUT", "/api/v4/buckets/rootpath/k0")
        assert wrong_method.status_code == 405 and detail(wrong_method)["code"] == 400
    finally:
        api.close()
        server.stop()
