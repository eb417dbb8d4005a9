"""Replica loss and repair: a stopped peer, a restarted one, a wiped one and R25 / ``mictlanx-sync repair``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from mictlanx_sync import Client, MictlanXURI
from mictlanx_sync.errors import MaxAvailabilityReachedError, ValidationError
from mictlanx_sync.server.local import LocalVSS
from mictlanx_sync.server.router.placement import rank

N_OBJECTS = 200
BUCKET = "repairb"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    # process mode: stopping a peer is a real process exit (no in-process sockets left behind)
    with LocalVSS(peers=3, health_interval=0.2, mode="process") as instance:
        yield instance


def inventory(url: str) -> set[str]:
    resp = requests.get(f"{url}/api/v4/xballs", params={"include_disabled": "1"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return {item["key"] for item in resp.json() if item["bucket_id"] == BUCKET}


def expected(vss: LocalVSS, keys: list[str], rf: int = 2) -> dict[str, set[str]]:
    placed: dict[str, set[str]] = {p: set() for p in vss.peer_urls}
    for key in keys:
        for peer_id in rank(list(vss.peer_urls), BUCKET, key)[:rf]:
            placed[peer_id].add(key)
    return placed


def wait_available(vss: LocalVSS, count: int) -> None:
    deadline = time.monotonic() + 15
    while requests.get(f"{vss.router_urls[0]}/health", timeout=5).json()["available_peers"] != count:
        assert time.monotonic() < deadline, "router did not see the peers"
        time.sleep(0.05)


def read_all(client: Client, objects: dict[str, bytes]) -> int:
    """How many objects read back intact (through the Client, from 8 threads)."""
    def one(item: tuple[str, bytes]) -> bool:
        got = client.get(BUCKET, item[0])
        return got.is_ok and bytes(got.unwrap().data) == item[1]

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(one, objects.items()))


def test_stop_restart_wipe_and_repair(vss: LocalVSS, tmp_path: Path) -> None:
    objects = {f"obj-{i}": os.urandom(64 + i) for i in range(N_OBJECTS)}
    chunk_keys = [f"{name}_0" for name in objects]
    with Client(vss.uri, capacity_storage="0", progress=False) as client:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda item: client.put(BUCKET, item[0], item[1], rf=2).unwrap(), objects.items()))
        placed = expected(vss, chunk_keys)
        assert {p: inventory(u) for p, u in vss.peer_urls.items()} == placed

        victim = "mictlanx-peer-1"
        vss.stop_peer(victim)
        assert read_all(client, objects) == N_OBJECTS  # 100% readable with one peer down
        vss.start_peer(victim)
        wait_available(vss, 3)
        assert {p: inventory(u) for p, u in vss.peer_urls.items()} == placed
        assert read_all(client, objects) == N_OBJECTS

        assert vss.data_dir is not None
        vss.stop_peer(victim)
        shutil.rmtree(vss.data_dir / victim)
        vss.start_peer(victim)
        wait_available(vss, 3)
        assert inventory(vss.peer_urls[victim]) == set()
        assert read_all(client, objects) == N_OBJECTS

        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run([sys.executable, "-m", "mictlanx_sync", "repair", BUCKET, "--uri", vss.uri, "--json"],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["checked"] == N_OBJECTS and summary["failed"] == 0 and summary["errors"] == []
        assert summary["repaired"] == len(placed[victim]) > 0
        assert {p: inventory(u) for p, u in vss.peer_urls.items()} == placed
        peer = next(p for p in vss.peers if p.peer_id == victim)
        some = sorted(placed[victim])[0]
        original = objects[some.rsplit("_", 1)[0]]
        meta = peer.get_metadata(BUCKET, some).unwrap().metadata
        assert meta.size == len(original) and meta.tags["full_checksum"]
        assert read_all(client, objects) == N_OBJECTS

        again = subprocess.run([sys.executable, "-m", "mictlanx_sync", "repair", BUCKET, "--uri", vss.uri],
                               capture_output=True, text=True, timeout=120, env=env)
        assert again.returncode == 0, again.stderr
        assert "repaired 0 replicas" in again.stdout


def test_router_repair_method_rf_and_errors(vss: LocalVSS) -> None:
    router = MictlanXURI.parse(vss.uri)[0]
    try:
        with Client(vss.uri, capacity_storage="0", progress=False) as client:
            assert client.put("rf1", "one", b"x" * 100, rf=1).unwrap() is True
        result = router.repair("rf1", rf=3).unwrap()
        assert (result["checked"], result["repaired"], result["failed"]) == (1, 2, 0)
        assert sum("one_0" in {i["key"] for i in requests.get(f"{u}/api/v4/xballs", timeout=10).json()}
                   for u in vss.peer_urls.values()) == 3
        assert router.repair("nobucket").unwrap()["checked"] == 0
        assert isinstance(router.repair("rf1", rf=4).unwrap_err(), MaxAvailabilityReachedError)
        assert isinstance(router.repair("rf1", rf=0).unwrap_err(), ValidationError)
        assert isinstance(router.repair("bad/id").unwrap_err(), ValidationError)
        raw = requests.post(f"{vss.router_urls[0]}/api/v4/repair/buckets/rf1", params={"rf": "x"}, timeout=10)
        assert raw.status_code == 400 and raw.json()["detail"]["code"] == 400
        doc = requests.get(f"{vss.router_urls[0]}/openapi.json", timeout=10).json()
        operation = doc["paths"]["/api/v4/repair/buckets/{bucket_id}"]["post"]
        assert operation["operationId"] == "R25" and any(p["name"] == "rf" for p in operation["parameters"])
    finally:
        router.close()
