"""Router behaviour when peers fail: failover, health, pending deletes, two routers, placement."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Iterator

import pytest

from mictlanx_sync.protocol.versions import is_valid_version
from mictlanx_sync.server.local import LocalVSS
from mictlanx_sync.server.router.placement import rank
from tests.functional.conftest import RouterAPI, detail, random_bytes

HEALTH_INTERVAL = 0.2
THRESHOLD = 3  # router default


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture()
def vss2() -> Iterator[LocalVSS]:
    with LocalVSS(peers=2, health_interval=HEALTH_INTERVAL) as instance:
        yield instance


@pytest.fixture()
def api2(vss2: LocalVSS) -> Iterator[RouterAPI]:
    helper = RouterAPI(vss2.router_urls[0], vss2.peer_urls)
    yield helper
    helper.close()


def unavailable(api: RouterAPI) -> list[str]:
    return [p["peer_id"] for p in api("GET", "/api/v4/peers").json()["unavailable"]]


def test_top_holder_down_is_failed_over_and_marked_unavailable(vss2: LocalVSS, api2: RouterAPI) -> None:
    peers = sorted(vss2.peer_urls)
    data = random_bytes(2_000_000)
    api2.put("b", "obj", data, rf=2)
    top, other = rank(peers, "b", "obj")
    vss2.stop_peer(top)
    # before the health loop notices: the router fails over before the first byte
    resp = api2("GET", "/api/v4/buckets/b/obj")
    assert resp.status_code == 200 and sha(resp.content) == sha(data)
    assert resp.headers["Peer-Id"] == other
    elapsed = wait_for(lambda: unavailable(api2) == [top], HEALTH_INTERVAL * THRESHOLD + 2.0, "peer unavailable")
    assert elapsed < HEALTH_INTERVAL * THRESHOLD + 2.0
    assert api2("GET", "/health").json()["available_peers"] == 1
    resp = api2("GET", "/api/v4/buckets/b/obj")
    assert resp.status_code == 200 and sha(resp.content) == sha(data) and resp.headers["Peer-Id"] == other
    meta = api2("GET", "/api/v4/buckets/b/metadata/obj")
    assert meta.status_code == 200 and meta.json()["peer_id"] == other
    # a missing key is retryable while a known peer is down
    missing = api2("GET", "/api/v4/buckets/b/nothing")
    assert missing.status_code == 503 and detail(missing)["code"] == 666
    assert detail(missing)["unavailable_peers"] == [top]
    nf = api2("GET", "/api/v4/buckets/b/metadata/nothing")
    assert nf.status_code == 503 and detail(nf)["code"] == 666
    # rf=2 cannot be placed any more
    put = api2.put_meta("b", "new", b"abc", rf=2)
    assert put.status_code == 404 and detail(put)["code"] == 666 and detail(put)["available_peers"] == 1
    # the peer comes back
    vss2.start_peer(top)
    wait_for(lambda: unavailable(api2) == [], 5.0, "peer available again")
    assert api2("GET", "/api/v4/buckets/b/nothing").status_code == 404


def test_pending_deletes_are_replayed(vss2: LocalVSS, api2: RouterAPI) -> None:
    peers = sorted(vss2.peer_urls)
    data = random_bytes(10_000)
    api2.put("b", "k", data, rf=2)
    api2.put("b", "c_0", data, rf=2, ball_id="c")
    down = peers[1]
    vss2.stop_peer(down)
    wait_for(lambda: unavailable(api2) == [down], 5.0, "peer unavailable")
    resp = api2("DELETE", "/api/v4/buckets/b/k")
    assert resp.status_code == 200
    body = resp.json()
    tombstone = body.pop("version")
    assert is_valid_version(tombstone)  # the router gave the delete a version (docs/consistency.md §2.3)
    assert body == {"n_deletes": 1, "key": "k", "failed_peers": [], "pending_peers": [down]}
    ball = api2("DELETE", "/api/v4/buckets/b/bid/c")
    assert ball.status_code == 200 and ball.json()["pending_peers"] == [down] and ball.json()["n_deletes"] == 1
    assert vss2.data_dir is not None
    journal = vss2.data_dir / "mictlanx-router-0" / "pending-deletes.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    # Versioned deletes replay as tombstones: a checksum precondition would fail on a peer
    # holding another version and leave the tombstone unwritten there.
    assert records == [
        {"peer_id": down, "bucket_id": "b", "key": "k", "if_match": "any", "task_id": None, "version": tombstone},
        {"peer_id": down, "bucket_id": "b", "ball_id": "c", "if_match": "any", "task_id": None,
         "version": ball.json()["version"]},
    ]
    # deleting a key nobody available has still records the pending delete
    gone = api2("DELETE", "/api/v4/buckets/b/other")
    assert gone.status_code == 200 and gone.json()["n_deletes"] == 0 and gone.json()["pending_peers"] == [down]
    vss2.start_peer(down)
    wait_for(lambda: unavailable(api2) == [], 5.0, "peer available again")
    assert api2.peer_meta(down, "b", "k") is None
    assert api2.peer_meta(down, "b", "c_0") is None
    assert journal.read_text() == ""
    assert api2("GET", "/api/v4/buckets/b/k").status_code == 404


def test_no_peer_available(vss2: LocalVSS, api2: RouterAPI) -> None:
    for peer in sorted(vss2.peer_urls):
        vss2.stop_peer(peer)
    wait_for(lambda: len(unavailable(api2)) == 2, 5.0, "all peers unavailable")
    assert api2("GET", "/health").json() == {"status": "ok", "available_peers": 0}
    for method, path in [("GET", "/api/v4/buckets/b/k"), ("GET", "/api/v4/buckets/b/metadata/k"),
                         ("GET", "/api/v4/buckets/b/metadata"), ("DELETE", "/api/v4/buckets/b/k"),
                         ("DELETE", "/api/v4/buckets/b/bid/k"), ("GET", "/api/v4/peers/stats"),
                         ("GET", "/api/v4/buckets/b/k/size"), ("GET", "/api/v4/buckets/b/metadata/k/chunks")]:
        resp = api2(method, path)
        assert resp.status_code == 503 and detail(resp)["code"] == 666, (method, path, resp.text)
    assert vss2.data_dir is not None
    journal = vss2.data_dir / "mictlanx-router-0" / "pending-deletes.jsonl"
    assert not journal.exists() or journal.read_text() == ""
    put = api2.put_meta("b", "k", b"x", rf=1)
    assert put.status_code == 404 and detail(put)["code"] == 666 and detail(put)["available_peers"] == 0


def test_two_routers_agree_on_placement() -> None:
    with LocalVSS(peers=3, routers=2, health_interval=HEALTH_INTERVAL) as vss:
        peers = sorted(vss.peer_urls)
        first = RouterAPI(vss.router_urls[0], vss.peer_urls)
        second = RouterAPI(vss.router_urls[1], vss.peer_urls)
        try:
            for i in range(8):
                key, rf = f"key-{i}", 1 + i % 2
                data = random_bytes(1000 + i)
                writer, reader = (first, second) if i % 2 else (second, first)
                writer.put("b", key, data, rf=rf)
                assert first.holders("b", key) == sorted(rank(peers, "b", key)[:rf])
                resp = reader("GET", f"/api/v4/buckets/b/{key}")
                assert resp.status_code == 200 and resp.content == data
                assert resp.headers["Peer-Id"] == rank(peers, "b", key)[0]
                assert reader.put_meta("b", key, data, rf=rf).json()["extra"]["exists"] is True
            assert vss.uri.startswith("mictlanx://mictlanx-router-0@127.0.0.1:")
            assert ",mictlanx-router-1@127.0.0.1:" in vss.uri
        finally:
            first.close()
            second.close()


def test_update_moves_stale_copies_away() -> None:
    """With 3 peers, an update placed on other replicas deletes the stale copies (§P4.4)."""
    with LocalVSS(peers=3, health_interval=HEALTH_INTERVAL) as vss:
        api = RouterAPI(vss.router_urls[0], vss.peer_urls)
        try:
            peers = sorted(vss.peer_urls)
            top = rank(peers, "b", "k")[0]
            old = random_bytes(1000)
            api.put("b", "k", old, rf=1)
            assert api.holders("b", "k") == [top]
            vss.stop_peer(top)
            wait_for(lambda: unavailable(api) == [top], 5.0, "peer unavailable")
            new = random_bytes(1000)
            api.put("b", "k", new, rf=1, update=True)
            second = rank(peers, "b", "k")[1]
            placed = api.peer_meta(second, "b", "k")
            assert placed is not None and placed["checksum"] == sha(new)
            vss.start_peer(top)
            wait_for(lambda: unavailable(api) == [], 5.0, "peer available")
            # the top-ranked peer still has the stale copy: reads prefer it (rendezvous order)
            assert api.peer_meta(top, "b", "k") is not None
            api.put("b", "k", new, rf=1, update=True)
            wait_for(lambda: api.peer_meta(second, "b", "k") is None, 5.0, "stale copy removed")
            assert api("GET", "/api/v4/buckets/b/k").content == new
        finally:
            api.close()
