"""``Peer`` against a real peer server: listings, stats and inventory (P6, P7, P13–P18, P22)."""

from __future__ import annotations

import hashlib
from typing import Iterator

import pytest

from mictlanx_sync.protocol.errors import NotFoundError, ValidationError
from mictlanx_sync.protocol.models import (
    BallBasicData,
    GetBucketMetadataResponse,
    GetUFSResponse,
    GroupedBallResponse,
    Metadata,
    PeerCurrentState,
    PeerStatsResponse,
)
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.result import Ok
from tests.support.servers import ServerProcess, start_peer

PEER_ID = "mictlanx-peer-0"
KEYS = ["obj_0", "obj_1", "obj_2", "other"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A fresh peer holding bucket ``lb``: three chunks of ball ``obj``, one ``other``, one disabled."""
    srv: ServerProcess = start_peer(tmp_path_factory.mktemp("peer"), PEER_ID)
    try:
        with Peer(PEER_ID, "127.0.0.1", srv.port) as p:
            for i, key in enumerate(KEYS):
                data = key.encode() * (i + 1)
                ball = "obj" if key.startswith("obj") else key
                meta = p.put_metadata(key, len(data), sha(data), "me", "a/b", ball, "lb",
                                      tags={"index": str(i)}).unwrap()
                p.put_chunked(meta.task_id, data).unwrap()
            meta = p.put_metadata("zz-dis", 1, sha(b"z"), "me", "a/b", "obj", "lb", is_disable=True).unwrap()
            p.put_chunked(meta.task_id, b"z").unwrap()
            meta = p.put_metadata("k", 1, sha(b"q"), "me", "a/b", "k", "other-bucket").unwrap()
            p.put_chunked(meta.task_id, b"q").unwrap()
            yield p
    finally:
        srv.stop()


def keys(balls: list) -> list[str]:
    return [b.key for b in balls]


# --- P6 -------------------------------------------------------------------------------
def test_p6_bucket_metadata(peer: Peer) -> None:
    r = peer.get_bucket_metadata("lb").unwrap()
    assert isinstance(r, GetBucketMetadataResponse) and r.peer_id == PEER_ID
    assert keys(r.balls) == KEYS  # ordered by key, disabled excluded
    assert all(isinstance(b, Metadata) for b in r.balls)
    with_disabled = peer.get_bucket_metadata("lb", include_disabled=True).unwrap()
    assert keys(with_disabled.balls) == [*KEYS, "zz-dis"]
    assert peer.get_bucket_metadata("unknown-bucket").unwrap().balls == []


def test_p6_paging(peer: Peer) -> None:
    assert keys(peer.get_bucket_metadata("lb", start=1, end=3).unwrap().balls) == KEYS[1:3]
    assert keys(peer.get_bucket_metadata("lb", start=2).unwrap().balls) == KEYS[2:]
    assert keys(peer.get_bucket_metadata("lb", after="obj_1").unwrap().balls) == KEYS[2:]
    assert keys(peer.get_bucket_metadata("lb", after="obj_0", start=1, end=2).unwrap().balls) == ["obj_2"]
    assert keys(peer.get_bucket_metadata("lb", after="nonexistent-a").unwrap().balls) == KEYS[:3] + ["other"]
    assert peer.get_bucket_metadata("lb", start=3, end=2).unwrap().balls == []


def test_p6_errors(peer: Peer) -> None:
    negative = peer.get_bucket_metadata("lb", start=-1).unwrap_err()
    assert isinstance(negative, ValidationError) and (negative.status_code, negative.code) == (400, 400)
    assert isinstance(peer.get_bucket_metadata("lb", after="a/b").unwrap_err(), ValidationError)
    assert isinstance(peer.get_bucket_metadata("a b").unwrap_err(), ValidationError)


# --- P7, P22 ----------------------------------------------------------------------------
def test_p7_group(peer: Peer) -> None:
    r = peer.get_chunks_metadata("obj", "lb").unwrap()
    assert isinstance(r, GroupedBallResponse)
    assert (r.bucket_id, r.ball_id) == ("lb", "obj")
    assert keys(r.balls) == KEYS[:3] and r.size == sum(b.size for b in r.balls)
    assert peer.get_by_ball_id("lb", "obj") == Ok(r)
    missing = peer.get_by_ball_id("lb", "nothing").unwrap_err()
    assert isinstance(missing, NotFoundError) and (missing.status_code, missing.code) == (404, 404)
    assert isinstance(peer.get_chunks_metadata("obj").unwrap_err(), ValidationError)  # bucket_id="" is invalid


def test_p22_legacy_chunks(peer: Peer) -> None:
    r = peer.get_ball_chunks("lb", "obj").unwrap()
    assert keys(r) == KEYS[:3] and all(isinstance(m, Metadata) for m in r)
    assert peer.get_ball_chunks("lb", "nothing") == Ok([])


# --- P13, P14 ---------------------------------------------------------------------------
def test_p13_stats(peer: Peer) -> None:
    r = peer.get_stats().unwrap()
    assert isinstance(r, PeerStatsResponse) and r.peer_id == PEER_ID
    assert r.available_disk == max(0, r.total_disk - r.used_disk)
    assert r.used_disk == sum(len(k.encode()) * (i + 1) for i, k in enumerate(KEYS)) + 1 + 1
    assert len(r.balls) == 5  # four in lb and one in other-bucket; the disabled one excluded
    assert peer.get_stats(start=1, end=3).unwrap().balls == r.balls[1:3]
    assert len(peer.get_stats(include_disabled=True).unwrap().balls) == 6
    err = peer.get_stats(start=-1).unwrap_err()
    assert isinstance(err, ValidationError)


def test_p14_ufs(peer: Peer) -> None:
    r = peer.get_ufs().unwrap()
    assert isinstance(r, GetUFSResponse) and r.total_disk > 0 and r.used_disk > 0
    assert r.disk_uf == pytest.approx(r.used_disk / r.total_disk)
    assert peer.get_ufs_with_retry(tries=2, delay=0).unwrap() == r


def test_p14_with_retry_returns_the_last_error() -> None:
    with Peer("x", "127.0.0.1", 9, timeout=(0.5, 1)) as dead:
        calls = []

        class Log:
            def warning(self, *args: object) -> None:
                calls.append(args)

        err = dead.get_ufs_with_retry(tries=3, delay=0, max_delay=0, logger=Log()).unwrap_err()  # type: ignore[arg-type]
        assert err.code == 1001 and len(calls) == 2


# --- P15–P18 ----------------------------------------------------------------------------
def test_p15_balls(peer: Peer) -> None:
    r = peer.get_balls().unwrap()
    assert all(isinstance(b, BallBasicData) for b in r)
    assert [(b.bucket_id, b.key) for b in r] == [("lb", k) for k in KEYS] + [("other-bucket", "k")]
    assert [b.key for b in peer.get_balls(1, 3).unwrap()] == KEYS[1:3]
    assert [b.key for b in peer.get_balls(after="lb@other").unwrap()] == ["k"]
    assert len(peer.get_balls(include_disabled=True).unwrap()) == 6
    assert isinstance(peer.get_balls(after="no-at-sign").unwrap_err(), ValidationError)
    assert isinstance(peer.get_balls(start=-2).unwrap_err(), ValidationError)


def test_p16_ball_sizes(peer: Peer) -> None:
    r = peer.get_all_ball_sizes().unwrap()
    assert r == peer.get_balls().unwrap()
    assert peer.get_all_ball_sizes(start=4).unwrap() == [BallBasicData("other-bucket", "k", 1)]
    assert [b.key for b in peer.get_all_ball_sizes(after="lb@obj_2").unwrap()] == ["other", "k"]


def test_p17_balls_len(peer: Peer) -> None:
    assert peer.get_balls_len() == Ok(5)
    assert peer.get_balls_len(include_disabled=True) == Ok(6)


def test_p18_state(peer: Peer) -> None:
    r = peer.get_state().unwrap()
    assert isinstance(r, PeerCurrentState)
    assert r.nodes[0].node_id == PEER_ID and r.nodes[0].port == peer.port
    assert set(r.balls) == {f"lb@{k}" for k in KEYS} | {"other-bucket@k"}
    assert r.balls["lb@obj_0"].locations == [PEER_ID] and r.balls["lb@obj_0"].size == 5
    assert len(peer.get_state(start=0, end=2).unwrap().balls) == 2
