"""Crash consistency: SIGKILL a peer at random moments during concurrent uploads (protocol §3.1, §3.2).

Three peers (fsync ON) and a router run as subprocesses. Each round starts 20 concurrent
``Client.put`` calls (rf=2, multi-chunk objects) and SIGKILLs a random peer at a random delay
(in half the rounds, at the first moment after it with a phase-2 temp file open, so the crash
hits a write in flight), then restarts it on the same port after a random pause. After every
restart the temp files the crash left in the peer's ``tmp/`` must be gone. At the end every
peer is killed and restarted once more while idle, and:

* every ball on every peer, read directly (P15 list, P4 metadata, P5 data), has exactly
  ``size`` bytes whose SHA-256 is its ``checksum`` (and its ETag): no torn or mixed file;
* every upload that returned ``Ok`` reads back byte-identical through the router, and each
  of its chunks is held, with correct bytes, by at least 2 peers (rf=2 survived the crashes);
* an upload that failed never reads back as other bytes (an error, or the right bytes);
* every ``tmp/`` is empty, and ``balls/`` and the index's inline blobs hold exactly one stored
  version per indexed ball.

A third of the objects are at most ``--inline-ball-max`` (4000 bytes), as are the last chunks
of some others: those are kept in the peer's index (docs/storage.md), not as files, and the
small objects are created with one request (inline bytes, docs/protocol-extensions.md);
``tests/functional/test_peer_inline.py`` also SIGKILLs a peer amid many small writes.

CI: 5 rounds; ``MICTLANX_LONG_TESTS=1``: 30 rounds. The seed is printed;
``MICTLANX_RELIABILITY_SEED=<seed>`` replays the same schedule and data (thread timing differs).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import Client, RetryPolicy
from tests.functional.test_peer_server import inline_blobs
from tests.support.servers import ServerProcess, start_peer, start_router

from .conftest import pick

pytestmark = pytest.mark.timeout(pick(300, 1800))

ROUNDS = pick(5, 30)
UPLOADS = 20
BUCKET = "crash"
CHUNK = 256_000
PEER_IDS = ["mictlanx-peer-0", "mictlanx-peer-1", "mictlanx-peer-2"]


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[Path, dict[str, ServerProcess], ServerProcess]]:
    peers: dict[str, ServerProcess] = {}
    router = None
    try:
        for pid in PEER_IDS:
            peers[pid] = start_peer(tmp_path / pid, pid, fsync=True)
        router = start_router(tmp_path / "router", [(pid, p.url) for pid, p in peers.items()],
                              "--health-interval", "0.25", "--unhealthy-threshold", "1")
        yield tmp_path, peers, router
    finally:
        if router is not None:
            router.kill()
        for peer in peers.values():
            peer.kill()


def wait_available(http: requests.Session, router: ServerProcess, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if http.get(f"{router.url}/health", timeout=5).json().get("available_peers") == count:
            return
        assert time.monotonic() < deadline, f"router does not see {count} peers"
        time.sleep(0.05)


def tmp_names(root: Path, pid: str) -> set[str]:
    return {p.name for p in (root / pid / "tmp").iterdir()}


def peer_balls(http: requests.Session, peer: ServerProcess) -> list[dict[str, Any]]:
    resp = http.get(f"{peer.url}/api/v4/xballs", params={"include_disabled": "1"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def check_ball(http: requests.Session, peer: ServerProcess, bucket: str, key: str) -> tuple[bool, str]:
    """P4 + P5 on one peer: ``(holds it, problem or "")``."""
    meta = http.get(f"{peer.url}/api/v4/buckets/{bucket}/metadata/{key}", timeout=30)
    if meta.status_code == 404:
        return False, ""
    assert meta.status_code == 200, meta.text
    m = meta.json()["metadata"]
    data = http.get(f"{peer.url}/api/v4/buckets/{bucket}/{key}", timeout=30)
    if m["is_disabled"]:
        return True, "" if data.status_code == 404 else f"disabled ball served: {data.status_code}"
    if data.status_code != 200:
        return True, f"P5 {data.status_code} for a committed ball"
    digest = hashlib.sha256(data.content).hexdigest()
    if len(data.content) != m["size"] or digest != m["checksum"] or data.headers.get("ETag") != f'"{digest}"':
        return True, (f"{bucket}@{key}: {len(data.content)} bytes sha {digest[:12]} vs metadata {m['size']} "
                      f"bytes sha {m['checksum'][:12]}, ETag {data.headers.get('ETag')}")
    return True, ""


def object_size(rng: random.Random) -> int:
    """A third of the objects fit one inline ball (<= 4000 bytes: the one-request create, kept in
    the peer's index); the rest are 1-10 chunks, whose last chunk is sometimes inline too."""
    return rng.randint(100, 4_000) if rng.random() < 1 / 3 else rng.randint(1_000, 2_500_000)


def test_sigkill_during_concurrent_uploads(cluster: tuple[Path, dict[str, ServerProcess], ServerProcess],
                                           http: requests.Session, seed: int) -> None:
    root, peers, router = cluster
    rng = random.Random(seed)
    uri = f"mictlanx://mictlanx-router-0@127.0.0.1:{router.port}/?protocol=http"
    retry = RetryPolicy(retries=12, initial_delay=0.2, backoff_factor=1.5, max_delay=1.0, jitter=True, deadline=90)
    objects: dict[str, bytes] = {}
    outcomes: dict[str, Any] = {}
    crashes, leftovers_cleaned = 0, 0
    started = time.monotonic()
    with Client(uri, eviction_policy="NONE", retry=retry, breaker=None, progress=False, max_workers=8) as client:
        for rnd in range(ROUNDS):
            batch = {f"r{rnd}-o{i}": rng.randbytes(object_size(rng)) for i in range(UPLOADS)}
            objects.update(batch)
            victim_id = rng.choice(PEER_IDS)
            kill_after, down_for = rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.8)
            gate = threading.Barrier(UPLOADS + 1)

            def upload(key: str, data: bytes, gate: threading.Barrier = gate) -> Any:
                gate.wait()
                return client.put(BUCKET, key, data, chunk_size=CHUNK, rf=2)

            with ThreadPoolExecutor(UPLOADS) as pool:
                futures = {key: pool.submit(upload, key, data) for key, data in batch.items()}
                gate.wait()
                time.sleep(kill_after)
                victim = peers[victim_id]
                # half the rounds: the first moment after the delay with a phase-2 write in flight
                busy_until = time.monotonic() + (1.0 if rng.random() < 0.5 else 0.0)
                while not tmp_names(root, victim_id) and time.monotonic() < busy_until:
                    time.sleep(0.002)
                victim.kill()
                crashes += 1
                left = tmp_names(root, victim_id)
                time.sleep(down_for)
                victim.restart()
                still = left & tmp_names(root, victim_id)
                assert not still, f"seed={seed}: temp files of the crash survived the restart: {sorted(still)}"
                leftovers_cleaned += len(left)
                for key, future in futures.items():
                    outcomes[key] = future.result(timeout=180)
            ok = sum(outcomes[k].is_ok for k in batch)
            print(f"round {rnd}: killed {victim_id} after {kill_after:.2f}s for {down_for:.2f}s; "
                  f"{ok}/{UPLOADS} uploads ok; {len(left)} temp files left by the crash")
        wait_available(http, router, len(peers))

        # Idle crash: SIGKILL everyone, restart, then tmp/ must be empty and balls/ without orphans.
        for pid, peer in peers.items():
            peer.restart()
            assert not tmp_names(root, pid), f"seed={seed}: {pid} tmp/ not empty after restart"
        wait_available(http, router, len(peers))

        problems: list[str] = []
        balls_checked = 0
        for pid, peer in peers.items():
            listed = peer_balls(http, peer)
            files = list((root / pid / "balls").iterdir())
            blobs = inline_blobs(root / pid)
            if len(files) + len(blobs) != len(listed):
                problems.append(f"{pid}: {len(files)} version files and {len(blobs)} inline blobs for {len(listed)} "
                                "indexed balls")
            for entry in listed:
                held, problem = check_ball(http, peer, entry["bucket_id"], entry["key"])
                balls_checked += 1
                if not held or problem:
                    problems.append(f"{pid}: {problem or 'listed but P4 says missing'}")

        succeeded = [k for k, r in outcomes.items() if r.is_ok]
        failed = {k: type(r.unwrap_err()).__name__ for k, r in outcomes.items() if r.is_err}
        for key in succeeded:
            data = objects[key]
            got = client.get(BUCKET, key)
            if got.is_err or bytes(got.unwrap().data) != data:
                problems.append(f"uploaded {key} does not read back: {got}")
            for i in range(max(1, -(-len(data) // CHUNK))):
                chunk_key = f"{key}_{i}"
                good = 0
                for peer in peers.values():
                    held, problem = check_ball(http, peer, BUCKET, chunk_key)
                    good += held and not problem
                if good < 2:
                    problems.append(f"{chunk_key} of a successful rf=2 upload has {good} good replicas")
        for key in failed:
            got = client.get(BUCKET, key)
            if got.is_ok and bytes(got.unwrap().data) != objects[key]:
                problems.append(f"failed upload {key} reads back as other bytes")

    elapsed = time.monotonic() - started
    print(f"\nseed={seed}: {crashes + len(peers)} SIGKILLs survived ({crashes} during uploads, {len(peers)} idle); "
          f"{len(outcomes)} uploads, {len(succeeded)} ok, {len(failed)} failed {sorted(set(failed.values()))}; "
          f"{balls_checked} balls verified on the peers; {leftovers_cleaned} crash temp files removed at restart; "
          f"{elapsed:.1f}s")
    assert not problems, f"seed={seed}: {len(problems)} problems:\n" + "\n".join(problems[:30])
    assert succeeded, f"seed={seed}: no upload succeeded: the harness checked nothing"
