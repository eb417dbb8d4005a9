"""``Peer`` against real peer servers: deletes, disable, size, replication, nodes, health
(P8–P12, P19, P21) and the object protocol (equality, ``str``, ``to_dict``, ``empty``)."""

from __future__ import annotations

import hashlib
from typing import Iterator

import pytest

from mictlanx_sync.protocol.errors import (
    MaxAvailabilityReachedError,
    NotFoundError,
    PeerOperationError,
    PreconditionFailedError,
    ValidationError,
)
from mictlanx_sync.protocol.models import (
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetSizeByKey,
    PeerHealthResponse,
    ReplicateResponse,
    StoragePeerResponse,
)
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.result import Ok
from tests.support.servers import ServerProcess, start_peer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    started = []
    try:
        for i in range(2):
            started.append(start_peer(tmp_path_factory.mktemp(f"peer{i}"), f"mictlanx-peer-{i}"))
        yield started
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def peer(servers: list[ServerProcess]) -> Iterator[Peer]:
    with Peer("mictlanx-peer-0", "127.0.0.1", servers[0].port) as p:
        yield p


@pytest.fixture
def peer1(servers: list[ServerProcess]) -> Iterator[Peer]:
    with Peer("mictlanx-peer-1", "127.0.0.1", servers[1].port) as p:
        yield p


def put(peer: Peer, bucket: str, key: str, data: bytes, ball_id: str = "") -> str:
    meta = peer.put_metadata(key, len(data), sha(data), "me", "a/b", ball_id or key, bucket).unwrap()
    peer.put_chunked(meta.task_id, data).unwrap()
    return meta.task_id


# --- P8 ---------------------------------------------------------------------------------
def test_p8_delete(peer: Peer) -> None:
    put(peer, "b-p8", "k1", b"one")
    r = peer.delete("b-p8", "k1", headers={"Force": "1"}).unwrap()
    assert r == DeletedByKeyResponse(1, "k1")
    missing = peer.delete("b-p8", "k1").unwrap_err()
    assert isinstance(missing, NotFoundError) and (missing.status_code, missing.code) == (404, 404)
    assert (missing.bucket_id, missing.key) == ("b-p8", "k1")


def test_p8_preconditions(peer: Peer) -> None:
    task = put(peer, "b-p8", "k2", b"two")
    wrong = peer.delete("b-p8", "k2", if_match=sha(b"other")).unwrap_err()
    assert isinstance(wrong, PreconditionFailedError) and (wrong.status_code, wrong.code) == (412, 405)
    wrong_task = peer.delete("b-p8", "k2", task_id="someOtherTask").unwrap_err()
    assert isinstance(wrong_task, PreconditionFailedError)
    assert peer.get_size("b-p8", "k2").is_ok  # nothing deleted
    assert peer.delete("b-p8", "k2", if_match=f'"{sha(b"two")}"', task_id=task).unwrap().n_deletes == 1
    put(peer, "b-p8", "k3", b"three")
    assert peer.delete("b-p8", "k3", if_match=sha(b"three")).unwrap().n_deletes == 1
    bad = peer.delete("b-p8", "k3", if_match="not-a-checksum").unwrap_err()
    assert isinstance(bad, ValidationError) and (bad.status_code, bad.code) == (400, 400)
    assert isinstance(peer.delete("b-p8", "k3", task_id="bad task").unwrap_err(), ValidationError)


# --- P9 ---------------------------------------------------------------------------------
def test_p9_delete_by_ball_id(peer: Peer) -> None:
    for i in range(3):
        put(peer, "b-p9", f"g_{i}", bytes([i]) * 3, ball_id="g")
    peer.disable("b-p9", "g_2").unwrap()
    r = peer.delete_by_ball_id("g", "b-p9").unwrap()
    assert isinstance(r, DeletedByBallIdResponse) and (r.n_deletes, r.ball_id) == (3, "g")  # disabled included
    assert peer.delete_by_ball_id("g", "b-p9") == Ok(DeletedByBallIdResponse(0, "g"))
    assert isinstance(peer.delete_by_ball_id("g", "").unwrap_err(), ValidationError)


# --- P10, P11 ---------------------------------------------------------------------------
def test_p10_disable(peer: Peer) -> None:
    put(peer, "b-p10", "k", b"x")
    assert peer.disable("b-p10", "k") == Ok(True)
    assert peer.disable("b-p10", "k", timeout=10) == Ok(True)  # already disabled
    assert peer.get_metadata("b-p10", "k").unwrap().metadata.is_disabled is True
    missing = peer.disable("b-p10", "nothing").unwrap_err()
    assert isinstance(missing, NotFoundError) and missing.status_code == 404


def test_p11_size(peer: Peer) -> None:
    put(peer, "b-p11", "k", b"12345")
    assert peer.get_size("b-p11", "k") == Ok(GetSizeByKey("b-p11", "k", "mictlanx-peer-0", 5))
    peer.disable("b-p11", "k").unwrap()
    assert peer.get_size("b-p11", "k").unwrap().size == 5  # disabled balls keep their size
    assert isinstance(peer.get_size("b-p11", "nothing").unwrap_err(), NotFoundError)


# --- P12, P19 ---------------------------------------------------------------------------
def test_p12_no_node_registered(peer1: Peer) -> None:
    put(peer1, "b-p12", "lonely", b"x")
    err = peer1.replicate("b-p12", "lonely").unwrap_err()
    assert isinstance(err, MaxAvailabilityReachedError) and (err.status_code, err.code) == (404, 666)


def test_p19_and_p12_replicate(peer: Peer, peer1: Peer) -> None:
    node = peer.add_peer("mictlanx-peer-1", 10**9, 10**9, "127.0.0.1", peer1.port, 1.0).unwrap()
    assert node == StoragePeerResponse("mictlanx-peer-1", 10**9, 10**9, "127.0.0.1", peer1.port, 1.0, 0, 0)
    again = peer.add_peer_with_retry("mictlanx-peer-1", 10**9, 10**9, "127.0.0.1", peer1.port, 2.0, tries=2, delay=0,
                                     protocol="http").unwrap()
    assert again.weight == 2.0  # re-registering replaces
    assert "mictlanx-peer-1" in peer.get_stats().unwrap().peers
    assert any(n.node_id == "mictlanx-peer-1" for n in peer.get_state().unwrap().nodes)

    put(peer, "b-p12", "k", b"replicate me")
    r = peer.replicate("b-p12", "k").unwrap()
    assert isinstance(r, ReplicateResponse)
    assert (r.peer_id, r.replica_peer_id, r.bucket_id, r.key, r.size, r.ok) == (
        "mictlanx-peer-0", "mictlanx-peer-1", "b-p12", "k", 12, True)
    with peer1.get_streaming("b-p12", "k").unwrap() as resp:
        assert resp.content == b"replicate me"
    assert peer.replicate("b-p12", "k", to="mictlanx-peer-1").unwrap().ok is True

    missing_key = peer.replicate("b-p12", "nothing").unwrap_err()
    assert isinstance(missing_key, NotFoundError) and missing_key.code == 404
    unknown_to = peer.replicate("b-p12", "k", to="nobody").unwrap_err()
    assert isinstance(unknown_to, NotFoundError) and unknown_to.code == 404

    peer.add_peer("dead-node", 1, 1, "127.0.0.1", 9, 1.0).unwrap()
    failed = peer.replicate("b-p12", "k", to="dead-node").unwrap_err()
    assert isinstance(failed, PeerOperationError) and (failed.status_code, failed.code) == (502, 504)


def test_p19_errors(peer: Peer) -> None:
    bad = peer.add_peer("n", 1, 1, "127.0.0.1", "not-a-port", 1.0).unwrap_err()  # type: ignore[arg-type]
    assert isinstance(bad, ValidationError) and (bad.status_code, bad.code) == (422, 400)
    assert isinstance(peer.add_peer("bad id", 1, 1, "h", 1, 1.0).unwrap_err(), ValidationError)
    bad_protocol = peer.add_peer("n", 1, 1, "127.0.0.1", 1, 1.0, protocol="ftp").unwrap_err()
    assert isinstance(bad_protocol, ValidationError)


# --- P21 --------------------------------------------------------------------------------
def test_p21_health(peer: Peer) -> None:
    assert peer.health() == Ok(PeerHealthResponse("ok", "mictlanx-peer-0"))
    assert isinstance(peer.health().unwrap(), PeerHealthResponse)


def test_path_prefix_root_path(tmp_path) -> None:
    srv = start_peer(tmp_path, "mictlanx-peer-pfx", "--root-path", "/mx")
    try:
        with Peer("mictlanx-peer-pfx", "127.0.0.1", srv.port, path_prefix="/mx/") as p:
            assert p.base_url() == f"http://127.0.0.1:{srv.port}/mx"
            assert p.health().unwrap().peer_id == "mictlanx-peer-pfx"
            put(p, "b", "k", b"x")
            assert p.get_size("b", "k").unwrap().size == 1
    finally:
        srv.stop()


# --- object protocol --------------------------------------------------------------------
def test_object_protocol() -> None:
    a = Peer("p0", "10.0.0.1", 25000)
    b = Peer("other-id", "10.0.0.1", 25000, timeout=(1, 2))
    c = Peer("p0", "10.0.0.1", 25000, protocol="https")
    d = Peer("p0", "10.0.0.1", 25000, path_prefix="x")
    assert a == b and hash(a) == hash(b) and a != c and a != d and len({a, b, c, d}) == 3
    assert a.base_url() == "http://10.0.0.1:25000" and a.get_addr() == "10.0.0.1:25000"
    assert c.base_url() == "https://10.0.0.1:25000" and d.base_url() == "http://10.0.0.1:25000/x"
    assert Peer("p", "::1", 80).base_url() == "http://[::1]"
    assert str(a) == "Peer(id=p0, ip_addr=10.0.0.1, port=25000)"
    assert a.to_dict() == {"peer_id": "p0", "ip_addr": "10.0.0.1", "port": 25000, "protocol": "http",
                           "api_version": 4, "path_prefix": ""}
    e = Peer.empty()
    assert (e.peer_id, e.ip_addr, e.port) == ("", "", -1)
    assert b.timeout == (1.0, 2.0) and a.timeout == (5.0, 120.0)
    with pytest.raises(TypeError):
        Peer("p", "h", "80")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Peer("p", "h", 80, protocol="ftp")
    for p in (a, b, c, d, e):
        p.close()
