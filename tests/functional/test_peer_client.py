"""``Peer`` against a real peer server: writes and reads (P1–P5, P20, P23), ``get_to_file``.

Each test checks the success shape and the error rows (§P2.6) the endpoint can produce.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Iterator

import pytest

from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PutChunksError,
    ValidationError,
)
from mictlanx_sync.protocol.models import GetMetadataResponse, PeerPutChunkedResponse, PeerPutMetadataResponse
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.result import Ok
from tests.support.servers import ServerProcess, start_peer

PEER_ID = "mictlanx-peer-0"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_peer(tmp_path_factory.mktemp("peer"), PEER_ID)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A peer with tiny limits, for 413 and 507."""
    srv = start_peer(tmp_path_factory.mktemp("small"), "mictlanx-peer-small", "--max-ball-size", "1000",
                     "--capacity", "2000")
    yield srv
    srv.stop()


@pytest.fixture
def peer(server: ServerProcess) -> Iterator[Peer]:
    with Peer(PEER_ID, "127.0.0.1", server.port) as p:
        yield p


def put(peer: Peer, bucket: str, key: str, data: bytes, **kwargs: object) -> PeerPutChunkedResponse:
    meta = peer.put_metadata(key, len(data), sha(data), "tester", "application/octet-stream", key, bucket,
                             **kwargs).unwrap()  # type: ignore[arg-type]
    return peer.put_chunked(meta.task_id, data).unwrap()


# --- P1 -------------------------------------------------------------------------------
def test_p1_put_metadata_success_shape(peer: Peer) -> None:
    headers = {"X-Trace": "1"}
    r = peer.put_metadata("p1-new", 3, sha(b"abc"), "me", "text/plain", "p1-new", "b-p1", tags={"a": "b"},
                          headers=headers)
    value = r.unwrap()
    assert isinstance(value, PeerPutMetadataResponse)
    assert (value.key, value.node_id, value.exists) == ("p1-new", PEER_ID, False)
    assert isinstance(value.service_time, int) and len(value.task_id) == 21
    assert headers == {"X-Trace": "1"}  # never mutated
    assert peer.cancel_task(value.task_id).unwrap() is True


def test_p1_existing_key_rules(peer: Peer) -> None:
    put(peer, "b-p1", "p1-exists", b"hello")
    same = peer.put_metadata("p1-exists", 5, sha(b"hello").upper(), "me", "a/b", "p1-exists", "b-p1").unwrap()
    assert same.exists is True
    # an exists:true task still accepts (and discards) a verified phase 2
    assert peer.put_chunked(same.task_id, b"hello").unwrap().size == 5
    other = peer.put_metadata("p1-exists", 5, sha(b"world"), "me", "a/b", "p1-exists", "b-p1")
    err = other.unwrap_err()
    assert isinstance(err, AlreadyExistsError) and (err.status_code, err.code) == (409, 405)
    assert err.bucket_id == "b-p1" and err.key == "p1-exists"
    # Update: 1 with the same content changes metadata at once
    upd = peer.put_metadata("p1-exists", 5, sha(b"hello"), "me", "text/x", "p1-exists", "b-p1", tags={"t": "1"},
                            update=True).unwrap()
    assert upd.exists is True
    assert peer.get_metadata("b-p1", "p1-exists").unwrap().metadata.tags == {"t": "1"}
    # Update: 1 with other content: a new task, replaced at commit
    new = peer.put_metadata("p1-exists", 5, sha(b"world"), "me", "a/b", "p1-exists", "b-p1", update=True).unwrap()
    assert new.exists is False
    assert peer.get_metadata("b-p1", "p1-exists").unwrap().metadata.checksum == sha(b"hello")
    peer.put_chunked(new.task_id, b"world").unwrap()
    assert peer.get_metadata("b-p1", "p1-exists").unwrap().metadata.checksum == sha(b"world")


def test_p1_task_id_header_and_duplicate(peer: Peer) -> None:
    r = peer.put_metadata("p1-tid", 1, sha(b"x"), "me", "a/b", "p1-tid", "b-p1", task_id="my-task-1").unwrap()
    assert r.task_id == "my-task-1"
    dup = peer.put_metadata("p1-tid2", 1, sha(b"x"), "me", "a/b", "p1-tid2", "b-p1", task_id="my-task-1")
    assert isinstance(dup.unwrap_err(), AlreadyExistsError) and dup.unwrap_err().status_code == 409
    assert peer.cancel_task("my-task-1").unwrap() is True


def test_p1_is_disable_creates_a_disabled_ball(peer: Peer) -> None:
    meta = peer.put_metadata("p1-dis", 1, sha(b"x"), "me", "a/b", "p1-dis", "b-p1", is_disable=True).unwrap()
    peer.put_chunked(meta.task_id, b"x").unwrap()
    assert peer.get_metadata("b-p1", "p1-dis").unwrap().metadata.is_disabled is True
    assert isinstance(peer.get_streaming("b-p1", "p1-dis").unwrap_err(), NotFoundError)


def test_p1_server_side_400_and_422(peer: Peer) -> None:
    bad_header = peer.put_metadata("p1-e", 1, sha(b"x"), "me", "a/b", "p1-e", "b-p1", headers={"Update": "maybe"})
    err = bad_header.unwrap_err()
    assert isinstance(err, ValidationError) and (err.status_code, err.code) == (400, 400)
    bad_checksum = peer.put_metadata("p1-e", 1, "abc", "me", "a/b", "p1-e", "b-p1").unwrap_err()
    assert isinstance(bad_checksum, ValidationError) and (bad_checksum.status_code, bad_checksum.code) == (422, 400)
    assert bad_checksum.detail is not None and "errors" in bad_checksum.detail
    bad_tags = peer.put_metadata("p1-e", 1, sha(b"x"), "me", "a/b", "p1-e", "b-p1", tags={"n": 1}).unwrap_err()  # type: ignore[dict-item]
    assert (bad_tags.status_code, bad_tags.code) == (422, 400)
    bad_size = peer.put_metadata("p1-e", -1, sha(b"x"), "me", "a/b", "p1-e", "b-p1").unwrap_err()
    assert isinstance(bad_size, ValidationError)


def test_p1_client_side_validation_sends_nothing(server: ServerProcess) -> None:
    with Peer(PEER_ID, "127.0.0.1", 1) as dead:  # nothing listens: an Err(ValidationError) proves no request
        for args in [("a/b", "b"), ("metadata", "b"), ("k", "..b"), ("k", ""), ("-k", "b")]:
            key, bucket = args
            err = dead.put_metadata(key, 1, sha(b"x"), "me", "a/b", key, bucket).unwrap_err()
            assert isinstance(err, ValidationError), args
        err = dead.put_metadata("k", 1, sha(b"x"), "me", "a/b", "k", "b", task_id="metadata").unwrap_err()
        assert isinstance(err, ValidationError)


def test_p1_413_and_507(small_server: ServerProcess) -> None:
    with Peer("mictlanx-peer-small", "127.0.0.1", small_server.port) as small:
        too_big = small.put_metadata("big", 1001, sha(b"x"), "me", "a/b", "big", "b").unwrap_err()
        assert isinstance(too_big, ValidationError) and (too_big.status_code, too_big.code) == (413, 400)
        first = small.put_metadata("r1", 1000, sha(b"x"), "me", "a/b", "r1", "b").unwrap()
        second = small.put_metadata("r2", 1000, sha(b"y"), "me", "a/b", "r2", "b").unwrap()
        full = small.put_metadata("r3", 1000, sha(b"z"), "me", "a/b", "r3", "b").unwrap_err()
        assert isinstance(full, PutChunksError) and (full.status_code, full.code) == (507, 502)
        assert small.flush_tasks().unwrap() is True
        # the reservations are gone with the tasks
        again = small.put_metadata("r3", 1000, sha(b"z"), "me", "a/b", "r3", "b").unwrap()
        for task in (first, second, again):
            small.cancel_task(task.task_id)


# --- P2 ---------------------------------------------------------------------------------
def test_p2_put_data_multipart(peer: Peer) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    meta = peer.put_metadata("p2-ok", len(data), sha(data), "me", "image/png", "p2-ok", "b-p2").unwrap()
    r = peer.put_data(meta.task_id, "p2-ok", data, "image/png").unwrap()
    assert isinstance(r, PeerPutChunkedResponse)
    assert (r.node_id, r.combined_key, r.bucket_id, r.key, r.size) == (PEER_ID, "b-p2@p2-ok", "b-p2", "p2-ok",
                                                                      len(data))
    assert r.throughput >= 0 and r.service_time >= 0
    with peer.get_streaming("b-p2", "p2-ok").unwrap() as resp:
        assert resp.content == data
        assert resp.headers["Content-Type"] == "image/png"  # the P1 content type is authoritative


def test_p2_streams_iterables_and_files(peer: Peer, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 1)
    meta = peer.put_metadata("p2-it", len(data), sha(data), "me", "a/b", "p2-it", "b-p2").unwrap()
    pieces = (data[i:i + 100_000] for i in range(0, len(data), 100_000))
    assert peer.put_data(meta.task_id, "p2-it", pieces, "a/b").unwrap().size == len(data)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    meta = peer.put_metadata("p2-file", len(data), sha(data), "me", "a/b", "p2-file", "b-p2").unwrap()
    with open(path, "rb") as fh:
        assert peer.put_data(meta.task_id, "p2-file", fh, "a/b").unwrap().size == len(data)


def test_p2_errors(peer: Peer) -> None:
    unknown = peer.put_data("unknownTask123", "k", b"x", "a/b").unwrap_err()
    assert isinstance(unknown, NotFoundError) and (unknown.status_code, unknown.code) == (404, 404)
    meta = peer.put_metadata("p2-bad", 3, sha(b"abc"), "me", "a/b", "p2-bad", "b-p2").unwrap()
    bad = peer.put_data(meta.task_id, "p2-bad", b"abd", "a/b").unwrap_err()
    assert isinstance(bad, IntegrityError) and (bad.status_code, bad.code) == (400, 501)
    assert isinstance(peer.get_metadata("b-p2", "p2-bad").unwrap_err(), NotFoundError)  # nothing stored
    meta = peer.put_metadata("p2-part", 3, sha(b"abc"), "me", "a/b", "p2-part", "b-p2").unwrap()
    missing_part = peer.put_data(meta.task_id, "p2-part", b"abc", "a/b", file_id="other").unwrap_err()
    assert isinstance(missing_part, ValidationError) and (missing_part.status_code, missing_part.code) == (422, 400)
    assert isinstance(peer.put_data("bad/task", "k", b"", "a/b").unwrap_err(), ValidationError)


def test_p2_p3_commit_check_conflict(peer: Peer) -> None:
    a = peer.put_metadata("p2-race", 1, sha(b"a"), "me", "a/b", "p2-race", "b-p2").unwrap()
    b = peer.put_metadata("p2-race", 1, sha(b"b"), "me", "a/b", "p2-race", "b-p2").unwrap()
    peer.put_data(a.task_id, "p2-race", b"a", "a/b").unwrap()
    lost = peer.put_chunked(b.task_id, b"b").unwrap_err()
    assert isinstance(lost, AlreadyExistsError) and (lost.status_code, lost.code) == (409, 405)
    assert peer.get_metadata("b-p2", "p2-race").unwrap().metadata.checksum == sha(b"a")


# --- P3 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "iterable", "file", "empty"])
def test_p3_put_chunked_bodies(peer: Peer, kind: str, tmp_path: Path) -> None:
    data = b"" if kind == "empty" else os.urandom(1024 * 1024 + 13)
    key = f"p3-{kind}"
    meta = peer.put_metadata(key, len(data), sha(data), "me", "a/b", key, "b-p3").unwrap()
    body: object
    if kind == "bytearray":
        body = bytearray(data)
    elif kind == "memoryview":
        body = memoryview(data)
    elif kind == "iterable":
        body = iter([data[:10], data[10:]])
    elif kind == "file":
        body = io.BytesIO(data)
    else:
        body = data
    r = peer.put_chuncked(meta.task_id, body).unwrap()  # type: ignore[arg-type]
    assert (r.key, r.bucket_id, r.size, r.combined_key) == (key, "b-p3", len(data), f"b-p3@{key}")
    with peer.get_streaming("b-p3", key).unwrap() as resp:
        assert resp.content == data


def test_p3_errors(peer: Peer) -> None:
    assert isinstance(peer.put_chunked("nope0000", b"x").unwrap_err(), NotFoundError)
    meta = peer.put_metadata("p3-bad", 4, sha(b"abcd"), "me", "a/b", "p3-bad", "b-p3").unwrap()
    short = peer.put_chunked(meta.task_id, b"abc").unwrap_err()
    assert isinstance(short, IntegrityError) and (short.status_code, short.code) == (400, 501)
    # a claimed task is gone after its phase-2 request, whatever the outcome
    assert isinstance(peer.put_chunked(meta.task_id, b"abcd").unwrap_err(), NotFoundError)
    meta = peer.put_metadata("p3-long", 2, sha(b"ab"), "me", "a/b", "p3-long", "b-p3").unwrap()
    long = peer.put_chunked(meta.task_id, iter([b"ab", b"cdef" * 1000])).unwrap_err()
    assert isinstance(long, IntegrityError)


# --- P4, P5 -----------------------------------------------------------------------------
def test_p4_get_metadata(peer: Peer) -> None:
    put(peer, "b-p4", "p4-k", b"data", tags={"x": "y"})
    r = peer.get_metadata("b-p4", "p4-k").unwrap()
    assert isinstance(r, GetMetadataResponse)
    assert (r.peer_id, r.local_peer_id) == (PEER_ID, PEER_ID) and isinstance(r.service_time, int)
    m = r.metadata
    assert (m.key, m.size, m.checksum, m.tags, m.ball_id, m.bucket_id, m.is_disabled, m.producer_id) == (
        "p4-k", 4, sha(b"data"), {"x": "y"}, "p4-k", "b-p4", False, "tester")
    missing = peer.get_metadata("b-p4", "missing").unwrap_err()
    assert isinstance(missing, NotFoundError) and (missing.bucket_id, missing.key) == ("b-p4", "missing")
    # a pending (uncommitted) ball is not found
    pending = peer.put_metadata("p4-pending", 1, sha(b"x"), "me", "a/b", "p4-pending", "b-p4").unwrap()
    assert isinstance(peer.get_metadata("b-p4", "p4-pending").unwrap_err(), NotFoundError)
    peer.cancel_task(pending.task_id)
    assert isinstance(peer.get_metadata("b-p4", "bad key").unwrap_err(), ValidationError)


def test_p5_get_streaming(peer: Peer) -> None:
    data = os.urandom(100_000)
    put(peer, "b-p5", "p5-k", data)
    with peer.get_streaming("b-p5", "p5-k").unwrap() as resp:
        assert resp.status_code == 200
        assert resp.headers["ETag"] == f'"{sha(data)}"'
        assert resp.headers["Content-Length"] == str(len(data))
        assert resp.headers["Accept-Ranges"] == "bytes" and resp.headers["Peer-Id"] == PEER_ID
        assert b"".join(resp.iter_content(8192)) == data


def test_p5_ranges(peer: Peer) -> None:
    data = bytes(range(256)) * 4
    put(peer, "b-p5", "p5-range", data)
    with peer.get_streaming("b-p5", "p5-range", headers={"Range": "bytes=10-19"}).unwrap() as resp:
        assert resp.status_code == 206 and resp.content == data[10:20]
        assert resp.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert resp.headers["ETag"] == f'"{sha(data)}"'
    with peer.get_streaming("b-p5", "p5-range", headers={"Range": "bytes=-5"}).unwrap() as resp:
        assert resp.content == data[-5:]
    with peer.get_streaming("b-p5", "p5-range", headers={"Range": "bytes=5-1,7-9"}).unwrap() as resp:
        assert resp.status_code == 200 and resp.content == data  # invalid ranges are ignored
    unsatisfiable = peer.get_streaming("b-p5", "p5-range", headers={"Range": f"bytes={len(data)}-"}).unwrap_err()
    assert isinstance(unsatisfiable, ValidationError) and (unsatisfiable.status_code, unsatisfiable.code) == (416, 400)


def test_p5_not_found_and_disabled(peer: Peer) -> None:
    assert isinstance(peer.get_streaming("b-p5", "nothing").unwrap_err(), NotFoundError)
    put(peer, "b-p5", "p5-dis", b"x")
    peer.disable("b-p5", "p5-dis").unwrap()
    assert isinstance(peer.get_streaming("b-p5", "p5-dis").unwrap_err(), NotFoundError)


def test_get_to_file(peer: Peer, tmp_path: Path) -> None:
    data = os.urandom(2_500_000)
    put(peer, "b-gf", "gf-k", data)
    sink = tmp_path / "new" / "dir"
    path = peer.get_to_file("b-gf", "gf-k", sink_folder_path=str(sink)).unwrap()
    assert path == os.path.join(str(sink), hashlib.sha256(b"b-gf@gf-k").hexdigest())
    assert Path(path).read_bytes() == data
    named = peer.get_to_file("b-gf", "gf-k", chunk_size="64KiB", sink_folder_path=str(sink), filename="x.bin")
    assert named == Ok(os.path.join(str(sink), "x.bin"))
    assert sorted(os.listdir(sink)) == sorted([os.path.basename(path), "x.bin"])  # no temporary files left


def test_get_to_file_errors_leave_no_files(peer: Peer, tmp_path: Path) -> None:
    err = peer.get_to_file("b-gf", "missing", sink_folder_path=str(tmp_path)).unwrap_err()
    assert isinstance(err, NotFoundError)
    assert os.listdir(tmp_path) == []
    assert isinstance(peer.get_to_file("b-gf", "gf-k", chunk_size="nonsense", sink_folder_path=str(tmp_path))
                      .unwrap_err(), ValidationError)


# --- P20, P23 ---------------------------------------------------------------------------
def test_p20_flush_tasks_and_p23_cancel(peer: Peer) -> None:
    t1 = peer.put_metadata("p20-a", 1, sha(b"a"), "me", "a/b", "p20-a", "b-p20").unwrap()
    t2 = peer.put_metadata("p20-b", 1, sha(b"b"), "me", "a/b", "p20-b", "b-p20").unwrap()
    assert peer.cancel_task(t1.task_id) == Ok(True)
    gone = peer.cancel_task(t1.task_id).unwrap_err()
    assert isinstance(gone, NotFoundError) and (gone.status_code, gone.code) == (404, 404)
    assert peer.flush_tasks() == Ok(True)
    assert isinstance(peer.put_chunked(t2.task_id, b"b").unwrap_err(), NotFoundError)
    assert isinstance(peer.cancel_task("metadata").unwrap_err(), ValidationError)
