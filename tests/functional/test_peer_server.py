"""The storage peer server through raw HTTP: success shapes of P1–P23 (protocol §3.3).

Helpers and fixtures here are shared by the other ``test_peer_server_*`` modules.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests

from tests.support.servers import ServerProcess, start_peer

API = "/api/v4"
TIMEOUT = 30


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def p1(url: str, bucket: str, key: str, data: bytes, *, headers: Optional[dict[str, str]] = None,
       **meta: Any) -> requests.Response:
    body = {"key": key, "size": len(data), "checksum": sha(data), **meta}
    return requests.post(f"{url}{API}/buckets/{bucket}/metadata", json=body, headers=headers, timeout=TIMEOUT)


def p3(url: str, task_id: str, data: Any, headers: Optional[dict[str, str]] = None) -> requests.Response:
    return requests.post(f"{url}{API}/buckets/data/{task_id}/chunked", data=data, headers=headers, timeout=TIMEOUT)


def p2(url: str, task_id: str, data: bytes) -> requests.Response:
    files = {"data": ("blob.bin", data, "application/x-ignored")}
    return requests.post(f"{url}{API}/buckets/data/{task_id}", files=files, timeout=TIMEOUT)


def put(url: str, bucket: str, key: str, data: bytes, *, multipart: bool = False,
        headers: Optional[dict[str, str]] = None, **meta: Any) -> dict[str, Any]:
    """P1 then (unless ``exists``) P2/P3; returns the P1 body. Asserts success."""
    first = p1(url, bucket, key, data, headers=headers, **meta)
    assert first.status_code == 201, first.text
    body = first.json()
    second = (p2 if multipart else p3)(url, body["task_id"], data)
    assert second.status_code == 201, second.text
    return body


def get(url: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{url}{API}{path}", timeout=TIMEOUT, **kwargs)


def detail(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"]["msg"], str)
    return body["detail"]


def assert_error(response: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    found = detail(response)
    assert found["code"] == code, found
    return found


#: the peer options of each way to store a small version (docs/storage.md): in the index, or a file each
LAYOUTS = {"inline": (), "files": ("--inline-ball-max", "0")}


def data_files(data_dir: Path) -> set[str]:
    """Every stored version: each file under the data dir except the SQLite index files, and each
    inline blob of the index (``inline:{id}``, read-only beside a running peer)."""
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
             if p.is_file() and not p.name.startswith("index.sqlite3")}
    return files | inline_blobs(data_dir)


def indexed_files(data_dir: Path) -> set[str]:
    """The ``file`` every record of the peer's index names (read-only, beside the running peer)."""
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in db.execute("SELECT file FROM balls UNION SELECT file FROM versions")}
    finally:
        db.close()


def inline_blobs(data_dir: Path) -> set[str]:
    """The names of the inline blobs in a peer's index."""
    index = data_dir / "index.sqlite3"
    if not index.exists():
        return set()
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
    try:
        return {f"inline:{row[0]}" for row in db.execute("SELECT id FROM blobs")}
    finally:
        db.close()


def listings(url: str) -> tuple[Any, ...]:
    """P6 of a few buckets, P15 and P17, all with disabled balls."""
    buckets = [get(url, f"/buckets/{b}/metadata?include_disabled=1").json() for b in ("b", "data", "other")]
    return (*buckets, get(url, "/xballs?include_disabled=1").json(),
            get(url, "/balls/len?include_disabled=1").json())


@contextlib.contextmanager
def running_peer(data_dir: Path, peer_id: str = "peer-a", *extra: str) -> Iterator[ServerProcess]:
    """A peer subprocess that must exit 0 on SIGTERM at the end."""
    server = start_peer(data_dir, peer_id, *extra)
    try:
        yield server
    finally:
        assert server.stop() == 0


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_peer(tmp_path / "peer") as server:
        yield server


@pytest.fixture
def peer_dir(peer: ServerProcess, tmp_path: Path) -> Path:
    return tmp_path / "peer"


# --- success shapes ------------------------------------------------------------------------------
# ``version``: docs/consistency.md §2 (every Metadata object names its version).
META_KEYS = {"key", "size", "checksum", "tags", "content_type", "producer_id", "ball_id", "bucket_id", "is_disabled",
             "version"}


def test_p1_p3_p4_p5_round_trip(peer: ServerProcess) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    first = p1(peer.url, "b", "k1", data, tags={"t": "v"}, content_type="text/plain; charset=utf-8",
               producer_id="me", ball_id="g1")
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"key", "service_time", "task_id", "node_id", "exists", "version"}
    assert body["key"] == "k1" and body["node_id"] == "peer-a" and body["exists"] is False
    assert isinstance(body["service_time"], int)
    assert len(body["task_id"]) == 21 and body["task_id"].isalnum()
    second = p3(peer.url, body["task_id"], data)
    assert second.status_code == 201
    shape = second.json()
    assert set(shape) == {"node_id", "combined_key", "bucket_id", "key", "size", "throughput", "service_time"}
    assert shape["combined_key"] == "b@k1" and shape["size"] == len(data) and shape["node_id"] == "peer-a"
    assert isinstance(shape["throughput"], float) and isinstance(shape["service_time"], float)

    meta = get(peer.url, "/buckets/b/metadata/k1")
    assert meta.status_code == 200
    got = meta.json()
    assert set(got) == {"service_time", "peer_id", "local_peer_id", "metadata", "version"}
    assert got["peer_id"] == got["local_peer_id"] == "peer-a" and isinstance(got["service_time"], int)
    assert got["metadata"] == {"key": "k1", "size": len(data), "checksum": sha(data), "tags": {"t": "v"},
                               "content_type": "text/plain; charset=utf-8", "producer_id": "me",
                               "ball_id": "g1", "bucket_id": "b", "is_disabled": False,
                               "version": body["version"]}

    response = get(peer.url, "/buckets/b/k1")
    assert response.status_code == 200 and response.content == data
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["ETag"] == f'"{sha(data)}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Peer-Id"] == "peer-a"
    assert "Content-Encoding" not in response.headers
    head = requests.head(f"{peer.url}{API}/buckets/b/k1", timeout=TIMEOUT)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(data))


def test_p2_multipart_and_empty_ball(peer: ServerProcess) -> None:
    data = os.urandom(200_000)
    put(peer.url, "b", "mp", data, multipart=True)
    assert get(peer.url, "/buckets/b/mp").content == data
    put(peer.url, "b", "empty", b"")
    response = get(peer.url, "/buckets/b/empty")
    assert response.status_code == 200 and response.content == b"" and response.headers["Content-Length"] == "0"
    put(peer.url, "b", "empty-mp", b"", multipart=True)
    assert get(peer.url, "/buckets/b/metadata/empty-mp").json()["metadata"]["size"] == 0


def test_p2_ignores_other_parts_and_chunked_p3(peer: ServerProcess) -> None:
    data = b"payload" * 1000
    task = p1(peer.url, "b", "parts", data).json()["task_id"]
    files: list[Any] = [("before", ("a", b"x" * 100)), ("data", ("f", data, "text/plain")), ("after", ("b", b"y"))]
    response = requests.post(f"{peer.url}{API}/buckets/data/{task}", files=files, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    assert get(peer.url, "/buckets/b/parts").content == data
    chunked = os.urandom(2_500_000)
    task = p1(peer.url, "b", "chunked", chunked).json()["task_id"]
    response = p3(peer.url, task, (chunked[i:i + 300_000] for i in range(0, len(chunked), 300_000)))
    assert response.status_code == 201, response.text
    assert get(peer.url, "/buckets/b/chunked").content == chunked


def test_p6_p7_p22_listings(peer: ServerProcess) -> None:
    put(peer.url, "b", "k2", b"two", ball_id="grp")
    put(peer.url, "b", "k1", b"one", ball_id="grp")
    put(peer.url, "b", "k3", b"three")
    listing = get(peer.url, "/buckets/b/metadata").json()
    assert set(listing) == {"peer_id", "balls"} and listing["peer_id"] == "peer-a"
    assert [m["key"] for m in listing["balls"]] == ["k1", "k2", "k3"]
    assert all(set(m) == META_KEYS for m in listing["balls"])
    assert get(peer.url, "/buckets/unknown/metadata").json() == {"peer_id": "peer-a", "balls": []}
    group = get(peer.url, "/buckets/b/metadata/grp/group").json()
    assert group["bucket_id"] == "b" and group["ball_id"] == "grp" and group["size"] == 6
    assert [m["key"] for m in group["balls"]] == ["k1", "k2"]
    assert [m["key"] for m in get(peer.url, "/buckets/b/metadata/grp/chunks").json()] == ["k1", "k2"]
    assert get(peer.url, "/buckets/b/metadata/nope/chunks").json() == []
    assert_error(get(peer.url, "/buckets/b/metadata/nope/group"), 404, 404)


def test_p8_p9_p10_p11(peer: ServerProcess) -> None:
    put(peer.url, "b", "k1", b"one", ball_id="g")
    put(peer.url, "b", "k2", b"two", ball_id="g")
    put(peer.url, "b", "k3", b"three")
    size = get(peer.url, "/buckets/b/k3/size")
    assert size.status_code == 200
    assert size.json() == {"bucket_id": "b", "key": "k3", "peer_id": "peer-a", "size": 5}
    disabled = requests.post(f"{peer.url}{API}/buckets/b/k3/disable", timeout=TIMEOUT)
    assert disabled.status_code == 204 and disabled.content == b""
    assert requests.post(f"{peer.url}{API}/buckets/b/k3/disable", timeout=TIMEOUT).status_code == 204
    assert_error(requests.post(f"{peer.url}{API}/buckets/b/zz/disable", timeout=TIMEOUT), 404, 404)

    deleted = requests.delete(f"{peer.url}{API}/buckets/b/k3", headers={"Force": "true"}, timeout=TIMEOUT)
    assert deleted.status_code == 200
    assert deleted.json() == {"n_deletes": 1, "key": "k3"}
    assert deleted.headers["n-deletes"] == "1" and deleted.headers["ETag"] == f'"{sha(b"three")}"'
    missing = requests.delete(f"{peer.url}{API}/buckets/b/k3", timeout=TIMEOUT)
    assert_error(missing, 404, 404)
    assert missing.headers["n-deletes"] == "0"

    by_ball = requests.delete(f"{peer.url}{API}/buckets/b/bid/g", timeout=TIMEOUT)
    assert by_ball.status_code == 200 and by_ball.json() == {"n_deletes": 2, "ball_id": "g"}
    assert by_ball.headers["n-deletes"] == "2"
    none = requests.delete(f"{peer.url}{API}/buckets/b/bid/g", timeout=TIMEOUT)
    assert none.status_code == 200 and none.json() == {"n_deletes": 0, "ball_id": "g"}
    assert get(peer.url, "/balls/len?include_disabled=1").json() == {"len": 0}


def test_stats_and_inventory(peer: ServerProcess) -> None:
    put(peer.url, "b", "k1", b"1234")
    put(peer.url, "a", "k9", b"12")
    put(peer.url, "b", "off", b"123", is_disabled=True)
    stats = get(peer.url, "/stats").json()
    assert set(stats) == {"peer_id", "used_disk", "total_disk", "available_disk", "disk_uf", "balls", "peers"}
    assert stats["used_disk"] == 9 and stats["total_disk"] > 0
    assert stats["available_disk"] == stats["total_disk"] - 9
    assert stats["disk_uf"] == pytest.approx(9 / stats["total_disk"])
    assert [(m["bucket_id"], m["key"]) for m in stats["balls"]] == [("a", "k9"), ("b", "k1")]
    assert len(get(peer.url, "/stats?include_disabled=1").json()["balls"]) == 3
    assert stats["peers"] == []
    ufs = get(peer.url, "/stats/ufs").json()
    assert ufs == {"total_disk": stats["total_disk"], "used_disk": 9, "disk_uf": stats["disk_uf"]}
    assert get(peer.url, "/xballs").json() == [{"bucket_id": "a", "key": "k9", "size": 2},
                                                {"bucket_id": "b", "key": "k1", "size": 4}]
    assert get(peer.url, "/xballs/size?include_disabled=true").json() == [
        ["a", "k9", 2], ["b", "k1", 4], ["b", "off", 3]]
    assert get(peer.url, "/balls/len").json() == {"len": 2}
    assert get(peer.url, "/balls/len?include_disabled=1").json() == {"len": 3}
    state = get(peer.url, "/peers/state").json()
    assert state["nodes"] == [{"node_id": "peer-a", "ip_addr": "127.0.0.1", "port": peer.port}]
    assert state["balls"] == {"a@k9": {"locations": ["peer-a"], "size": 2},
                              "b@k1": {"locations": ["peer-a"], "size": 4}}


def _node(server: ServerProcess, node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "disk": 100, "memory": 10, "ip_addr": "127.0.0.1", "port": server.port,
            "weight": 1.0, "used_disk": 0, "used_memory": 0, **extra}


def test_p19_nodes_persist_and_p12_replicate(tmp_path: Path) -> None:
    a = start_peer(tmp_path / "a", "peer-a")
    b = start_peer(tmp_path / "b", "peer-b")
    try:
        data = os.urandom(2_000_000)
        put(a.url, "b", "rep", data, tags={"x": "y"})
        assert_error(requests.post(f"{a.url}{API}/buckets/b/rep/replicate", timeout=TIMEOUT), 404, 666)
        registered = requests.post(f"{a.url}{API}/nodes", json=_node(b, "peer-b", protocol="http"), timeout=TIMEOUT)
        assert registered.status_code == 201
        assert registered.json() == _node(b, "peer-b")
        assert get(a.url, "/stats").json()["peers"] == ["peer-b"]
        a.restart()
        assert get(a.url, "/stats").json()["peers"] == ["peer-b"]  # persisted
        nodes = get(a.url, "/peers/state").json()["nodes"]
        assert {"node_id": "peer-b", "ip_addr": "127.0.0.1", "port": b.port} in nodes

        assert_error(requests.post(f"{a.url}{API}/buckets/b/rep/replicate?to=nobody", timeout=TIMEOUT), 404, 404)
        assert_error(requests.post(f"{a.url}{API}/buckets/b/none/replicate", timeout=TIMEOUT), 404, 404)
        response = requests.post(f"{a.url}{API}/buckets/b/rep/replicate?to=peer-b", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"peer_id", "replica_peer_id", "bucket_id", "key", "size", "ok", "response_time"}
        assert body["peer_id"] == "peer-a" and body["replica_peer_id"] == "peer-b" and body["ok"] is True
        assert body["size"] == len(data) and isinstance(body["response_time"], int)
        copy = get(b.url, "/buckets/b/rep")
        assert copy.content == data
        assert get(b.url, "/buckets/b/metadata/rep").json()["metadata"]["tags"] == {"x": "y"}
        # Again without `to`: the only node; the copy exists, so P1 answers exists:true.
        again = requests.post(f"{a.url}{API}/buckets/b/rep/replicate", timeout=TIMEOUT)
        assert again.status_code == 200 and again.json()["replica_peer_id"] == "peer-b"

        # A node that does not answer: 502/504.
        dead = _node(b, "peer-c")
        dead["port"] = 1
        assert requests.post(f"{a.url}{API}/nodes", json=dead, timeout=TIMEOUT).status_code == 201
        assert_error(requests.post(f"{a.url}{API}/buckets/b/rep/replicate?to=peer-c", timeout=TIMEOUT), 502, 504)
    finally:
        assert a.stop() == 0
        assert b.stop() == 0


def test_tasks_p20_p23(peer: ServerProcess) -> None:
    task = p1(peer.url, "b", "t1", b"abc").json()["task_id"]
    cancelled = requests.delete(f"{peer.url}{API}/tasks/{task}", timeout=TIMEOUT)
    assert cancelled.status_code == 204
    assert_error(requests.delete(f"{peer.url}{API}/tasks/{task}", timeout=TIMEOUT), 404, 404)
    assert_error(p3(peer.url, task, b"abc"), 404, 404)
    tasks = [p1(peer.url, "b", f"t{i}", b"abc").json()["task_id"] for i in range(3)]
    assert requests.delete(f"{peer.url}{API}/tasks", timeout=TIMEOUT).status_code == 204
    for task in tasks:
        assert_error(p3(peer.url, task, b"abc"), 404, 404)
    assert get(peer.url, "/balls/len").json() == {"len": 0}


def test_health_openapi_and_root_path(tmp_path: Path) -> None:
    server = start_peer(tmp_path / "p", "peer-r", "--root-path", "/mx/")
    try:
        for prefix in ("", "/mx"):
            health = requests.get(f"{server.url}{prefix}/health", timeout=TIMEOUT)
            assert health.status_code == 200 and health.json() == {"status": "ok", "peer_id": "peer-r"}
            doc = requests.get(f"{server.url}{prefix}/openapi.json", timeout=TIMEOUT).json()
            assert doc["openapi"].startswith("3.")
            put(server.url + prefix, "b", f"k{len(prefix)}", b"data")
            response = requests.get(f"{server.url}{prefix}{API}/buckets/b/k{len(prefix)}", timeout=TIMEOUT)
            assert response.content == b"data"
        paths = doc["paths"]
        assert {"/health", "/api/v4/stats", "/api/v4/buckets/data/{task_id}/chunked", "/api/v4/tasks/{task_id}",
                "/api/v4/buckets/{bucket_id}/metadata/{ball_id}/chunks"} <= set(paths)
        ids = {op["operationId"] for ops in paths.values() for op in ops.values()}
        assert ids == {f"P{i}" for i in range(1, 25)}  # P24: commit (docs/consistency.md §2.4)
        assert_error(requests.get(f"{server.url}/other{API}/stats", timeout=TIMEOUT), 404, 404)
    finally:
        assert server.stop() == 0


def test_environment_variables(tmp_path: Path) -> None:
    env = {"MICTLANX_PEER_ID": "env-peer", "MICTLANX_PEER_MAX_BALL_SIZE": "10", "MICTLANX_ROOT_PATH": "/r",
           "MICTLANX_PEER_CAPACITY": "1KB"}
    server = ServerProcess("peer", ["--data-dir", str(tmp_path / "d"), "--no-fsync"], env).start()
    try:
        assert requests.get(f"{server.url}/r/health", timeout=TIMEOUT).json()["peer_id"] == "env-peer"
        assert_error(p1(server.url, "b", "k", b"x" * 11), 413, 400)
        assert get(server.url, "/stats/ufs").json()["total_disk"] == 1000
    finally:
        assert server.stop() == 0


def test_route_precedence(peer: ServerProcess) -> None:
    # Bucket "data": POST /buckets/data/metadata is P1, and data/{key} is readable through P5.
    put(peer.url, "data", "size", b"in bucket data")
    assert get(peer.url, "/buckets/data/size").content == b"in bucket data"
    # GET /buckets/data/metadata/size is P4 for the key "size".
    assert get(peer.url, "/buckets/data/metadata/size").json()["metadata"]["key"] == "size"
    assert get(peer.url, "/buckets/data/size/size").json()["size"] == 14
    # Key "bid": P11 and P10 still work; DELETE /buckets/b/bid/x is P9.
    put(peer.url, "b", "bid", b"xyz")
    assert get(peer.url, "/buckets/b/bid/size").json()["size"] == 3
    assert requests.delete(f"{peer.url}{API}/buckets/b/bid/bid", timeout=TIMEOUT).json()["n_deletes"] == 1
    assert_error(get(peer.url, "/buckets/b/metadata/x/y/z"), 404, 404)
    assert_error(get(peer.url, "/nothing"), 404, 404)
    response = requests.put(f"{peer.url}{API}/stats", timeout=TIMEOUT)
    assert response.status_code == 405 and detail(response)["code"] == 400


def test_checksum_any_case_stored_lowercase(peer: ServerProcess) -> None:
    data = b"case"
    body = {"key": "cs", "size": len(data), "checksum": sha(data).upper(), "bucket_id": "b", "is_disabled": None}
    first = requests.post(f"{peer.url}{API}/buckets/b/metadata", json=body, timeout=TIMEOUT)
    assert first.status_code == 201, first.text
    assert p3(peer.url, first.json()["task_id"], data).status_code == 201
    meta = get(peer.url, "/buckets/b/metadata/cs").json()["metadata"]
    assert meta["checksum"] == sha(data) and meta["is_disabled"] is False
    assert meta["content_type"] == "application/octet-stream" and meta["ball_id"] == "cs"
