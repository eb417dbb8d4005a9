"""Router endpoints R1–R24 against a real ``LocalVSS`` (2 peers), raw HTTP only."""

from __future__ import annotations

import hashlib
import json

import requests

from mictlanx_sync.protocol.versions import is_valid_version
from mictlanx_sync.server.router.placement import rank
from tests.functional.conftest import RouterAPI, detail, random_bytes

PEER0, PEER1 = "mictlanx-peer-0", "mictlanx-peer-1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- R24, openapi, routing -------------------------------------------------------------------
def test_health_and_openapi(api: RouterAPI) -> None:
    resp = api("GET", "/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "available_peers": 2}
    doc = api("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    ids = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert {f"R{i}" for i in range(1, 25)} <= ids


def test_unknown_route_and_encoded_slash(api: RouterAPI) -> None:
    resp = api("GET", "/api/v4/nothing/here")
    assert resp.status_code == 404 and detail(resp)["code"] == 404
    resp = api("GET", "/api/v4/buckets/b/a%2Fb")
    assert resp.status_code == 400 and detail(resp)["code"] == 400
    resp = api("GET", "/api/v4/buckets/bad@bucket/k")
    assert resp.status_code == 400


# --- R5 ----------------------------------------------------------------------------------------
def test_r5_r7_success_shapes_and_placement(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(300_000)
    resp = api.put_meta(bucket, "obj", data, rf=2, tags={"a": "1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"key", "service_time", "tasks_ids", "bucket_id", "replicas", "extra"}
    assert body["key"] == "obj" and body["bucket_id"] == bucket and isinstance(body["service_time"], float)
    assert len(body["tasks_ids"]) == 1 and body["extra"]["exists"] is False
    assert is_valid_version(body["extra"]["version"])  # docs/consistency.md §2: the router assigned it
    assert body["replicas"] == rank([PEER0, PEER1], bucket, "obj")
    put = api("POST", f"/api/v4/buckets/data/{body['tasks_ids'][0]}/chunked", data=data)
    assert put.status_code == 200, put.text
    assert put.json() == {"peer_ids": body["replicas"], "combined_key": f"{bucket}@obj", "bucket_id": bucket,
                          "key": "obj", "size": len(data)}
    for peer in (PEER0, PEER1):
        meta = api.peer_meta(peer, bucket, "obj")
        assert meta is not None and meta["checksum"] == sha(data) and meta["tags"] == {"a": "1"}
    # the group is claimed once
    again = api("POST", f"/api/v4/buckets/data/{body['tasks_ids'][0]}/chunked", data=data)
    assert again.status_code == 404 and detail(again)["code"] == 404


def test_r5_rf1_goes_to_the_top_ranked_peer(api: RouterAPI, bucket: str) -> None:
    for i in range(6):
        key = f"k{i}"
        api.put(bucket, key, random_bytes(1000), rf=1)
        assert api.holders(bucket, key) == [rank([PEER0, PEER1], bucket, key)[0]]


def test_r5_not_enough_peers_is_404_666(api: RouterAPI, bucket: str) -> None:
    data = b"x" * 10
    resp = api.put_meta(bucket, "k", data, rf=3)
    assert resp.status_code == 404
    assert detail(resp) == {"code": 666, "msg": "No available peers.",
                            "suggestion": "Add more peers or delete replicas.",
                            "bucket_id": bucket, "key": "k", "replicas": [], "available_peers": 2,
                            "replication_factor": 3}
    assert api.holders(bucket, "k") == []


def test_r5_validation_errors(api: RouterAPI, bucket: str) -> None:
    path = f"/api/v4/buckets/{bucket}/metadata"
    good = {"key": "k", "size": 1, "checksum": "a" * 64}
    cases = [
        ({"size": 1, "checksum": "a" * 64}, 422),
        ({**good, "checksum": "abc"}, 422),
        ({**good, "size": -1}, 422),
        ({**good, "size": "1"}, 422),
        ({**good, "key": "a/b"}, 422),
        ({**good, "tags": {"x": 1}}, 422),
        ({**good, "replication_factor": 0}, 422),
        ({**good, "bucket_id": "other"}, 400),
        ({**good, "tags": {"x": "y" * 70_000}}, 413),
    ]
    for body, status in cases:
        resp = api("POST", path, json=body)
        assert resp.status_code == status, (body, resp.text)
        assert detail(resp)["code"] == 400
    assert api("POST", path, data=b"not json").status_code == 422
    assert api("POST", path, json=good, headers={"Update": "maybe"}).status_code == 400
    assert api("POST", "/api/v4/buckets/a%2Fb/metadata", json=good).status_code == 400


def test_r5_exists_and_conflict_and_update(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(5000)
    api.put(bucket, "k", data, rf=2)
    same = api.put_meta(bucket, "k", data, rf=2)
    assert same.status_code == 200 and same.json()["extra"]["exists"] is True
    # phase 2 on an exists group still works
    group = same.json()["tasks_ids"][0]
    assert api("POST", f"/api/v4/buckets/data/{group}/chunked", data=data).status_code == 200
    other = random_bytes(5000)
    conflict = api.put_meta(bucket, "k", other, rf=2)
    assert conflict.status_code == 409 and detail(conflict)["code"] == 405
    assert len(detail(conflict)["errors"]) == 2
    api.put(bucket, "k", other, rf=2, update=True)
    got = api("GET", f"/api/v4/buckets/{bucket}/k")
    assert got.status_code == 200 and got.content == other


# --- R6, R7, R8 -------------------------------------------------------------------------------
def test_r7_integrity_failure_leaves_nothing(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(200_000)
    meta = api.put_meta(bucket, "bad", data, rf=2)
    group = meta.json()["tasks_ids"][0]
    wrong = bytearray(data)
    wrong[100] ^= 0xFF
    resp = api("POST", f"/api/v4/buckets/data/{group}/chunked", data=bytes(wrong))
    assert resp.status_code == 400 and detail(resp)["code"] == 501
    assert api.holders(bucket, "bad") == []


def test_r7_short_and_long_bodies_are_integrity_errors(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(100_000)
    for i, body in enumerate([data[:-1], data + b"extra"]):
        meta = api.put_meta(bucket, f"k{i}", data, rf=2)
        group = meta.json()["tasks_ids"][0]
        resp = api("POST", f"/api/v4/buckets/data/{group}/chunked", data=body)
        assert resp.status_code == 400, resp.text
        assert detail(resp)["code"] == 501 and detail(resp)["expected_size"] == len(data)
        assert api.holders(bucket, f"k{i}") == []


def test_r7_unknown_group_and_bad_ids(api: RouterAPI) -> None:
    resp = api("POST", "/api/v4/buckets/data/NoSuchGroup123/chunked", data=b"abc")
    assert resp.status_code == 404 and detail(resp)["code"] == 404
    resp = api("POST", "/api/v4/buckets/data/bad.id/chunked", data=b"abc")
    assert resp.status_code == 400


def test_r7_chunk_size_header(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(50_000)
    group = api.put_meta(bucket, "k", data, rf=2).json()["tasks_ids"][0]
    bad = api("POST", f"/api/v4/buckets/data/{group}/chunked", data=data, headers={"Chunk-Size": "lots"})
    assert bad.status_code == 400
    group = api.put_meta(bucket, "k", data, rf=2).json()["tasks_ids"][0]
    ok = api("POST", f"/api/v4/buckets/data/{group}/chunked", data=data, headers={"Chunk-Size": "4KiB"})
    assert ok.status_code == 200 and ok.json()["size"] == len(data)


def test_r7_chunked_transfer_encoding_and_r8_alias(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(3_000_000)
    group = api.put_meta(bucket, "chunked", data, rf=2).json()["tasks_ids"][0]
    pieces = (data[i:i + 65536] for i in range(0, len(data), 65536))
    resp = api("POST", f"/api/v4/buckets/data/{group}/chunked", data=pieces)
    assert resp.status_code == 200, resp.text
    group = api.put_meta(bucket, "v1", data, rf=1).json()["tasks_ids"][0]
    resp = api("POST", f"/api/v4/buckets/data/{group}/chunkedv1", data=data)
    assert resp.status_code == 200 and resp.json()["size"] == len(data)
    assert api("GET", f"/api/v4/buckets/{bucket}/chunked").content == data


def test_r6_multipart(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(1_500_000)
    group = api.put_meta(bucket, "mp", data, rf=2).json()["tasks_ids"][0]
    resp = api("POST", f"/api/v4/buckets/data/{group}",
               files={"other": ("x", b"ignored"), "data": ("blob.bin", data, "text/plain")})
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"peer_ids": rank([PEER0, PEER1], bucket, "mp"), "combined_key": f"{bucket}@mp",
                           "bucket_id": bucket, "key": "mp", "size": len(data)}
    assert api("GET", f"/api/v4/buckets/{bucket}/mp").content == data
    group = api.put_meta(bucket, "mp2", data, rf=2).json()["tasks_ids"][0]
    missing = api("POST", f"/api/v4/buckets/data/{group}", files={"file": ("x", data)})
    assert missing.status_code == 422 and detail(missing)["code"] == 400
    assert api.holders(bucket, "mp2") == []
    group = api.put_meta(bucket, "mp3", data, rf=2).json()["tasks_ids"][0]
    raw = api("POST", f"/api/v4/buckets/data/{group}", data=data, headers={"Content-Type": "application/json"})
    assert raw.status_code == 422


def test_empty_object(api: RouterAPI, bucket: str) -> None:
    api.put(bucket, "empty", b"", rf=2)
    resp = api("GET", f"/api/v4/buckets/{bucket}/empty")
    assert resp.status_code == 200 and resp.content == b""
    listing = api("GET", f"/api/v4/buckets/{bucket}/metadata").json()
    assert [b["key"] for b in listing["balls"]] == ["empty"]


# --- R11 ---------------------------------------------------------------------------------------
def test_r11_get_headers_range_and_errors(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(100_000)
    api.put(bucket, "k", data, rf=2, content_type="text/plain", tags={"fullname": "dir/Report ü.txt"})
    resp = api("GET", f"/api/v4/buckets/{bucket}/k")
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["ETag"] == f'"{sha(data)}"'
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["Peer-Id"] == rank([PEER0, PEER1], bucket, "k")[0]
    part = api("GET", f"/api/v4/buckets/{bucket}/k", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    bad = api("GET", f"/api/v4/buckets/{bucket}/k", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
    typed = api("GET", f"/api/v4/buckets/{bucket}/k", params={"content_type": "image/png"})
    assert typed.headers["Content-Type"] == "image/png"
    att = api("GET", f"/api/v4/buckets/{bucket}/k", params={"attachment": "1"})
    assert att.headers["Content-Disposition"] == (
        "attachment; filename=\"Report _.txt\"; filename*=UTF-8''Report%20%C3%BC.txt")
    named = api("GET", f"/api/v4/buckets/{bucket}/k", params={"attachment": "true", "filename": "a.bin"})
    assert named.headers["Content-Disposition"].startswith('attachment; filename="a.bin"')
    for peer in (PEER0, PEER1):
        pinned = api("GET", f"/api/v4/buckets/{bucket}/k", headers={"Peer-Id": peer})
        assert pinned.status_code == 200 and pinned.headers["Peer-Id"] == peer and pinned.content == data
    unknown = api("GET", f"/api/v4/buckets/{bucket}/k", headers={"Peer-Id": "nobody"})
    assert unknown.status_code == 404
    missing = api("GET", f"/api/v4/buckets/{bucket}/nothing")
    assert missing.status_code == 404 and detail(missing)["code"] == 404
    assert api("GET", f"/api/v4/buckets/{bucket}/k", params={"attachment": "x"}).status_code == 400


# --- R1, R3 ---------------------------------------------------------------------------------
def test_r1_sizes_and_r3_metadata(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(4321)
    api.put(bucket, "k", data, rf=2)
    sizes = api("GET", f"/api/v4/buckets/{bucket}/k/size").json()
    order = rank([PEER0, PEER1], bucket, "k")
    assert sizes == [{"bucket_id": bucket, "key": "k", "peer_id": p, "size": 4321} for p in order]
    missing = api("GET", f"/api/v4/buckets/{bucket}/nope/size")
    assert missing.status_code == 404 and detail(missing)["code"] == 404
    meta = api("GET", f"/api/v4/buckets/{bucket}/metadata/k")
    assert meta.status_code == 200
    body = meta.json()
    assert body["peer_id"] == order[0] and isinstance(body["service_time"], int)
    assert body["metadata"]["checksum"] == sha(data) and body["metadata"]["size"] == 4321
    pinned = api("GET", f"/api/v4/buckets/{bucket}/metadata/k", headers={"Peer-Id": order[1]})
    assert pinned.json()["peer_id"] == order[1]
    nf = api("GET", f"/api/v4/buckets/{bucket}/metadata/nope")
    assert nf.status_code == 404
    assert detail(nf)["code"] == 404 and detail(nf)["bucket_id"] == bucket and detail(nf)["key"] == "nope"
    # "metadata" as third segment always selects a metadata route: this is R3 for key "size"
    assert api("GET", f"/api/v4/buckets/{bucket}/metadata/size").status_code == 404


# --- R2 -------------------------------------------------------------------------------------
def test_r2_listing_merged_without_duplicates(api: RouterAPI, bucket: str) -> None:
    keys = [f"k{i:02d}" for i in range(8)]
    for i, key in enumerate(keys):
        api.put(bucket, key, random_bytes(10 + i), rf=1 + i % 2)
    resp = api("GET", f"/api/v4/buckets/{bucket}/metadata")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"bucket_id", "peers_ids", "peer_ids", "balls", "extra"}
    assert body["peer_ids"] == body["peers_ids"] == [PEER0, PEER1]
    assert body["extra"] == {"failed_peers": []}
    assert [b["key"] for b in body["balls"]] == keys
    page = api("GET", f"/api/v4/buckets/{bucket}/metadata", params={"start": 2, "end": 5}).json()
    assert [b["key"] for b in page["balls"]] == keys[2:5]
    after = api("GET", f"/api/v4/buckets/{bucket}/metadata", params={"after": "k03", "end": 2}).json()
    assert [b["key"] for b in after["balls"]] == ["k04", "k05"]
    assert api("GET", f"/api/v4/buckets/{bucket}/metadata", params={"start": -1}).status_code == 400
    assert api("GET", f"/api/v4/buckets/{bucket}/metadata", params={"after": "a/b"}).status_code == 400
    empty = api("GET", "/api/v4/buckets/no-such-bucket-xyz/metadata").json()
    assert empty["balls"] == []


# --- R4, R9 ---------------------------------------------------------------------------------
def test_r4_update_metadata(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(777)
    api.put(bucket, "k", data, rf=2, tags={"a": "1"})
    resp = api("POST", f"/api/v4/u/buckets/{bucket}/k", json={"tags": {"b": "2"}, "content_type": "text/csv"})
    assert resp.status_code == 204, resp.text
    for peer in (PEER0, PEER1):
        meta = api.peer_meta(peer, bucket, "k")
        assert meta is not None and meta["tags"] == {"b": "2"} and meta["content_type"] == "text/csv"
        assert meta["checksum"] == sha(data)
    assert api("GET", f"/api/v4/buckets/{bucket}/k").content == data
    bad = api("POST", f"/api/v4/u/buckets/{bucket}/k", json={"size": 1})
    assert bad.status_code == 400 and detail(bad)["code"] == 400
    assert api("POST", f"/api/v4/u/buckets/{bucket}/k", json={"checksum": "b" * 64}).status_code == 400
    assert api("POST", f"/api/v4/u/buckets/{bucket}/k", json={"key": "other"}).status_code == 400
    assert api("POST", f"/api/v4/u/buckets/{bucket}/k", json={"tags": {"x": 1}}).status_code == 422
    nf = api("POST", f"/api/v4/u/buckets/{bucket}/nope", json={"tags": {}})
    assert nf.status_code == 404 and detail(nf)["code"] == 404


def test_r9_disable(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(100)
    api.put(bucket, "k", data, rf=2)
    assert api("POST", f"/api/v4/buckets/{bucket}/k/disable").status_code == 204
    assert api("GET", f"/api/v4/buckets/{bucket}/k").status_code == 404
    meta = api("GET", f"/api/v4/buckets/{bucket}/metadata/k").json()
    assert meta["metadata"]["is_disabled"] is True
    assert api("GET", f"/api/v4/buckets/{bucket}/metadata").json()["balls"] == []
    listed = api("GET", f"/api/v4/buckets/{bucket}/metadata", params={"include_disabled": "1"}).json()
    assert [b["key"] for b in listed["balls"]] == ["k"]
    nf = api("POST", f"/api/v4/buckets/{bucket}/nope/disable")
    assert nf.status_code == 404 and detail(nf)["code"] == 404


# --- R10, R12 -------------------------------------------------------------------------------
def _put_chunks(api: RouterAPI, bucket: str, ball: str, data: bytes, chunk: int, full: str = "") -> None:
    parts = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for i, part in enumerate(parts):
        tags = {"index": str(i), "chunk_size": str(len(part)), "group_id": ball, "num_chunks": str(len(parts)),
                "full_checksum": full or sha(data), "fullname": "file.dat"}
        api.put(bucket, f"{ball}_{i}", part, rf=1 + i % 2, ball_id=ball, tags=tags, update=True)


def test_r12_chunks_and_r10_merge(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(250_000)
    _put_chunks(api, bucket, "obj", data, 100_000)
    resp = api("GET", f"/api/v4/buckets/{bucket}/metadata/obj/chunks")
    assert resp.status_code == 200
    body = resp.json()
    assert body["bucket_id"] == bucket and body["ball_id"] == "obj"
    assert body["size"] == "250 KB" and body["size_bytes"] == 250_000 and body["checksum"] == sha(data)
    assert [c["key"] for c in body["chunks"]] == ["obj_0", "obj_1", "obj_2"]
    merged = api("GET", f"/api/v4/buckets/{bucket}/obj/merge")
    assert merged.status_code == 200 and merged.content == data
    assert merged.headers["ETag"] == f'"{sha(data)}"' and merged.headers["Content-Length"] == "250000"
    assert merged.headers["Content-Type"] == "application/octet-stream"
    att = api("GET", f"/api/v4/buckets/{bucket}/obj/merge", params={"attachment": "1", "content_type": "x/y"})
    assert att.headers["Content-Type"] == "x/y" and 'filename="file.dat"' in att.headers["Content-Disposition"]
    nf = api("GET", f"/api/v4/buckets/{bucket}/metadata/none/chunks")
    assert nf.status_code == 404 and detail(nf)["code"] == 404
    assert api("GET", f"/api/v4/buckets/{bucket}/none/merge").status_code == 404


def test_r10_mixed_versions_and_missing_chunk(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(30_000)
    _put_chunks(api, bucket, "mixed", data, 10_000)
    api.put(bucket, "mixed_1", data[10_000:20_000], rf=1, ball_id="mixed", update=True,
            tags={"index": "1", "chunk_size": "10000", "group_id": "mixed", "num_chunks": "3",
                  "full_checksum": "f" * 64})
    resp = api("GET", f"/api/v4/buckets/{bucket}/mixed/merge")
    assert resp.status_code == 400 and detail(resp)["code"] == 501
    _put_chunks(api, bucket, "holey", data, 10_000)
    assert api("DELETE", f"/api/v4/buckets/{bucket}/holey_1").status_code == 200
    resp = api("GET", f"/api/v4/buckets/{bucket}/holey/merge")
    assert resp.status_code == 404 and detail(resp)["code"] == 404


# --- R13, R14 -------------------------------------------------------------------------------
def test_r13_delete_key(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(1000)
    api.put(bucket, "k", data, rf=2)
    wrong = api("DELETE", f"/api/v4/buckets/{bucket}/k", headers={"If-Match": f'"{"0" * 64}"'})
    assert wrong.status_code == 412 and detail(wrong)["code"] == 405
    assert api("DELETE", f"/api/v4/buckets/{bucket}/k", headers={"If-Match": "nope"}).status_code == 400
    resp = api("DELETE", f"/api/v4/buckets/{bucket}/k", headers={"If-Match": f'"{sha(data)}"'})
    assert resp.status_code == 200
    # With If-Match the delete removes exactly that content: no tombstone, no version.
    assert resp.json() == {"n_deletes": 2, "key": "k", "failed_peers": [], "pending_peers": [], "version": ""}
    assert resp.headers["n-deletes"] == "2"
    assert api.holders(bucket, "k") == []
    again = api("DELETE", f"/api/v4/buckets/{bucket}/k")
    assert again.status_code == 404 and detail(again)["code"] == 404


def test_r13_task_id_precondition(api: RouterAPI, bucket: str) -> None:
    data = random_bytes(1000)
    meta = api.put_meta(bucket, "k", data, rf=2)
    group = meta.json()["tasks_ids"][0]
    api("POST", f"/api/v4/buckets/data/{group}/chunked", data=data)
    other = api("DELETE", f"/api/v4/buckets/{bucket}/k", headers={"Task-Id": "SomeOtherTask"})
    assert other.status_code == 412
    ok = api("DELETE", f"/api/v4/buckets/{bucket}/k", headers={"Task-Id": group})
    assert ok.status_code == 200 and ok.json()["n_deletes"] == 2


def test_r14_delete_by_ball_id(api: RouterAPI, bucket: str) -> None:
    _put_chunks(api, bucket, "obj", random_bytes(30_000), 10_000)
    resp = api("DELETE", f"/api/v4/buckets/{bucket}/bid/obj")
    assert resp.status_code == 200
    body = resp.json()
    assert body["ball_id"] == "obj" and body["failed_peers"] == [] and body["pending_peers"] == []
    assert body["n_deletes"] == 1 + 2 + 1 and resp.headers["n-deletes"] == "4"
    again = api("DELETE", f"/api/v4/buckets/{bucket}/bid/obj")
    assert again.status_code == 200 and again.json()["n_deletes"] == 0


# --- R20–R23 --------------------------------------------------------------------------------
def test_r20_stats_and_cache_endpoints(api: RouterAPI) -> None:
    stats = api("GET", "/api/v4/peers/stats", params={"end": 5})
    assert stats.status_code == 200
    body = stats.json()
    assert sorted(body) == [PEER0, PEER1]
    for peer, entry in body.items():
        assert set(entry) == {"peer_id", "used_disk", "total_disk", "available_disk", "disk_uf", "balls", "peers"}
        assert entry["peer_id"] == peer and len(entry["balls"]) <= 5
    assert api("GET", "/api/v4/cache").json() == {"keys": []}
    assert api("GET", "/api/v4/cache/stats").json() == {"total": 0, "used": 0, "available": 0, "uf": 0.0}
    assert api("DELETE", "/api/v4/cache/reset").status_code == 204
    assert api("GET", "/api/v4/peers/stats", params={"start": "x"}).status_code == 400


def test_r16_peers(api: RouterAPI, vss) -> None:  # type: ignore[no-untyped-def]
    body = api("GET", "/api/v4/peers").json()
    assert body["unavailable"] == []
    assert body["available"] == [{"peer_id": p, "hostname": "127.0.0.1", "port": int(u.rsplit(":", 1)[1]),
                                  "protocol": "http"} for p, u in sorted(vss.peer_urls.items())]


def test_error_bodies_are_json(api: RouterAPI) -> None:
    resp = requests.get(f"{api.url}/api/v4/buckets/b/metadata/k", timeout=10)
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.content)["detail"]["code"] in (404, 666)


def test_r5_partial_conflict_rolls_back(api: RouterAPI, bucket: str) -> None:
    """One replica already has other content: 409/405 from it, nothing kept anywhere else."""
    peers = rank([PEER0, PEER1], bucket, "k")
    old = random_bytes(100)
    direct = requests.post(f"{api.peer_urls[peers[1]]}/api/v4/buckets/{bucket}/metadata", timeout=10,
                           json={"key": "k", "size": len(old), "checksum": sha(old)})
    task = direct.json()["task_id"]
    assert requests.post(f"{api.peer_urls[peers[1]]}/api/v4/buckets/data/{task}/chunked", data=old,
                         timeout=10).status_code == 201
    new = random_bytes(100)
    resp = api.put_meta(bucket, "k", new, rf=2)
    assert resp.status_code == 409 and detail(resp)["code"] == 405
    assert [e["peer_id"] for e in detail(resp)["errors"]] == [peers[1]]
    assert api.peer_meta(peers[0], bucket, "k") is None
    kept = api.peer_meta(peers[1], bucket, "k")
    assert kept is not None and kept["checksum"] == sha(old)


def test_client_disconnect_mid_upload_keeps_nothing(api: RouterAPI, bucket: str) -> None:
    import socket
    import time

    data = random_bytes(4_000_000)
    group = api.put_meta(bucket, "gone", data, rf=2).json()["tasks_ids"][0]
    host, port = api.url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (f"POST /api/v4/buckets/data/{group}/chunked HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data[:1_000_000])
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while api.holders(bucket, "gone") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.holders(bucket, "gone") == []
    assert api("GET", "/health").json()["available_peers"] == 2
    # the group was consumed; a new one works
    api.put(bucket, "gone", data, rf=2)
    assert api("GET", f"/api/v4/buckets/{bucket}/gone").content == data


def test_bucket_named_data(api: RouterAPI) -> None:
    """``POST /buckets/data/metadata`` is R5 for the bucket ``data`` (§P2.9)."""
    payload = random_bytes(2048)
    api.put("data", "dkey", payload, rf=2)
    assert api("GET", "/api/v4/buckets/data/dkey").content == payload
    assert "dkey" in [b["key"] for b in api("GET", "/api/v4/buckets/data/metadata").json()["balls"]]
    assert api("DELETE", "/api/v4/buckets/data/dkey").json()["n_deletes"] == 2
