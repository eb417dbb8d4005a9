"""``LocalVSS`` (client-api §9): start/stop, attributes, peer failure helpers, both modes."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pytest
import requests

from mictlanx_sync.protocol.errors import ConnectFailedError
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.router import Router
from mictlanx_sync.server import local
from mictlanx_sync.server.local import LocalVSS
from tests.functional.conftest import RouterAPI

URI = re.compile(r"mictlanx://mictlanx-router-0@127\.0\.0\.1:(\d+)/\?protocol=http&api_version=4&http2=0")


def health(url: str) -> dict:
    resp = requests.get(f"{url}/health", timeout=5)
    assert resp.status_code == 200
    return dict(resp.json())


def test_start_stop_and_attributes() -> None:
    vss = LocalVSS(peers=2)
    assert "stopped" in repr(vss)
    with vss:
        match = URI.fullmatch(vss.uri)
        assert match is not None
        assert vss.router_urls == [f"http://127.0.0.1:{match.group(1)}"]
        assert health(vss.router_urls[0]) == {"status": "ok", "available_peers": 2}
        assert sorted(vss.peer_urls) == ["mictlanx-peer-0", "mictlanx-peer-1"]
        for peer_id, url in vss.peer_urls.items():
            assert health(url)["peer_id"] == peer_id
        data_dir = vss.data_dir
        assert data_dir is not None and data_dir.is_dir()
        peers = vss.peers
        assert all(isinstance(p, Peer) for p in peers)
        assert [p.peer_id for p in peers] == ["mictlanx-peer-0", "mictlanx-peer-1"]
        assert [p.port for p in peers] == [int(u.rsplit(":", 1)[1]) for _, u in sorted(vss.peer_urls.items())]
        (router,) = vss.routers
        assert isinstance(router, Router) and router.router_id == "mictlanx-router-0"
        assert router.port == int(match.group(1))
        assert vss.peers[0] is peers[0]  # one object per server
        assert vss.start() is vss  # idempotent
    assert not data_dir.exists()  # a temporary directory is removed
    vss.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{match.group(1)}/health", timeout=2)


def test_given_data_dir_is_kept_and_data_survives(tmp_path: Path) -> None:
    with LocalVSS(peers=2, data_dir=tmp_path) as vss:
        api = RouterAPI(vss.router_urls[0], vss.peer_urls)
        try:
            api.put("b", "k", b"persist me", rf=2)
        finally:
            api.close()
    assert (tmp_path / "mictlanx-router-0" / "peers.json").exists()
    assert (tmp_path / "mictlanx-peer-0").is_dir()
    with LocalVSS(peers=2, data_dir=tmp_path) as vss:
        resp = requests.get(f"{vss.router_urls[0]}/api/v4/buckets/b/k", timeout=10)
        assert resp.status_code == 200 and resp.content == b"persist me"


def test_stop_and_start_peer_keep_port_and_data() -> None:
    with LocalVSS(peers=2, health_interval=0.2) as vss:
        api = RouterAPI(vss.router_urls[0], vss.peer_urls)
        try:
            data = b"abc" * 1000
            api.put("b", "k", data, rf=2)
            url = vss.peer_urls["mictlanx-peer-1"]
            vss.stop_peer("mictlanx-peer-1")
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{url}/health", timeout=2)
            vss.start_peer("mictlanx-peer-1")
            assert vss.peer_urls["mictlanx-peer-1"] == url
            vss.wait_ready()
            assert api.peer_meta("mictlanx-peer-1", "b", "k") is not None
            resp = api("GET", "/api/v4/buckets/b/k", headers={"Peer-Id": "mictlanx-peer-1"})
            assert resp.status_code == 200 and resp.content == data
            with pytest.raises(KeyError):
                vss.stop_peer("nobody")
        finally:
            api.close()


def test_add_peer_registers_with_every_router() -> None:
    with LocalVSS(peers=1, routers=2) as vss:
        peer = vss.add_peer()
        assert isinstance(peer, Peer) and peer.peer_id == "mictlanx-peer-1"
        for url in vss.router_urls:
            listing = requests.get(f"{url}/api/v4/peers", timeout=5).json()
            assert [p["peer_id"] for p in listing["available"]] == ["mictlanx-peer-0", "mictlanx-peer-1"]
        assert len(vss.peers) == 2
        assert vss.uri.count("mictlanx-router-") == 2


def test_process_mode() -> None:
    with LocalVSS(peers=2, mode="process") as vss:
        api = RouterAPI(vss.router_urls[0], vss.peer_urls)
        try:
            data = b"process mode" * 100
            api.put("b", "k", data, rf=2)
            resp = api("GET", "/api/v4/buckets/b/k")
            assert resp.status_code == 200 and hashlib.sha256(resp.content).digest() == hashlib.sha256(data).digest()
            vss.stop_peer("mictlanx-peer-0")
            vss.start_peer("mictlanx-peer-0")
            vss.wait_ready()
        finally:
            api.close()
        urls = [*vss.router_urls, *vss.peer_urls.values()]
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)


def test_two_instances_at_once() -> None:
    with LocalVSS(peers=1) as first, LocalVSS(peers=1) as second:
        assert first.uri != second.uri
        assert health(first.router_urls[0])["available_peers"] == 1
        assert health(second.router_urls[0])["available_peers"] == 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        LocalVSS(mode="fiber")
    with pytest.raises(ValueError):
        LocalVSS(routers=0)


def test_missing_server_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ImportError, match=r"mictlanx-sync\[server\]"):
        LocalVSS(peers=1).start()


def test_not_ready_raises_connect_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "START_TIMEOUT", 0.5)
    monkeypatch.setattr(local, "_get_json",
                        lambda url, timeout=2.0, context=None: {"status": "ok", "available_peers": -1})
    vss = LocalVSS(peers=1)
    with pytest.raises(ConnectFailedError):
        vss.start()
    assert vss.data_dir is None  # everything was stopped and cleaned up
