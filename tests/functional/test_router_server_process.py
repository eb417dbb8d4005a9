"""The router as a subprocess over subprocess peers: broken streams, crashes mid-upload, memory."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync.server.router.placement import rank
from tests.functional.conftest import RouterAPI, detail
from tests.support.servers import ServerProcess, start_peer, start_router

MIB = 1024 * 1024
PEERS = ["mictlanx-peer-0", "mictlanx-peer-1"]


class Cluster:
    def __init__(self, root: Path) -> None:
        self.peers = {p: start_peer(root / p, p) for p in PEERS}
        self.router = start_router(root / "router", [(p, s.url) for p, s in self.peers.items()],
                                   "--health-interval", "0.3")
        self.api = RouterAPI(self.router.url, {p: s.url for p, s in self.peers.items()})

    def revive(self) -> None:
        for server in self.peers.values():
            if server.proc is None or server.proc.poll() is not None:
                server.start(server.port or 0)
        deadline = time.monotonic() + 10
        while self.api("GET", "/health").json()["available_peers"] != len(self.peers):
            assert time.monotonic() < deadline, "peers did not come back"
            time.sleep(0.05)

    def stop(self) -> None:
        self.api.close()
        for server in [self.router, *self.peers.values()]:
            server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("cluster"))
    yield instance
    instance.stop()


def pattern(size: int, piece: int = MIB) -> Iterator[bytes]:
    block = os.urandom(piece)
    sent = 0
    while sent < size:
        n = min(piece, size - sent)
        yield block[:n]
        sent += n


def pattern_digest(size: int, block: bytes) -> str:
    digest = hashlib.sha256()
    sent = 0
    while sent < size:
        n = min(len(block), size - sent)
        digest.update(block[:n])
        sent += n
    return digest.hexdigest()


def test_peer_killed_mid_get_breaks_the_client_connection(cluster: Cluster) -> None:
    cluster.revive()
    size = 150 * MIB
    block = os.urandom(MIB)
    checksum = pattern_digest(size, block)
    meta = cluster.api("POST", "/api/v4/buckets/big/metadata",
                       json={"key": "obj", "size": size, "checksum": checksum, "replication_factor": 1})
    assert meta.status_code == 200, meta.text
    group = meta.json()["tasks_ids"][0]
    body = (block[: min(MIB, size - i)] for i in range(0, size, MIB))
    put = cluster.api("POST", f"/api/v4/buckets/data/{group}/chunked", data=body)
    assert put.status_code == 200, put.text
    holder = rank(PEERS, "big", "obj")[0]
    with requests.get(f"{cluster.router.url}/api/v4/buckets/big/obj", stream=True, timeout=30) as resp:
        assert resp.status_code == 200 and resp.headers["Peer-Id"] == holder
        stream = resp.iter_content(256 * 1024)
        received = len(next(stream))
        cluster.peers[holder].kill()
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                            http.client.IncompleteRead)):
            for chunk in stream:
                received += len(chunk)
        assert received < size


def test_replica_killed_mid_put_answers_502_and_keeps_nothing(cluster: Cluster) -> None:
    cluster.revive()
    size = 200 * MIB
    block = os.urandom(MIB)
    checksum = pattern_digest(size, block)
    meta = cluster.api("POST", "/api/v4/buckets/big/metadata",
                       json={"key": "crash", "size": size, "checksum": checksum, "replication_factor": 2})
    group = meta.json()["tasks_ids"][0]
    victim, survivor = rank(PEERS, "big", "crash")

    def body() -> Iterator[bytes]:
        for i in range(0, size, MIB):
            if i == 20 * MIB:
                cluster.peers[victim].kill()
            yield block[: min(MIB, size - i)]

    resp = cluster.api("POST", f"/api/v4/buckets/data/{group}/chunked", data=body())
    assert resp.status_code == 502, resp.text
    assert detail(resp)["code"] == 502
    assert [e["peer_id"] for e in detail(resp)["errors"]] == [victim]
    assert cluster.api.peer_meta(survivor, "big", "crash") is None


def test_r7_300mb_rf2_keeps_router_memory_bounded(cluster: Cluster) -> None:
    cluster.revive()
    router: ServerProcess = cluster.router
    cluster.api.put("warm", "up", os.urandom(4 * MIB), rf=2)
    baseline = router.rss_bytes()
    size = 300 * MIB
    block = os.urandom(MIB)
    checksum = pattern_digest(size, block)
    meta = cluster.api("POST", "/api/v4/buckets/big/metadata",
                       json={"key": "huge", "size": size, "checksum": checksum, "replication_factor": 2})
    group = meta.json()["tasks_ids"][0]
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], router.rss_bytes())
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        body = (block[: min(MIB, size - i)] for i in range(0, size, MIB))
        resp = cluster.api("POST", f"/api/v4/buckets/data/{group}/chunked", data=body)
    finally:
        done.set()
        sampler.join(5)
    assert resp.status_code == 200, resp.text
    assert resp.json()["size"] == size
    growth = peak[0] - baseline
    assert growth < 100 * MIB, f"router RSS grew by {growth / MIB:.1f} MiB"
    for peer in PEERS:
        meta_on_peer = cluster.api.peer_meta(peer, "big", "huge")
        assert meta_on_peer is not None and meta_on_peer["checksum"] == checksum
    with requests.get(f"{router.url}/api/v4/buckets/big/huge", stream=True, timeout=60) as got:
        digest = hashlib.sha256()
        for chunk in got.iter_content(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == checksum
