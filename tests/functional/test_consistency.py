"""Issue 11 acceptance: versioned, atomic objects under racing writers and failures.

Two routers, three peers, rf=2, one ``Client`` per router (as two Flask workers behind two
routers would be). After both racing calls return, every replica of every chunk agrees, a
read returns exactly the bytes of one acknowledged write (the newer one when both were
acknowledged), never an ``IntegrityError``, and a key that reads as not found takes a new put.
``MICTLANX_LONG_TESTS=1`` runs more rounds (docs/consistency.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.protocol.errors import AlreadyExistsError, IntegrityError, NotFoundError
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.versions import VERSION_HEADER, HybridClock

from .client_support import R5_PUT_METADATA, Cluster, FailFirst, new_client
from .test_peer_versions import vput

LONG = os.environ.get("MICTLANX_LONG_TESTS", "").strip().lower() in ("1", "true", "yes", "on")
ROUNDS = 200 if LONG else 50
RF = 2
CHUNK = 1000
FAST_RETRY = RetryPolicy(retries=4, initial_delay=0.05, max_delay=0.3, jitter=False, deadline=30)

pytestmark = pytest.mark.timeout(600 if LONG else 240)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(peers=3, routers=2, router_faults="[]") as instance:
        yield instance


@pytest.fixture()
def pair(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    """One client per router: the two writers of every race."""
    with new_client(cluster.uri(0), tmp_path / "a", retry=FAST_RETRY, capacity_storage="0") as a, \
            new_client(cluster.uri(1), tmp_path / "b", retry=FAST_RETRY, capacity_storage="0") as b:
        yield a, b


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait(10)
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a racing call did not return within 60 s"
    return results


def chunk0_version(cluster: Cluster, router_index: int, bucket: str, key: str) -> str:
    """The version the writer behind router ``router_index`` gave chunk 0 (its R5)."""
    seen = cluster.log.select(server=cluster.routers[router_index].server_id, method="POST",
                              path=R5_PUT_METADATA,
                              where=lambda s: s.headers.get(VERSION_HEADER.lower(), "") != ""
                              and "mictlanx-stage" not in s.headers)
    # The body is not recorded; the chunk-0 R5 is the unstaged one of this key's round.
    versions = [s.headers[VERSION_HEADER.lower()] for s in seen]
    return max(versions) if versions else ""


def peer_state(cluster: Cluster, bucket: str, key: str) -> dict[str, tuple[str, str]]:
    """``peer_id -> (checksum, version)`` of the current version of ``key`` on each peer."""
    state = {}
    for peer in cluster.peers:
        if not peer.running:
            continue
        resp = requests.get(f"{peer.url}/api/v4/buckets/{bucket}/metadata/{key}", timeout=10)
        if resp.status_code == 200:
            body = resp.json()
            state[peer.server_id] = (body["metadata"]["checksum"], str(body.get("version", "")))
        else:
            assert resp.status_code == 404, resp.text
    return state


def assert_replicas_agree(cluster: Cluster, bucket: str, key: str, expected: Optional[bytes]) -> None:
    """Every chunk of the object has at least ``RF`` replicas, all at chunk 0's version; or, for
    ``None``, no peer has a current chunk of it."""
    if expected is None:
        for i in range(max(1, 16)):
            assert peer_state(cluster, bucket, f"{key}_{i}") == {}, f"{key}_{i} left on a peer"
        return
    n = max(1, -(-len(expected) // CHUNK))
    versions = set()
    for i in range(n):
        state = peer_state(cluster, bucket, f"{key}_{i}")
        # rf is a floor: when a peer misses a health check under load (marked down for a
        # moment), a chunk write placed meanwhile goes to another peer, and the commit promotes
        # every staged copy of the version, so a chunk may be current on rf + 1 peers (the rebalancer removes the
        # surplus, docs/rebalancing.md §4); what must hold is rf copies, all of one version.
        assert len(state) >= RF, (i, state)
        piece = expected[i * CHUNK:(i + 1) * CHUNK]
        assert {checksum for checksum, _ in state.values()} == {hashlib.sha256(piece).hexdigest()}, (i, state)
        versions |= {version for _, version in state.values()}
    assert len(versions) == 1, versions
    assert peer_state(cluster, bucket, f"{key}_{n}") == {}, "a chunk past the object's end is current"


def read(client: Client, bucket: str, key: str) -> Optional[bytes]:
    """The object's bytes, or None for not found; any other error fails the test."""
    result = client.get(bucket, key)
    if result.is_err:
        error = result.unwrap_err()
        assert not isinstance(error, IntegrityError), repr(error)
        assert type(error) is NotFoundError, repr(error)
        return None
    return result.unwrap().data.tobytes()


# --- racing updates and creates ---------------------------------------------------------------
@pytest.mark.parametrize("update", [True, False], ids=["updates", "creates"])
def test_racing_writes_converge_on_one_acknowledged_write(cluster: Cluster, pair: tuple[Client, Client],
                                                          bucket: str, update: bool) -> None:
    a, b = pair
    failures = []
    for round_ in range(ROUNDS):
        key = f"{'upd' if update else 'new'}-{round_}"
        if update:
            assert a.put(bucket, key, os.urandom(2500), chunk_size=CHUNK, rf=RF).unwrap()
        datas = [os.urandom(4 * CHUNK - round_ % 3), os.urandom(4 * CHUNK + round_ % 5)]
        if round_ % 4 == 3:  # single-chunk objects too: replicas of one ball must agree
            datas = [os.urandom(CHUNK // 2), os.urandom(CHUNK // 3)]
        cluster.log.clear()
        results = race(partial(a.put, bucket, key, datas[0], chunk_size=CHUNK, rf=RF, update=update),
                       partial(b.put, bucket, key, datas[1], chunk_size=CHUNK, rf=RF, update=update))
        acked = [i for i in (0, 1) if results[i].is_ok]
        for i in (0, 1):
            if results[i].is_err:  # only a create may lose, and only as "already exists"
                assert not update and type(results[i].unwrap_err()) is AlreadyExistsError, results[i]
        assert acked, results
        got = read(a, bucket, key)
        assert got is not None and got == read(b, bucket, key)
        assert got in [datas[i] for i in acked], f"round {round_}: read bytes of no acknowledged write"
        if len(acked) == 2:
            versions = [chunk0_version(cluster, 0, bucket, key), chunk0_version(cluster, 1, bucket, key)]
            newer = 0 if versions[0] > versions[1] else 1
            if got != datas[newer]:
                failures.append((round_, versions))
        assert_replicas_agree(cluster, bucket, key, got)
    assert not failures, f"the older of two acknowledged writes was read: {failures}"


def test_delete_racing_a_16_chunk_put(cluster: Cluster, pair: tuple[Client, Client], bucket: str) -> None:
    a, b = pair
    outcomes = {"put": 0, "delete": 0}
    for round_ in range(ROUNDS):
        key = f"del-{round_}"
        data = os.urandom(16 * CHUNK)
        if round_ % 2:
            assert a.put(bucket, key, os.urandom(3 * CHUNK), chunk_size=CHUNK, rf=RF).unwrap()
        results = race(partial(a.put, bucket, key, data, chunk_size=CHUNK, rf=RF, update=True),
                       partial(b.delete, key, bucket))
        assert results[0].is_ok and results[1].is_ok, results
        got = read(b, bucket, key)
        assert got in (None, data), f"round {round_}: neither the put nor the delete"
        assert got == read(a, bucket, key)
        if got is None:
            outcomes["delete"] += 1
            assert_replicas_agree(cluster, bucket, key, None)
            fresh = os.urandom(5 * CHUNK)
            assert b.put(bucket, key, fresh, chunk_size=CHUNK, rf=RF).unwrap()  # never AlreadyExists
            assert read(a, bucket, key) == fresh
        else:
            outcomes["put"] += 1
            assert_replicas_agree(cluster, bucket, key, data)
    assert sum(outcomes.values()) == ROUNDS


# --- failed puts and deletes with a peer down ------------------------------------------------------
def test_failed_put_never_removes_another_writers_identical_object(cluster: Cluster, pair: tuple[Client, Client],
                                                                    bucket: str) -> None:
    a, b = pair
    faults = f"{cluster.routers[1].url}/_faults"
    for round_ in range(10):
        key = f"same-{round_}"
        data = os.urandom(6 * CHUNK)
        # Router 1 fails b's fourth chunk upload and every one after it: b's put fails
        # after it staged chunks, while a puts the same bytes through router 0.
        rule = [{"route": "R7", "action": "status", "status": 400, "code": 400, "skip": 3}]
        assert requests.post(faults, json=rule, timeout=5).status_code == 200
        try:
            results = race(partial(a.put, bucket, key, data, chunk_size=CHUNK, rf=RF),
                           partial(b.put, bucket, key, data, chunk_size=CHUNK, rf=RF))
        finally:
            requests.delete(faults, timeout=5)
        assert results[0].is_ok, results[0]
        assert read(a, bucket, key) == data
        assert read(b, bucket, key) == data
        assert_replicas_agree(cluster, bucket, key, data)


def test_delete_while_holder_down_survives_router_loss_and_never_removes_a_newer_write(
        cluster: Cluster, pair: tuple[Client, Client], bucket: str) -> None:
    a, b = pair
    key = "hinted"
    old = os.urandom(3 * CHUNK)
    assert a.put(bucket, key, old, chunk_size=CHUNK, rf=RF).unwrap()
    holder = cluster.holders(bucket, f"{key}_0")[0]
    cluster.stop_peer(holder)
    try:
        deleted = a.delete(key, bucket).unwrap()  # router 0 records a pending delete for the holder
        assert holder in deleted.pending_peers or deleted.n_deletes >= 1
        cluster.stop_router(0)  # the router that recorded it is gone
    finally:
        cluster.start_peer(holder)
    cluster.wait_ready()
    assert read(b, bucket, key) is None  # the returning holder's stale copy is hidden
    newer = os.urandom(4 * CHUNK)
    assert b.put(bucket, key, newer, chunk_size=CHUNK, rf=RF).unwrap()  # a create: the key reads as absent
    cluster.start_router(0)  # replays its pending delete: a tombstone older than `newer`
    cluster.wait_ready()
    for client in (a, b):
        assert read(client, bucket, key) == newer
    assert_replicas_agree(cluster, bucket, key, newer)


def test_new_keys_are_written_and_read_while_a_peer_is_down(cluster: Cluster, pair: tuple[Client, Client],
                                                           bucket: str) -> None:
    a, b = pair
    down = cluster.peers[2].server_id
    cluster.stop_peer(down)
    try:
        for i in range(100):
            data = os.urandom(1500 + i)
            client = a if i % 2 else b
            assert client.put(bucket, f"k{i}", data, chunk_size=CHUNK, rf=RF).unwrap()
            assert read(b if i % 2 else a, bucket, f"k{i}") == data
    finally:
        cluster.start_peer(down)
        cluster.wait_ready()


def test_identical_content_is_a_no_op_whatever_the_chunk_size(cluster: Cluster, pair: tuple[Client, Client],
                                                              bucket: str) -> None:
    a, b = pair
    data = os.urandom(5 * CHUNK)
    assert a.put(bucket, "same", data, chunk_size=CHUNK, rf=RF).unwrap()
    cluster.log.clear()
    assert b.put(bucket, "same", data, chunk_size=2 * CHUNK, rf=RF).unwrap()  # no AlreadyExistsError
    assert cluster.log.count(method="POST", path=R5_PUT_METADATA) == 0
    assert read(b, bucket, "same") == data


# --- the wire as upstream's client drives it -------------------------------------------------------
def test_upstream_wire_flow_still_works(cluster: Cluster, bucket: str) -> None:
    """Chunk puts ``{key}_{i}`` with upstream's tags and no version headers, R3/R11 reads, R13 deletes."""
    router = cluster.routers[0].url + "/api/v4"
    data = os.urandom(3 * CHUNK + 10)
    full = hashlib.sha256(data).hexdigest()
    pieces = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    for i, piece in enumerate(pieces):
        body = {"key": f"up_{i}", "size": len(piece), "checksum": hashlib.sha256(piece).hexdigest(),
                "ball_id": "up", "bucket_id": bucket, "replication_factor": RF,
                "tags": {"index": str(i), "chunk_size": str(len(piece)), "group_id": "up",
                         "num_chunks": str(len(pieces)), "full_checksum": full}}
        meta = requests.post(f"{router}/buckets/{bucket}/metadata", json=body, timeout=10)
        assert meta.status_code == 200, meta.text
        group = meta.json()["tasks_ids"][0]
        stored = requests.post(f"{router}/buckets/data/{group}/chunked", data=piece, timeout=10)
        assert stored.status_code == 200, stored.text
    got = b""
    for i in range(len(pieces)):
        meta = requests.get(f"{router}/buckets/{bucket}/metadata/up_{i}", timeout=10)
        assert meta.status_code == 200 and meta.json()["metadata"]["tags"]["full_checksum"] == full
        got += requests.get(f"{router}/buckets/{bucket}/up_{i}", timeout=10).content
    assert got == data
    for i in range(len(pieces)):
        assert requests.delete(f"{router}/buckets/{bucket}/up_{i}", timeout=10).status_code == 200
    assert requests.get(f"{router}/buckets/{bucket}/metadata/up_0", timeout=10).status_code == 404


def test_listings_finish_the_commit_of_a_writer_that_died_before_r26(cluster: Cluster, pair: tuple[Client, Client],
                                                                     bucket: str) -> None:
    """A writer killed between its commit point (chunk 0) and R26 leaves chunks 1..N-1 staged:
    `get` reads the object whole (pinned), and `stat`/`ls` must not show a partial: they
    finish the commit (docs/consistency.md §3.1)."""
    a, _ = pair
    router = cluster.routers[0].url + "/api/v4"
    data = os.urandom(4 * CHUNK)
    full = hashlib.sha256(data).hexdigest()
    version = HybridClock("dead-writer").next()
    for i in (1, 2, 3, 0):  # the staged chunks, then chunk 0 unstaged: the commit point; no R26
        piece = data[i * CHUNK:(i + 1) * CHUNK]
        headers = {VERSION_HEADER: version, "Update": "1", **({} if i == 0 else {"Mictlanx-Stage": "1"})}
        body = {"key": f"dead_{i}", "size": len(piece), "checksum": hashlib.sha256(piece).hexdigest(),
                "ball_id": "dead", "replication_factor": RF,
                "tags": {"index": str(i), "chunk_size": str(len(piece)), "group_id": "dead", "num_chunks": "4",
                         "full_checksum": full}}
        meta = requests.post(f"{router}/buckets/{bucket}/metadata", json=body, headers=headers, timeout=10)
        assert meta.status_code == 200, meta.text
        stored = requests.post(f"{router}/buckets/data/{meta.json()['tasks_ids'][0]}/chunked", data=piece, timeout=10)
        assert stored.status_code == 200, stored.text
    assert peer_state(cluster, bucket, "dead_1") == {}  # staged: invisible to unpinned reads
    assert read(a, bucket, "dead") == data  # pinned reads see the committed object whole
    assert a.get_metadata(bucket, "dead").unwrap().size == len(data)  # not chunk 0 alone
    assert a.get_bucket_metadata(bucket).unwrap().balls["dead"].size == len(data)
    assert_replicas_agree(cluster, bucket, "dead", data)  # promoted: every chunk current on rf peers


# --- a peer that cannot answer the commit or delete fan-out -----------------------------------
def _wait_for(check: Callable[[], Any], timeout: float = 15.0) -> None:
    """Retry ``check`` (assertions) until it passes or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("operation", ["commit", "delete"])
def test_a_peer_that_misses_the_fan_out_is_owed_it(tmp_path: Path, operation: str) -> None:
    """R26 (or R13) answers 200 when one peer applied it; peers that could not answer (a 5xx,
    a transport error, no answer in time) but were never marked down get a pending record
    too, replayed at their next health check. Without it their staged chunks never became
    current (an acknowledged rf=2 write left with one current copy, found by the SIGKILL
    crash test) and their old version outlived the delete."""
    wrapped: list[FailFirst] = []

    def wrap(app: Any) -> Any:
        # peers 1 and 2 miss the first commit (or delete) they are sent; peer 0 applies it
        method, suffix = ("POST", "/commit") if operation == "commit" else ("DELETE", "/obj")
        wrapped.append(FailFirst(app, method, suffix, [0 if not wrapped else 1]))
        return wrapped[-1]

    cluster = Cluster(peers=3, routers=1, health_interval=0.3)
    cluster.peer_wrap = wrap
    with cluster, new_client(cluster.uri(0), tmp_path, retry=FAST_RETRY, capacity_storage="0") as client:
        data = os.urandom(8 * CHUNK)
        old = os.urandom(8 * CHUNK)
        bucket = f"owed-{operation}"
        if operation == "delete":
            assert client.put(bucket, "obj", old, chunk_size=CHUNK, rf=RF).is_ok
            assert client.delete(bucket_id=bucket, ball_id="obj").is_ok
            assert all(app.budget == [0] for app in wrapped), "the fault was not applied"
            _wait_for(lambda: assert_replicas_agree(cluster, bucket, "obj", None))
            return
        assert client.put(bucket, "obj", data, chunk_size=CHUNK, rf=RF).is_ok
        assert all(app.budget == [0] for app in wrapped), "the fault was not applied"
        _wait_for(lambda: assert_replicas_agree(cluster, bucket, "obj", data))


class _SlowCommit:
    """A peer app whose P24 commits wait ``seconds`` first (``seconds`` is a one-item list)."""

    def __init__(self, app: Any, seconds: list[float]) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/commit"):
            await asyncio.sleep(self.seconds[0])
        await self.app(scope, receive, send)


def test_a_peer_that_returns_during_the_commit_fan_out_is_owed_it(tmp_path: Path) -> None:
    """R26 sends P24 to the peers available when it starts; one that comes back (and has its
    pending records replayed) while the others are still answering was neither sent the
    commit nor, by the registry's state at the end, unavailable. It holds staged chunks of
    the version all the same: it must get a pending record (found by the SIGKILL crash test,
    where a restarted peer kept an acknowledged object's chunks staged for good)."""
    delay = [0.0]
    cluster = Cluster(peers=3, routers=1, health_interval=0.2)
    cluster.peer_wrap = lambda app: _SlowCommit(app, delay)
    with cluster:
        router, returning = cluster.routers[0].url, cluster.peers[1]
        version = HybridClock("returning").next()
        vput(returning.url, "owed", "obj_1", b"staged bytes", version, staged=True, ball_id="obj")
        cluster.stop_peer(returning.server_id)
        _wait_for(lambda: assert_available(router, 2))
        delay[0] = 1.6  # (under the 2 s P24 deadline) the available peers answer after the stopped one is back
        answer: list[requests.Response] = []
        committing = threading.Thread(target=lambda: answer.append(requests.post(
            f"{router}/api/v4/buckets/owed/obj/commit", headers={VERSION_HEADER: version}, timeout=30)))
        committing.start()
        time.sleep(0.1)
        cluster.start_peer(returning.server_id)
        _wait_for(lambda: assert_available(router, 3))
        assert committing.is_alive(), "the peer came back too late: the commit was answered already"
        committing.join(30)
        assert answer and answer[0].status_code == 200, answer
        delay[0] = 0.0
        assert returning.server_id in answer[0].json()["pending_peers"]
        _wait_for(lambda: assert_current(returning.url, "owed", "obj_1", version), timeout=10)


def assert_available(router: str, count: int) -> None:
    health = requests.get(f"{router}/health", timeout=5)
    assert health.json()["available_peers"] == count, health.text


def assert_current(url: str, bucket: str, key: str, version: str) -> None:
    meta = requests.get(f"{url}/api/v4/buckets/{bucket}/metadata/{key}", timeout=5)
    assert meta.status_code == 200 and meta.json()["version"] == version, meta.text
