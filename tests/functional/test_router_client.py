"""``Router`` against a real ``LocalVSS(peers=2)``: R1–R24, success shapes and error rows.

Also the upstream quirks of client-api §3 against a tiny upstream-like HTTP server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional

import pytest

from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    IntegrityError,
    MaxAvailabilityReachedError,
    NotFoundError,
    PreconditionFailedError,
    PutChunksError,
    ResponseFormatError,
    ValidationError,
)
from mictlanx_sync.protocol.mictlanx_uri import MictlanXURI
from mictlanx_sync.protocol.models import (
    BallMetadata,
    CacheKeysResponse,
    CacheStatsResponse,
    DeletedByBallIdResponse,
    GetMetadataResponse,
    GetRouterBucketMetadataResponse,
    GetSizeByKey,
    PeerInfo,
    PeersResponse,
    PeerStatsResponse,
    PutMetadataResponse,
    RouterHealthResponse,
    RouterPutChunkedResponse,
)
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.result import Ok
from mictlanx_sync.protocol.router import Router
from mictlanx_sync.server.local import LocalVSS

PEERS = ["mictlanx-peer-0", "mictlanx-peer-1"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def router_vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=2, health_interval=0.2) as vss:
        yield vss


@pytest.fixture
def router(router_vss: LocalVSS) -> Iterator[Router]:
    (r,) = MictlanXURI.parse(router_vss.uri)
    with r:
        yield r


def put(router: Router, bucket: str, key: str, data: bytes, rf: int = 1, ball_id: str = "",
        tags: Optional[dict] = None) -> RouterPutChunkedResponse:
    meta = router.put_metadata(key, len(data), sha(data), "me", "a/b", ball_id or key, bucket, tags=tags,
                               replication_factor=rf).unwrap()
    return router.put_chunked(meta.tasks_ids[0], data, replication_factor=rf).unwrap()


def put_object(router: Router, bucket: str, key: str, chunks: list[bytes], rf: int = 1,
               full: Optional[str] = None) -> None:
    full = full or sha(b"".join(chunks))
    for i, chunk in enumerate(chunks):
        tags = {"index": str(i), "chunk_size": str(len(chunk)), "group_id": key, "num_chunks": str(len(chunks)),
                "full_checksum": full}
        put(router, bucket, f"{key}_{i}", chunk, rf=rf, ball_id=key, tags=tags)


# --- R5, R6, R7 -------------------------------------------------------------------------
def test_r5_put_metadata(router: Router) -> None:
    headers = {"X-A": "1"}
    r = router.put_metadata("r5-k", 3, sha(b"abc"), "me", "a/b", "r5-k", "b-r5", replication_factor=2,
                            headers=headers).unwrap()
    assert isinstance(r, PutMetadataResponse) and headers == {"X-A": "1"}
    assert (r.key, r.bucket_id, len(r.tasks_ids), sorted(r.replicas), r.extra["exists"]) == (
        "r5-k", "b-r5", 1, PEERS, False)
    assert isinstance(r.service_time, float)
    router.put_chunked(r.tasks_ids[0], b"abc").unwrap()
    again = router.put_metadata("r5-k", 3, sha(b"abc"), "me", "a/b", "r5-k", "b-r5", replication_factor=2).unwrap()
    assert again.extra["exists"] is True
    upd = router.put_metadata("r5-k", 3, sha(b"xyz"), "me", "a/b", "r5-k", "b-r5", replication_factor=2,
                              update=True).unwrap()
    assert upd.extra["exists"] is False
    router.put_chunked(upd.tasks_ids[0], b"xyz").unwrap()
    assert router.get_metadata("b-r5", "r5-k").unwrap().metadata.checksum == sha(b"xyz")


def test_r5_errors(router: Router) -> None:
    too_many = router.put_metadata("r5-e", 1, sha(b"x"), "me", "a/b", "r5-e", "b-r5", replication_factor=3)
    err = too_many.unwrap_err()
    assert isinstance(err, MaxAvailabilityReachedError) and (err.status_code, err.code) == (404, 666)
    assert err.router == router.base_url() and (err.bucket_id, err.key) == ("b-r5", "r5-e")
    assert err.detail is not None and err.detail["replication_factor"] == 3
    bad = router.put_metadata("r5-e", 1, "abc", "me", "a/b", "r5-e", "b-r5").unwrap_err()
    assert isinstance(bad, ValidationError) and (bad.status_code, bad.code) == (422, 400)
    bad_header = router.put_metadata("r5-e", 1, sha(b"x"), "me", "a/b", "r5-e", "b-r5",
                                     headers={"Update": "perhaps"}).unwrap_err()
    assert isinstance(bad_header, ValidationError) and bad_header.status_code == 400
    put(router, "b-r5", "r5-conflict", b"one")
    conflict = router.put_metadata("r5-conflict", 3, sha(b"two"), "me", "a/b", "r5-conflict", "b-r5").unwrap_err()
    assert isinstance(conflict, AlreadyExistsError) and (conflict.status_code, conflict.code) == (409, 405)
    assert isinstance(router.put_metadata("metadata", 1, sha(b"x"), "me", "a/b", "", "b").unwrap_err(),
                      ValidationError)


def test_r6_put_data(router: Router) -> None:
    data = os.urandom(1_500_000)
    meta = router.put_metadata("r6-k", len(data), sha(data), "me", "a/b", "r6-k", "b-r6",
                               replication_factor=2).unwrap()
    r = router.put_data(meta.tasks_ids[0], "r6-k", iter([data[:1000], data[1000:]]), "a/b",
                        replication_factor=2).unwrap()
    assert isinstance(r, RouterPutChunkedResponse)
    assert (sorted(r.peer_ids), r.combined_key, r.bucket_id, r.key, r.size) == (PEERS, "b-r6@r6-k", "b-r6",
                                                                                "r6-k", len(data))
    with router.get_streaming("b-r6", "r6-k").unwrap() as resp:
        assert resp.content == data


def test_r6_r7_errors(router: Router) -> None:
    for call in (lambda: router.put_data("unknownGroup1", "k", b"x", "a/b"),
                 lambda: router.put_chunked("unknownGroup1", b"x")):
        err = call().unwrap_err()
        assert isinstance(err, NotFoundError) and (err.status_code, err.code) == (404, 404)
        assert err.router == router.base_url()
    meta = router.put_metadata("r6-bad", 3, sha(b"abc"), "me", "a/b", "r6-bad", "b-r6").unwrap()
    bad = router.put_data(meta.tasks_ids[0], "r6-bad", b"abd", "a/b").unwrap_err()
    assert isinstance(bad, IntegrityError) and (bad.status_code, bad.code) == (400, 501)
    meta = router.put_metadata("r7-bad", 3, sha(b"abc"), "me", "a/b", "r7-bad", "b-r6").unwrap()
    bad = router.put_chunked(meta.tasks_ids[0], b"abcd").unwrap_err()
    assert isinstance(bad, IntegrityError) and (bad.status_code, bad.code) == (400, 501)
    assert isinstance(router.get_metadata("b-r6", "r7-bad").unwrap_err(), NotFoundError)


def test_r7_put_chunked_and_replica_count(router: Router, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    meta = router.put_metadata("r7-k", len(data), sha(data), "me", "a/b", "r7-k", "b-r7",
                               replication_factor=2).unwrap()
    with open(path, "rb") as fh:
        r = router.put_chuncked(meta.tasks_ids[0], fh).unwrap()
    assert (sorted(r.peer_ids), r.size, r.key) == (PEERS, len(data), "r7-k")
    meta = router.put_metadata("r7-one", 1, sha(b"x"), "me", "a/b", "r7-one", "b-r7").unwrap()
    short = router.put_chunked(meta.tasks_ids[0], b"x", replication_factor=2).unwrap_err()
    assert isinstance(short, PutChunksError) and short.router == router.base_url()


# --- R1, R3, R11, R10, R12, R2 ------------------------------------------------------------
def test_r1_sizes(router: Router) -> None:
    put(router, "b-r1", "k", b"12345", rf=2)
    sizes = router.get_size("b-r1", "k").unwrap()
    assert all(isinstance(s, GetSizeByKey) for s in sizes)
    assert sorted(s.peer_id for s in sizes) == PEERS and {s.size for s in sizes} == {5}
    missing = router.get_size("b-r1", "nothing").unwrap_err()
    assert isinstance(missing, NotFoundError) and missing.code == 404


def test_r3_metadata(router: Router) -> None:
    put(router, "b-r3", "k", b"meta", tags={"t": "v"})
    r = router.get_metadata("b-r3", "k").unwrap()
    assert isinstance(r, GetMetadataResponse) and r.peer_id in PEERS and isinstance(r.service_time, int)
    assert (r.metadata.key, r.metadata.size, r.metadata.tags) == ("k", 4, {"t": "v"})
    missing = router.get_metadata("b-r3", "nothing").unwrap_err()
    assert isinstance(missing, NotFoundError) and (missing.status_code, missing.code) == (404, 404)
    assert (missing.bucket_id, missing.key, missing.router) == ("b-r3", "nothing", router.base_url())
    pinned = router.get_metadata("b-r3", "k", headers={"Peer-Id": r.peer_id}).unwrap()
    assert pinned.peer_id == r.peer_id
    other = next(p for p in PEERS if p != r.peer_id)
    assert isinstance(router.get_metadata("b-r3", "k", headers={"Peer-Id": other}).unwrap_err(), NotFoundError)


def test_r11_streaming(router: Router, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    put(router, "b-r11", "k", data, rf=2)
    with router.get_streaming("b-r11", "k").unwrap() as resp:
        assert resp.status_code == 200 and resp.content == data
        assert resp.headers["ETag"] == f'"{sha(data)}"' and resp.headers["Content-Length"] == str(len(data))
        assert resp.headers["Peer-Id"] in PEERS
    with router.get_streaming("b-r11", "k", headers={"Range": "bytes=100-199"}).unwrap() as resp:
        assert resp.status_code == 206 and resp.content == data[100:200]
    bad_range = router.get_streaming("b-r11", "k", headers={"Range": "bytes=999999-"}).unwrap_err()
    assert isinstance(bad_range, ValidationError) and bad_range.status_code == 416
    assert isinstance(router.get_streaming("b-r11", "nothing").unwrap_err(), NotFoundError)
    path = router.get_to_file("b-r11", "k", sink_folder_path=str(tmp_path), filename="out", extension="bin")
    assert path == Ok(str(tmp_path / "out.bin")) and (tmp_path / "out.bin").read_bytes() == data
    default = router.get_to_file("b-r11", "k", sink_folder_path=str(tmp_path), verify=False).unwrap()
    assert os.path.basename(default) == sha(b"b-r11@k")
    assert isinstance(router.get_to_file("b-r11", "nothing", sink_folder_path=str(tmp_path)).unwrap_err(),
                      NotFoundError)
    assert sorted(os.listdir(tmp_path)) == sorted(["out.bin", sha(b"b-r11@k")])


def test_r10_merged_streaming(router: Router) -> None:
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    put_object(router, "b-r10", "obj", chunks, rf=2)
    with router.get_merged_streaming("b-r10", "obj").unwrap() as resp:
        assert resp.content == b"".join(chunks)
        assert resp.headers["ETag"] == f'"{sha(b"".join(chunks))}"'
    assert isinstance(router.get_merged_streaming("b-r10", "nothing").unwrap_err(), NotFoundError)
    put_object(router, "b-r10", "mixed", [b"x", b"y"])
    router.delete("b-r10", "mixed_1").unwrap()
    tags = {"index": "1", "chunk_size": "1", "group_id": "mixed", "num_chunks": "2", "full_checksum": "0" * 64}
    put(router, "b-r10", "mixed_1", b"y", ball_id="mixed", tags=tags)
    mixed = router.get_merged_streaming("b-r10", "mixed").unwrap_err()
    assert isinstance(mixed, IntegrityError) and (mixed.status_code, mixed.code) == (400, 501)


def test_r12_chunks_metadata(router: Router) -> None:
    put_object(router, "b-r12", "obj", [b"1" * 10, b"2" * 10, b"3"], rf=2)
    r = router.get_chunks_metadata("obj", "b-r12").unwrap()
    assert isinstance(r, BallMetadata)
    assert [c.key for c in r.chunks] == ["obj_0", "obj_1", "obj_2"]  # deduplicated, sorted by index
    assert (r.bucket_id, r.ball_id, r.size_bytes, r.size, r.checksum) == (
        "b-r12", "obj", 21, "21 bytes", sha(b"1" * 10 + b"2" * 10 + b"3"))
    router.disable("b-r12", "obj_2").unwrap()
    assert len(router.get_chunks_metadata("obj", "b-r12").unwrap().chunks) == 2
    assert len(router.get_chunks_metadata("obj", "b-r12", include_disabled=True).unwrap().chunks) == 3
    missing = router.get_chunks_metadata("nothing", "b-r12").unwrap_err()
    assert isinstance(missing, NotFoundError) and missing.code == 404
    assert isinstance(router.get_chunks_metadata("obj").unwrap_err(), ValidationError)


def test_r2_bucket_metadata(router: Router) -> None:
    for key in ["a", "b", "c", "d"]:
        put(router, "b-r2", key, key.encode(), rf=2)
    put(router, "b-r2", "empty", b"")
    r = router.get_bucket_metadata("b-r2").unwrap()
    assert isinstance(r, GetRouterBucketMetadataResponse)
    assert [b.key for b in r.balls] == ["a", "b", "c", "d", "empty"]  # once each; size 0 kept
    assert r.peer_ids == PEERS and r.extra == {"failed_peers": []}
    assert [b.key for b in router.get_bucket_metadata("b-r2", start=1, end=3).unwrap().balls] == ["b", "c"]
    assert [b.key for b in router.get_bucket_metadata("b-r2", after="c").unwrap().balls] == ["d", "empty"]
    router.disable("b-r2", "d").unwrap()
    assert "d" not in [b.key for b in router.get_bucket_metadata("b-r2").unwrap().balls]
    assert "d" in [b.key for b in router.get_bucket_metadata("b-r2", include_disabled=True).unwrap().balls]
    assert router.get_bucket_metadata("b-unknown").unwrap().balls == []
    negative = router.get_bucket_metadata("b-r2", start=-1).unwrap_err()
    assert isinstance(negative, ValidationError) and negative.status_code == 400


# --- R4, R9, R13, R14 ---------------------------------------------------------------------
def test_r4_update_metadata(router: Router) -> None:
    put(router, "b-r4", "k", b"data", rf=2)
    assert router.update_metadata("b-r4", "k", {"tags": {"new": "tag"}, "content_type": "text/plain"}) == Ok(True)
    m = router.get_metadata("b-r4", "k").unwrap().metadata
    assert (m.tags, m.content_type) == ({"new": "tag"}, "text/plain")
    assert router.update_metadata("b-r4", "k", m) == Ok(True)  # a Metadata object is accepted
    changed = router.update_metadata("b-r4", "k", {"size": 99}).unwrap_err()
    assert isinstance(changed, ValidationError) and (changed.status_code, changed.code) == (400, 400)
    missing = router.update_metadata("b-r4", "nothing", {"tags": {}}).unwrap_err()
    assert isinstance(missing, NotFoundError)
    with pytest.raises(TypeError):
        router.update_metadata("b-r4", "k", ["tags"])  # type: ignore[arg-type]


def test_r9_disable(router: Router) -> None:
    put(router, "b-r9", "k", b"x", rf=2)
    assert router.disable("b-r9", "k") == Ok(True)
    assert router.get_metadata("b-r9", "k").unwrap().metadata.is_disabled is True
    assert isinstance(router.get_streaming("b-r9", "k").unwrap_err(), NotFoundError)
    assert isinstance(router.disable("b-r9", "nothing").unwrap_err(), NotFoundError)


def test_r13_delete(router: Router) -> None:
    put(router, "b-r13", "k", b"x", rf=2)
    r = router.delete("b-r13", "k").unwrap()
    assert (r.n_deletes, r.key, r.failed_peers, r.pending_peers) == (2, "k", [], [])
    missing = router.delete("b-r13", "k").unwrap_err()
    assert isinstance(missing, NotFoundError) and missing.code == 404
    put(router, "b-r13", "p", b"y")
    pre = router.delete("b-r13", "p", if_match=sha(b"other")).unwrap_err()
    assert isinstance(pre, PreconditionFailedError) and (pre.status_code, pre.code) == (412, 405)
    assert isinstance(router.delete("b-r13", "p", task_id="notTheWriter").unwrap_err(), PreconditionFailedError)
    assert router.delete("b-r13", "p", if_match=sha(b"y")).unwrap().n_deletes == 1


def test_r14_delete_by_ball_id(router: Router) -> None:
    put_object(router, "b-r14", "obj", [b"1", b"2"], rf=2)
    r = router.delete_by_ball_id("obj", "b-r14").unwrap()
    assert isinstance(r, DeletedByBallIdResponse) and (r.n_deletes, r.ball_id) == (4, "obj")
    assert router.delete_by_ball_id("obj", "b-r14").unwrap().n_deletes == 0


# --- R15–R24 ------------------------------------------------------------------------------
def test_r15_to_r19_peers(router: Router, router_vss: LocalVSS) -> None:
    r = router.get_peers().unwrap()
    assert isinstance(r, PeersResponse) and [p.peer_id for p in r.available] == PEERS and r.unavailable == []
    assert all(isinstance(p, PeerInfo) and p.protocol == "http" for p in r.available)
    peers = {p.peer_id: p for p in r.available}
    # re-registering the same addresses changes nothing
    objects = [Peer(p.peer_id, p.hostname, p.port) for p in r.available]
    assert router.add_peers(objects) == Ok(True)
    assert router.add_peer(peers[PEERS[0]]) == Ok(True)
    assert router.add_peer({"peer_id": PEERS[1], "hostname": "127.0.0.1", "port": peers[PEERS[1]].port}) == Ok(True)
    bad = router.add_peer({"peer_id": "x", "hostname": "h"}).unwrap_err()  # port missing
    assert isinstance(bad, ValidationError) and (bad.status_code, bad.code) == (422, 400)
    bad = router.add_peers([{"peer_id": "bad id", "hostname": "h", "port": 1}]).unwrap_err()
    assert isinstance(bad, ValidationError) and bad.status_code == 422
    assert router.add_peer({"peer_id": "extra-peer", "hostname": "127.0.0.1", "port": 9}) == Ok(True)
    assert [p.peer_id for p in router.get_peers().unwrap().unavailable] == ["extra-peer"]
    assert router.remove_peer("extra-peer") == Ok(True)
    unknown = router.remove_peer("extra-peer").unwrap_err()
    assert isinstance(unknown, NotFoundError) and unknown.status_code == 404
    assert router.add_peers([PeerInfo("extra-peer", "127.0.0.1", 9)]) == Ok(True)
    assert router.remove_peers(["extra-peer", "never-known"]) == Ok(True)
    assert [p.peer_id for p in router.get_peers().unwrap().available] == PEERS
    with pytest.raises(TypeError):
        router.add_peers([42])
    for p in objects:
        p.close()


def test_r20_stats(router: Router) -> None:
    put(router, "b-r20", "k", b"stats", rf=2)
    stats = router.get_stats().unwrap()
    assert sorted(stats) == PEERS and all(isinstance(s, PeerStatsResponse) for s in stats.values())
    assert all(s.peer_id == pid for pid, s in stats.items())
    limited = router.get_stats(start=0, end=1).unwrap()
    assert all(len(s.balls) <= 1 for s in limited.values())


def test_r21_r23_cache(router: Router) -> None:
    assert router.get_cache_keys() == Ok(CacheKeysResponse([]))
    assert router.get_cache_stats() == Ok(CacheStatsResponse(0, 0, 0, 0.0))
    assert router.reset_cache() == Ok(True)


def test_r24_health(router: Router) -> None:
    assert router.health() == Ok(RouterHealthResponse("ok", 2))


def test_unavailable_peer_rows(router: Router, router_vss: LocalVSS) -> None:
    """While a known peer is down: reads of missing keys are 503/666, R5 with rf=2 is 404/666,
    deletes record pending peers."""
    put(router, "b-down", "k", b"x", rf=2)
    router_vss.stop_peer(PEERS[1])
    try:
        deadline = time.monotonic() + 15
        while router.health().unwrap().available_peers != 1:
            assert time.monotonic() < deadline, "the router never noticed the stopped peer"
            time.sleep(0.1)
        missing = router.get_metadata("b-down", "nothing").unwrap_err()
        assert isinstance(missing, MaxAvailabilityReachedError) and (missing.status_code, missing.code) == (503, 666)
        assert missing.detail is not None and missing.detail["unavailable_peers"] == [PEERS[1]]
        rf2 = router.put_metadata("k2", 1, sha(b"x"), "me", "a/b", "k2", "b-down", replication_factor=2)
        assert isinstance(rf2.unwrap_err(), MaxAvailabilityReachedError)
        deleted = router.delete("b-down", "k").unwrap()
        assert deleted.n_deletes == 1 and deleted.pending_peers == [PEERS[1]]
    finally:
        router_vss.start_peer(PEERS[1])
        router_vss.wait_ready()


def test_client_side_validation(router: Router) -> None:
    for result in (router.get_metadata("b", "a/b"), router.get_streaming("..", "k"), router.delete("b", "metadata"),
                   router.put_chunked("bad task", b""), router.remove_peer("a b"), router.remove_peers(["ok", "@"]),
                   router.get_bucket_metadata("b", after="x/y"), router.delete("b", "k", task_id="metadata")):
        assert isinstance(result.unwrap_err(), ValidationError)


# --- upstream quirks (client-api §3) ------------------------------------------------------
class _Upstream(BaseHTTPRequestHandler):
    """Answers like upstream routers: R6 201 with an empty body, R5 a bare 404, R3 500 "404: …"."""

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 65536)))
        if self.path.endswith("/metadata"):
            self._reply(404, json.dumps({"detail": "No available peers"}).encode())
        elif self.path.endswith("/chunked"):
            self._reply(200, json.dumps({"peer_ids": ["p0"], "combined_key": "b@k", "bucket_id": "b", "key": "k",
                                         "size": 1}).encode())
        else:
            self._reply(201)

    def do_GET(self) -> None:  # noqa: N802
        if "/metadata/" in self.path:
            self._reply(500, json.dumps({"detail": "404: No metadata found for b@k"}).encode())
        else:
            self._reply(200, b"{not json", "application/json")


@pytest.fixture
def upstream() -> Iterator[Router]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Router("upstream", "127.0.0.1", server.server_address[1]) as r:
            yield r
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_upstream_quirks(upstream: Router) -> None:
    assert upstream.put_data("group1", "k", b"x", "a/b") == Ok(None)  # empty 2xx body
    r5 = upstream.put_metadata("k", 1, sha(b"x"), "me", "a/b", "k", "b").unwrap_err()
    assert isinstance(r5, MaxAvailabilityReachedError) and r5.status_code == 404
    r3 = upstream.get_metadata("b", "k").unwrap_err()
    assert isinstance(r3, NotFoundError) and r3.status_code == 404
    r7 = upstream.put_chunked("group1", b"x", replication_factor=2).unwrap_err()
    assert isinstance(r7, PutChunksError)
    assert upstream.put_chunked("group1", b"x", replication_factor=1).unwrap().peer_ids == ["p0"]
    bad = upstream.health().unwrap_err()
    assert isinstance(bad, ResponseFormatError) and bad.router == upstream.base_url()
