"""Peer semantics: existing-key rules, preconditions, capacity, disabled balls, paging, Range."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.functional.test_peer_server import (
    API,
    TIMEOUT,
    assert_error,
    data_files,
    get,
    p1,
    p3,
    put,
    running_peer,
    sha,
)
from tests.support.servers import ServerProcess, start_peer


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_peer(tmp_path / "peer") as server:
        yield server


@pytest.fixture
def peer_dir(peer: ServerProcess, tmp_path: Path) -> Path:
    return tmp_path / "peer"


def _meta(server: ServerProcess, bucket: str, key: str) -> dict[str, Any]:
    response = get(server.url, f"/buckets/{bucket}/metadata/{key}")
    assert response.status_code == 200, response.text
    return response.json()["metadata"]


def _delete(server: ServerProcess, key: str, **headers: str) -> requests.Response:
    return requests.delete(f"{server.url}{API}/buckets/b/{key}", headers=headers, timeout=TIMEOUT)


def test_existing_key_rules(peer: ServerProcess, peer_dir: Path) -> None:
    old, new = b"old content", b"new content!"
    first = put(peer.url, "b", "k", old, tags={"v": "1"})
    assert first["exists"] is False
    # Same content, no Update: exists:true, nothing changes.
    same = p1(peer.url, "b", "k", old, tags={"v": "2"})
    assert same.status_code == 201 and same.json()["exists"] is True
    assert _meta(peer, "b", "k")["tags"] == {"v": "1"}
    assert p3(peer.url, same.json()["task_id"], old).status_code == 201  # verified, discarded
    # Same content, Update: metadata replaced at once (before any phase 2).
    updated = p1(peer.url, "b", "k", old, headers={"Update": "1"}, tags={"v": "3"}, content_type="text/plain",
                 producer_id="p", ball_id="grp", is_disabled=False)
    assert updated.json()["exists"] is True
    meta = _meta(peer, "b", "k")
    assert (meta["tags"], meta["content_type"], meta["producer_id"], meta["ball_id"]) == (
        {"v": "3"}, "text/plain", "p", "grp")
    assert_error(p3(peer.url, updated.json()["task_id"], b"wrong"), 400, 501)
    assert _meta(peer, "b", "k")["tags"] == {"v": "3"}
    # The version still belongs to the first task (a metadata change keeps it).
    assert_error(_delete(peer, "k", **{"Task-Id": updated.json()["task_id"]}), 412, 405)
    # Different content, no Update: 409/405.
    conflict = assert_error(p1(peer.url, "b", "k", new), 409, 405)
    assert conflict["bucket_id"] == "b" and conflict["key"] == "k"
    # Different content, Update: old stays visible until the commit, then is replaced.
    replacing = p1(peer.url, "b", "k", new, headers={"Update": "true"}, tags={"v": "4"})
    assert replacing.json()["exists"] is False
    assert get(peer.url, "/buckets/b/k").content == old
    assert p3(peer.url, replacing.json()["task_id"], new).status_code == 201
    assert get(peer.url, "/buckets/b/k").content == new
    assert _meta(peer, "b", "k")["tags"] == {"v": "4"}
    assert len(data_files(peer_dir)) == 1  # the old version file is gone
    assert get(peer.url, "/stats").json()["used_disk"] == len(new)


def test_task_id_header_and_delete_preconditions(peer: ServerProcess) -> None:
    data = b"precondition"
    first = p1(peer.url, "b", "k", data, headers={"Task-Id": "group-1"})
    assert first.status_code == 201 and first.json()["task_id"] == "group-1"
    assert_error(p1(peer.url, "b", "other", b"x", headers={"Task-Id": "group-1"}), 409, 405)
    assert p3(peer.url, "group-1", data).status_code == 201
    assert_error(_delete(peer, "k", **{"If-Match": f'"{sha(b"other")}"'}), 412, 405)
    assert_error(_delete(peer, "k", **{"Task-Id": "group-2"}), 412, 405)
    assert get(peer.url, "/buckets/b/k").content == data  # nothing deleted
    response = _delete(peer, "k", **{"If-Match": f'"{sha(data).upper()}"', "Task-Id": "group-1"})
    assert response.status_code == 200 and response.headers["ETag"] == f'"{sha(data)}"'
    # A finished task id can be used again.
    again = p1(peer.url, "b", "k", data, headers={"Task-Id": "group-1"})
    assert again.status_code == 201 and p3(peer.url, "group-1", data).status_code == 201
    assert _delete(peer, "k", **{"Task-Id": "group-1"}).status_code == 200
    # Pending tasks are not affected by P8.
    pending = p1(peer.url, "b", "k", data).json()["task_id"]
    assert_error(_delete(peer, "k"), 404, 404)
    assert p3(peer.url, pending, data).status_code == 201


def test_commit_recheck(peer: ServerProcess) -> None:
    one, two = b"version one", b"version two"
    task_one = p1(peer.url, "b", "race", one).json()
    task_two = p1(peer.url, "b", "race", two).json()
    assert task_one["exists"] is task_two["exists"] is False
    assert p3(peer.url, task_one["task_id"], one).status_code == 201
    found = assert_error(p3(peer.url, task_two["task_id"], two), 409, 405)
    assert found["key"] == "race"
    assert get(peer.url, "/buckets/b/race").content == one
    # Same content committed meanwhile: success, the first commit stays.
    a = p1(peer.url, "b", "same", one, tags={"n": "a"}).json()["task_id"]
    b = p1(peer.url, "b", "same", one, tags={"n": "b"}).json()["task_id"]
    assert p3(peer.url, a, one).status_code == 201
    assert p3(peer.url, b, one).status_code == 201
    assert _meta(peer, "b", "same")["tags"] == {"n": "a"}
    # With Update the later commit replaces.
    c = p1(peer.url, "b", "race", two, headers={"Update": "1"}).json()["task_id"]
    d = p1(peer.url, "b", "race", b"third", headers={"Update": "1"}).json()["task_id"]
    assert p3(peer.url, c, two).status_code == 201
    assert p3(peer.url, d, b"third").status_code == 201
    assert get(peer.url, "/buckets/b/race").content == b"third"


def test_capacity_and_max_ball_size(tmp_path: Path) -> None:
    server = start_peer(tmp_path / "p", "peer-c", "--capacity", "100", "--max-ball-size", "80")
    try:
        assert_error(p1(server.url, "b", "huge", b"x" * 81), 413, 400)
        first = p1(server.url, "b", "a", b"a" * 60).json()["task_id"]
        assert_error(p1(server.url, "b", "b", b"b" * 60), 507, 502)  # 60 reserved + 60 > 100
        assert requests.delete(f"{server.url}{API}/tasks/{first}", timeout=TIMEOUT).status_code == 204
        put(server.url, "b", "b", b"b" * 60)
        assert_error(p1(server.url, "b", "c", b"c" * 41), 507, 502)  # 60 used + 41 > 100
        put(server.url, "b", "c", b"c" * 40)
        same = p1(server.url, "b", "b", b"b" * 60)  # exists:true reserves nothing
        assert same.status_code == 201 and same.json()["exists"] is True
        ufs = get(server.url, "/stats/ufs").json()
        assert ufs == {"total_disk": 100, "used_disk": 100, "disk_uf": 1.0}
        stats = get(server.url, "/stats").json()
        assert stats["available_disk"] == 0
        assert _delete(server, "b").status_code == 200
        put(server.url, "b", "d", b"d" * 60)
    finally:
        assert server.stop() == 0


def test_disabled_balls(peer: ServerProcess) -> None:
    data = b"hidden"
    put(peer.url, "b", "off", data, is_disable=True, ball_id="g")
    put(peer.url, "b", "on", b"shown", ball_id="g")
    assert_error(get(peer.url, "/buckets/b/off"), 404, 404)
    assert _meta(peer, "b", "off")["is_disabled"] is True
    assert get(peer.url, "/buckets/b/off/size").json()["size"] == len(data)
    keys = [m["key"] for m in get(peer.url, "/buckets/b/metadata").json()["balls"]]
    assert keys == ["on"]
    keys = [m["key"] for m in get(peer.url, "/buckets/b/metadata?include_disabled=True").json()["balls"]]
    assert keys == ["off", "on"]
    assert [m["key"] for m in get(peer.url, "/buckets/b/metadata/g/chunks").json()] == ["on"]
    assert get(peer.url, "/buckets/b/metadata/g/group?include_disabled=1").json()["size"] == 11
    assert [x[1] for x in get(peer.url, "/xballs/size").json()] == ["on"]
    assert list(get(peer.url, "/peers/state").json()["balls"]) == ["b@on"]
    # is_disabled wins over is_disable; re-enable with Update: 1.
    enabled = p1(peer.url, "b", "off", data, headers={"Update": "1"}, is_disabled=False, is_disable=True,
                 ball_id="g")
    assert enabled.json()["exists"] is True
    assert get(peer.url, "/buckets/b/off").content == data
    assert requests.post(f"{peer.url}{API}/buckets/b/on/disable", timeout=TIMEOUT).status_code == 204
    assert_error(get(peer.url, "/buckets/b/on"), 404, 404)
    assert get(peer.url, "/balls/len").json() == {"len": 1}
    deleted = requests.delete(f"{peer.url}{API}/buckets/b/bid/g", timeout=TIMEOUT).json()
    assert deleted["n_deletes"] == 2


def test_pagination(peer: ServerProcess) -> None:
    keys = ["B", "a", "a-b", "a.b", "a0", "a_b", "b", "k1", "k10", "k2"]
    for key in keys:
        put(peer.url, "b", key, key.encode())
    put(peer.url, "a", "z", b"z")
    put(peer.url, "c", "a", b"a")
    ordered = sorted(keys)

    def page(query: str) -> list[str]:
        response = get(peer.url, f"/buckets/b/metadata?{query}")
        assert response.status_code == 200, response.text
        return [m["key"] for m in response.json()["balls"]]

    assert page("") == ordered
    assert page("start=2&end=5") == ordered[2:5]
    assert page("start=3") == ordered[3:]
    assert page("end=0") == ordered and page("end=-4") == ordered
    assert page("start=5&end=5") == [] and page("start=6&end=2") == []
    assert page("start=100") == []
    assert page("after=a.b") == ordered[ordered.index("a.b") + 1:]
    assert page("after=a.c&start=1&end=3") == [k for k in ordered if k > "a.c"][1:3]
    assert page("after=zzz") == []
    pairs = [[b, k] for b, k, _ in get(peer.url, "/xballs/size").json()]
    assert pairs == [["a", "z"], *[["b", k] for k in ordered], ["c", "a"]]
    after = get(peer.url, "/xballs?after=b@k1&end=2").json()
    assert [(x["bucket_id"], x["key"]) for x in after] == [("b", "k10"), ("b", "k2")]
    assert [x[:2] for x in get(peer.url, "/xballs/size?after=b@zz").json()] == [["c", "a"]]
    assert len(get(peer.url, "/peers/state?start=1&end=3").json()["balls"]) == 2
    stats = get(peer.url, "/stats?start=10").json()
    assert [(m["bucket_id"], m["key"]) for m in stats["balls"]] == [("b", "k2"), ("c", "a")]


def test_stats_default_end_is_100(peer: ServerProcess) -> None:
    for i in range(103):
        assert p1(peer.url, "b", f"k{i:03d}", b"").status_code == 201
    assert requests.delete(f"{peer.url}{API}/tasks", timeout=TIMEOUT).status_code == 204
    for i in range(103):
        put(peer.url, "b", f"k{i:03d}", b"")
    assert len(get(peer.url, "/stats").json()["balls"]) == 100
    assert len(get(peer.url, "/stats?end=0").json()["balls"]) == 103
    assert len(get(peer.url, "/buckets/b/metadata").json()["balls"]) == 103


def test_ranges(peer: ServerProcess) -> None:
    data = bytes(range(256)) * 8000  # 2,048,000 bytes: more than one streamed piece
    put(peer.url, "b", "r", data)
    put(peer.url, "b", "zero", b"")
    size = len(data)
    cases = {"bytes=0-0": (0, 0), "bytes=10-19": (10, 19), "bytes=5-": (5, size - 1),
             f"bytes=100-{size * 2}": (100, size - 1), "bytes=-7": (size - 7, size - 1),
             f"bytes=-{size + 10}": (0, size - 1), f"bytes={size - 1}-": (size - 1, size - 1),
             "bytes=1000-1500000": (1000, 1500000)}
    for header, (first, last) in cases.items():
        response = get(peer.url, "/buckets/b/r", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == data[first:last + 1], header
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert response.headers["Content-Length"] == str(last - first + 1)
        assert response.headers["ETag"] == f'"{sha(data)}"'
    for header in ("bytes=0-0", "bytes=-1", "bytes=0-"):
        response = get(peer.url, "/buckets/b/zero", headers={"Range": header})
        assert_error(response, 416, 400)
        assert response.headers["Content-Range"] == "bytes */0"


def test_read_completes_while_replaced_and_deleted(peer: ServerProcess) -> None:
    old = os.urandom(24 * 1024 * 1024)
    new = os.urandom(1024)
    put(peer.url, "b", "live", old)
    with requests.get(f"{peer.url}{API}/buckets/b/live", stream=True, timeout=TIMEOUT) as response:
        head = response.raw.read(65536)
        put(peer.url, "b", "live", new, headers={"Update": "1"})
        assert get(peer.url, "/buckets/b/live").content == new
        assert head + response.raw.read() == old
    put(peer.url, "b", "gone", old)
    with requests.get(f"{peer.url}{API}/buckets/b/gone", stream=True, timeout=TIMEOUT) as response:
        head = response.raw.read(65536)
        assert _delete(peer, "gone").status_code == 200
        assert head + response.raw.read() == old


def test_client_disconnect_stores_nothing(peer: ServerProcess, peer_dir: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    task = p1(peer.url, "b", "cut", data).json()["task_id"]
    sock = socket.create_connection(("127.0.0.1", peer.port or 0), timeout=TIMEOUT)
    try:
        sock.sendall(f"POST {API}/buckets/data/{task}/chunked HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:1_500_000])
        time.sleep(0.2)
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while any((peer_dir / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any((peer_dir / "tmp").iterdir())
    assert_error(get(peer.url, "/buckets/b/metadata/cut"), 404, 404)
    assert_error(p3(peer.url, task, data), 404, 404)  # the task ended with its request
    assert data_files(peer_dir) == set()


def test_drain_gives_typed_error_on_large_bad_body(peer: ServerProcess) -> None:
    data = os.urandom(8 * 1024 * 1024)
    task = p1(peer.url, "b", "big", data).json()["task_id"]
    bad = bytearray(data)
    bad[0] ^= 1
    found = assert_error(p3(peer.url, task, bytes(bad)), 400, 501)
    assert found["received_size"] == len(data) and found["received_checksum"] == sha(bytes(bad))
    task = p1(peer.url, "b", "big", data).json()["task_id"]
    found = assert_error(p3(peer.url, task, data[:-1024]), 400, 501)  # short: drained and answered
    assert found["received_size"] == len(data) - 1024
    # Nothing pending: the ball was never stored.
    assert_error(get(peer.url, "/buckets/b/metadata/big"), 404, 404)


def test_memory_does_not_grow_with_ball_size(peer: ServerProcess) -> None:
    piece = os.urandom(1024 * 1024)
    count = 256
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(piece)
    body = {"key": "huge", "size": count * len(piece), "checksum": digest.hexdigest()}
    baseline = peer.rss_bytes()
    task = requests.post(f"{peer.url}{API}/buckets/b/metadata", json=body, timeout=TIMEOUT).json()["task_id"]
    assert p3(peer.url, task, (piece for _ in range(count))).status_code == 201
    task = requests.post(f"{peer.url}{API}/buckets/b/metadata", json={**body, "key": "huge2"},
                         timeout=TIMEOUT).json()["task_id"]
    files = {"data": ("f", piece * count)}  # the client holds the body; the server must not
    response = requests.post(f"{peer.url}{API}/buckets/data/{task}", files=files, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    received = hashlib.sha256()
    with requests.get(f"{peer.url}{API}/buckets/b/huge", stream=True, timeout=TIMEOUT) as download:
        for chunk in download.iter_content(1024 * 1024):
            received.update(chunk)
    assert received.hexdigest() == digest.hexdigest()
    assert peer.rss_bytes() - baseline < 64 * 1024 * 1024

