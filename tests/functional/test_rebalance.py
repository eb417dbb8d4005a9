"""Issue 16, rebalancing (docs/rebalancing.md): real peers and two real routers on loopback.

One module cluster, tests in order (each builds on the previous placement):

1. a 7th peer joins router A: exactly the balls whose top-2 changed are copied to it (counted
   with ``placement.rank``) and their displaced copies dropped, so every ball ends on exactly
   its top-2, while reader and writer threads see zero failures;
2. two more peers join, router A learns both while router B learns only one, and both
   rebalance at once on different peer sets: every ball keeps at least 2 copies and reads
   through both; once B learns the other one too, every ball is on exactly its top-2;
3. router A is SIGKILLed mid-pass and restarted: it resumes its epoch from the journal and
   still ends with every ball on exactly its top-2;
4. a peer stopped for good: after the grace every ball is back at 2 copies on its top-2.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.server.router.placement import rank
from tests.support.servers import ServerProcess, start_peer, start_router

pytestmark = pytest.mark.timeout(240)

BUCKET = "rebal"
WBUCKET = "rebalw"
N_OBJECTS = 200
SIZE = 3000
GRACE = 3.0
REPO_ROOT = Path(__file__).resolve().parents[2]
RATE = 48_000  # bytes/s: a pass of ~60 copies of 3 KB takes a few seconds


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.peers: dict[str, ServerProcess] = {}
        for i in range(6):
            self.add_peer_process(f"rp-{i}")
        initial = [(p, s.url) for p, s in self.peers.items()]
        self.routers = {name: start_router(root / f"router-{name}", initial, "--health-interval", "0.2",
                                           "--unhealthy-threshold", "1", "--rebalance-settle", "0.3",
                                           "--rebalance-grace", str(GRACE), "--rebalance-bytes-per-second",
                                           str(RATE), "--rebalance-concurrency", "2", router_id=f"router-{name}")
                        for name in ("a", "b")}
        self.http = requests.Session()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.stopped: set[str] = set()

    def add_peer_process(self, peer_id: str) -> ServerProcess:
        self.peers[peer_id] = start_peer(self.root / peer_id, peer_id)
        return self.peers[peer_id]

    def close(self) -> None:
        self.http.close()
        for server in [*self.routers.values(), *self.peers.values()]:
            server.kill()

    def uri(self, name: str) -> str:
        return f"mictlanx://router-{name}@127.0.0.1:{self.routers[name].port}/?protocol=http"

    def register(self, name: str, peer_ids: list[str]) -> None:
        body = [{"peer_id": p, "hostname": "127.0.0.1", "port": self.peers[p].port, "protocol": "http"}
                for p in peer_ids]
        resp = self.http.post(f"{self.routers[name].url}/api/v4/xpeers", json=body, timeout=10)
        assert resp.status_code == 204, resp.text

    def status(self, name: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.routers[name].url}/api/v4/rebalance", timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait_done(self, name: str, peers: list[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(name)
            if st["state"] == "done" and sorted(st["done_peers"]) == sorted(peers) and not st["running"]:
                return st
            time.sleep(0.1)
        raise AssertionError(f"router {name} did not finish rebalancing onto {peers}: {self.status(name)}")

    def running_peers(self) -> list[str]:
        return sorted(p for p in self.peers if p not in self.stopped)

    def inventory(self, peer_id: str) -> set[tuple[str, str]]:
        resp = self.http.get(f"{self.peers[peer_id].url}/api/v4/xballs", params={"end": "100000"}, timeout=30)
        assert resp.status_code == 200, resp.text
        return {(i["bucket_id"], i["key"]) for i in resp.json() if i["bucket_id"] in (BUCKET, WBUCKET)}

    def balls(self) -> list[tuple[str, str]]:
        return sorted((b, f"{k}_0") for b, k in self.objects)


def top(peers: list[str], ball: tuple[str, str], rf: int = 2) -> list[str]:
    return rank(peers, ball[0], ball[1])[:rf]


def holders_of(rc: Cluster, peers: list[str]) -> dict[tuple[str, str], set[str]]:
    """The peers (of ``peers``) listing each ball as current."""
    holders: dict[tuple[str, str], set[str]] = {}
    for peer_id in peers:
        for ball in rc.inventory(peer_id):
            holders.setdefault(ball, set()).add(peer_id)
    return holders


def assert_at_top2(rc: Cluster, peers: list[str]) -> None:
    holders = holders_of(rc, peers)
    short = [b for b in rc.balls() if not set(top(peers, b)) <= holders.get(b, set())]
    assert short == [], f"{len(short)} balls not on their top-2: {short[:5]}"


def assert_exactly_at_top2(rc: Cluster, peers: list[str]) -> None:
    """Every ball has exactly 2 copies, on its top-2 of ``peers``: moved, and the extra copies dropped."""
    holders = holders_of(rc, peers)
    wrong = {b: sorted(holders.get(b, set())) for b in rc.balls() if holders.get(b, set()) != set(top(peers, b))}
    assert wrong == {}, f"{len(wrong)} balls not on exactly their top-2: {list(wrong.items())[:5]}"
    assert all(len(holders[b]) == 2 for b in rc.balls())


def read_all(client: Client, objects: dict[tuple[str, str], bytes]) -> list[str]:
    bad = []
    for (bucket, key), data in objects.items():
        got = client.get(bucket, key)
        if not got.is_ok or bytes(got.unwrap().data) != data:
            bad.append(f"{bucket}/{key}: {got}")
    return bad


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("rebalance"))
    try:
        yield cluster
    finally:
        cluster.close()


def test_join_moves_exactly_the_balls_whose_top2_changed(rc: Cluster, tmp_path: Path) -> None:
    old = sorted(rc.peers)
    with Client(rc.uri("a"), capacity_storage="0", progress=False, cache_path=str(tmp_path / "c")) as client:
        for i in range(N_OBJECTS):
            data = os.urandom(SIZE)
            assert client.put(BUCKET, f"obj-{i}", data, rf=2).unwrap()
            rc.objects[(BUCKET, f"obj-{i}")] = data
        baseline = rc.status("a")
        assert baseline["epoch"] == 0 and baseline["state"] == "idle"
        for peer_id in old:  # written on their top-2 of the 6 peers
            assert rc.inventory(peer_id) == {b for b in rc.balls() if peer_id in top(old, b)}

        rc.add_peer_process("rp-6")
        new = sorted(rc.peers)
        initial_balls = rc.balls()
        expected_moves = sum(1 for b in initial_balls if top(old, b) != top(new, b))
        assert expected_moves == sum(1 for b in initial_balls if "rp-6" in top(new, b)) > 0

        stop = threading.Event()
        failures: list[str] = []
        reads = [0]
        written: dict[tuple[str, str], bytes] = {}

        def reader() -> None:
            rng = random.Random(1)
            items = list(rc.objects.items())
            while not stop.is_set():
                (bucket, key), data = rng.choice(items)
                got = client.get(bucket, key)
                reads[0] += 1
                if not got.is_ok or bytes(got.unwrap().data) != data:
                    failures.append(f"read {key}: {got}")

        def writer() -> None:
            i = 0
            while not stop.is_set():
                data = os.urandom(SIZE)
                got = client.put(WBUCKET, f"w-{i}", data, rf=2)
                if got.is_ok:
                    written[(WBUCKET, f"w-{i}")] = data
                else:
                    failures.append(f"write w-{i}: {got}")
                i += 1

        rc.register("a", ["rp-6"])  # synchronous health check: new writes already place on rp-6
        threads = [threading.Thread(target=reader), threading.Thread(target=reader), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        try:
            seen_running = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st = rc.status("a")
                seen_running = seen_running or st["running"]
                if st["state"] == "done" and st["epoch"] == 1:
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert seen_running, "the pass ended before the concurrent load could overlap it"
        st = rc.wait_done("a", new)
        print(f"\njoin: moved {st['moved']} (expected {expected_moves}), planned {st['planned']}, "
              f"checked {st['checked']}, in_place {st['in_place']}, removed {st['removed']}, "
              f"surplus {st['surplus']}, bytes {st['bytes']}, reads {reads[0]}, writes {len(written)}, "
              f"failures {len(failures)}")
        assert failures == []
        assert reads[0] > 0 and len(written) > 0
        assert st["moved"] == st["planned"] == expected_moves
        assert st["failed"] == 0 and st["bytes"] == expected_moves * SIZE
        # each moved ball had one displaced copy (the old second of its top-2): dropped, none left
        assert st["removed"] == expected_moves and st["surplus"] == 0
        rc.objects.update(written)
        assert rc.inventory("rp-6") == {b for b in rc.balls() if "rp-6" in top(new, b)}
        assert_exactly_at_top2(rc, new)
        assert read_all(client, rc.objects) == []
        again = rc.http.post(f"{rc.routers['a'].url}/api/v4/rebalance", timeout=10)
        assert again.status_code == 202
        st = rc.wait_done("a", new)
        assert st["epoch"] == 2 and st["moved"] == 0 and st["planned"] == 0


def test_cli_shows_and_starts_a_pass(rc: Cluster) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "mictlanx_sync", "rebalance", "--uri", rc.uri("a")]
    shown = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)["router-a"]
    assert status["state"] == "done" and status["epoch"] == 2
    started = subprocess.run([*cmd, "--start", "--watch", "--interval", "0.2"], capture_output=True, text=True,
                             timeout=60, env=env)
    assert started.returncode == 0, started.stderr
    assert "router-a: " in started.stdout and "moved 0" in started.stdout
    assert rc.wait_done("a", sorted(rc.peers))["epoch"] == 3


def test_two_routers_rebalancing_at_once_lose_nothing(rc: Cluster, tmp_path: Path) -> None:
    rc.add_peer_process("rp-7")
    peers = sorted(rc.peers)
    # A learns rp-6 (it has since test 1) and rp-7; B, which never heard of rp-6, learns only rp-7:
    # both rebalance at the same time on different peer sets, each dropping what its own plan
    # calls extra (docs/rebalancing.md §4 on why that never leaves fewer than rf copies).
    b_peers = sorted(p for p in peers if p != "rp-6")
    threads = [threading.Thread(target=rc.register, args=("a", ["rp-6", "rp-7"])),
               threading.Thread(target=rc.register, args=("b", ["rp-7"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a, b = rc.wait_done("a", peers), rc.wait_done("b", b_peers)
    print(f"\ntwo routers: a moved {a['moved']} removed {a['removed']}, b moved {b['moved']} removed "
          f"{b['removed']}, failed {a['failed']}+{b['failed']}")
    assert a["failed"] == b["failed"] == 0
    holders = holders_of(rc, peers)
    short = {x: sorted(holders.get(x, set())) for x in rc.balls() if len(holders.get(x, set())) < 2}
    assert short == {}, f"{len(short)} balls below 2 copies: {list(short.items())[:5]}"
    assert_at_top2(rc, peers)  # the targets of the router with the larger set are never dropped
    for name in ("a", "b"):
        with Client(rc.uri(name), capacity_storage="0", progress=False, cache_path=str(tmp_path / name)) as client:
            assert read_all(client, rc.objects) == []
    # Once B learns rp-6 its plan is A's: it drops what it had kept for its old plan.
    rc.register("b", ["rp-6"])
    b = rc.wait_done("b", peers)
    print(f"then b, knowing rp-6: moved {b['moved']}, removed {b['removed']}")
    assert b["failed"] == 0
    assert_exactly_at_top2(rc, peers)


def test_router_killed_mid_pass_resumes_from_its_journal(rc: Cluster, tmp_path: Path) -> None:
    rc.add_peer_process("rp-8")
    peers = sorted(rc.peers)
    expected = {x for x in rc.balls() if "rp-8" in top(peers, x)}
    rc.register("a", ["rp-8"])
    deadline = time.monotonic() + 30
    while True:
        st = rc.status("a")
        if st["running"] and st["cursor"] is not None and 0 < st["moved"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.02)
    epoch = st["epoch"]
    rc.routers["a"].kill()  # SIGKILL: no clean-up
    rc.routers["a"].start(rc.routers["a"].port or 0)
    after = rc.status("a")
    assert after["resumed"] is True and after["epoch"] == epoch, after
    st = rc.wait_done("a", peers)
    print(f"\nrestart: killed at cursor {after['cursor']}, resumed epoch {epoch}, moved in all {st['moved']} "
          f"of {len(expected)}")
    assert st["epoch"] == epoch and st["failed"] == 0 and st["moved"] <= len(expected)
    assert rc.inventory("rp-8") == expected
    assert_exactly_at_top2(rc, peers)  # the drops of the batch cut short by the kill were done on resuming
    rc.register("b", ["rp-8"])
    b = rc.wait_done("b", peers)
    assert b["moved"] == b["removed"] == 0  # A left nothing to do
    assert_exactly_at_top2(rc, peers)
    with Client(rc.uri("a"), capacity_storage="0", progress=False, cache_path=str(tmp_path / "c")) as client:
        assert read_all(client, rc.objects) == []


def test_peer_gone_for_good_every_ball_back_at_rf(rc: Cluster, tmp_path: Path) -> None:
    victim = "rp-2"
    rc.peers[victim].stop()
    rc.stopped.add(victim)
    present = rc.running_peers()
    started = time.monotonic()
    for name in ("a", "b"):
        rc.wait_done(name, present, timeout=GRACE + 60)
    elapsed = time.monotonic() - started
    print(f"\ngone: back at rf after {elapsed:.1f} s (grace {GRACE} s); a moved {rc.status('a')['moved']}, "
          f"b moved {rc.status('b')['moved']}")
    assert_exactly_at_top2(rc, present)
    assert elapsed < GRACE + 60
    with Client(rc.uri("b"), capacity_storage="0", progress=False, cache_path=str(tmp_path / "c")) as client:
        assert read_all(client, rc.objects) == []


def test_a_ball_written_with_more_copies_keeps_them(rc: Cluster, tmp_path: Path) -> None:
    """R5 records ``mictlanx_rf`` when a write asks for more than ``--rebalance-rf`` copies, so a
    pass that drops extra copies keeps all three (docs/rebalancing.md §4.4)."""
    present = rc.running_peers()
    assert len(present) >= 3
    data = os.urandom(5000)
    with Client(rc.uri("a"), capacity_storage="0", progress=False, cache_path=str(tmp_path / "c")) as client:
        assert client.put("rf3", "kept", data, rf=3).unwrap()
        assert client.put("rf3", "default", data, rf=2).unwrap()
        tags = client.routers[0].get_metadata("rf3", "kept_0").unwrap().metadata.tags
        assert tags.get("mictlanx_rf") == "3"
        assert "mictlanx_rf" not in client.routers[0].get_metadata("rf3", "default_0").unwrap().metadata.tags
        resp = rc.http.post(f"{rc.routers['a'].url}/api/v4/rebalance", timeout=10)
        assert resp.status_code == 202, resp.text
        rc.wait_done("a", present)
        copies = [p for p in present if rc.http.get(f"{rc.peers[p].url}/api/v4/buckets/rf3/metadata/kept_0",
                                                    timeout=10).status_code == 200]
        assert sorted(copies) == sorted(top(present, ("rf3", "kept_0"), rf=3))
        assert client.get("rf3", "kept").unwrap().data.tobytes() == data
