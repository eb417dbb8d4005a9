"""Bad input never stores anything and never yields a 5xx (protocol §2.2, §2.5, §2.6, §3.2).

Each case checks the status and the code; afterwards the listings and the files in the
data dir are unchanged.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

import pytest
import requests

from tests.functional.test_peer_server import (
    API,
    TIMEOUT,
    assert_error,
    data_files,
    listings,
    p1,
    p2,
    p3,
    put,
    sha,
)
from tests.support.servers import ServerProcess, start_peer

BAD_PATH_IDS = ["..%2Fx", "%2E%2E", "a%2Fb", "a%5Cb", "", "x" * 300, "a%00b", "a..b", "-x", "a%20b", "a@b"]
BAD_HEADER_TASK_IDS = ["../x", "a/b", "", "x" * 300, "metadata", "a b", "a.b"]
BAD_BODY_IDS = ["../x", "a/b", "", "x" * 300, "a\x00b", "metadata", "..", "a..b", "-x", 5, None]


class Raw:
    """Exact request bytes through ``http.client`` (no path normalisation, no re-quoting)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def __call__(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            payload = response.read()
            headers_out = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        assert response.status < 500, (method, path, response.status, payload)
        parsed = json.loads(payload) if payload and headers_out.get("content-type") == "application/json" else payload
        return response.status, headers_out, parsed


def _raw_error(result: tuple[int, dict[str, str], Any], status: int, code: int) -> None:
    got_status, _, body = result
    assert got_status == status, result
    assert isinstance(body, dict) and set(body) == {"detail"} and body["detail"]["code"] == code, result


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    data_dir = tmp_path_factory.mktemp("invalid") / "peer"
    server = start_peer(data_dir, "peer-i")
    try:
        put(server.url, "b", "k1", b"first ball", ball_id="g")
        put(server.url, "b", "k2", b"second ball", ball_id="g")
        put(server.url, "b", "off", b"disabled", is_disabled=True)
        put(server.url, "data", "x", b"in bucket data")
        yield server, data_dir
    finally:
        assert server.stop() == 0


@pytest.fixture
def peer(seeded: tuple[ServerProcess, Path]) -> Iterator[ServerProcess]:
    """The seeded peer; checks after the test that nothing changed."""
    server, data_dir = seeded
    before_listings, before_files = listings(server.url), data_files(data_dir)
    yield server
    requests.delete(f"{server.url}{API}/tasks", timeout=TIMEOUT).close()
    assert listings(server.url) == before_listings
    assert data_files(data_dir) == before_files
    assert not any((data_dir / "tmp").iterdir())


PATH_TEMPLATES = [
    ("POST", "/buckets/{}/metadata"),
    ("GET", "/buckets/{}/metadata/k1"), ("GET", "/buckets/b/metadata/{}"),
    ("GET", "/buckets/{}/k1"), ("GET", "/buckets/b/{}"),
    ("GET", "/buckets/{}/metadata"),
    ("GET", "/buckets/{}/metadata/g/group"), ("GET", "/buckets/b/metadata/{}/group"),
    ("GET", "/buckets/b/metadata/{}/chunks"),
    ("DELETE", "/buckets/{}/k1"), ("DELETE", "/buckets/b/{}"),
    ("DELETE", "/buckets/{}/bid/g"), ("DELETE", "/buckets/b/bid/{}"),
    ("POST", "/buckets/{}/k1/disable"), ("POST", "/buckets/b/{}/disable"),
    ("GET", "/buckets/{}/k1/size"), ("GET", "/buckets/b/{}/size"),
    ("POST", "/buckets/{}/k1/replicate"), ("POST", "/buckets/b/{}/replicate"),
    ("POST", "/buckets/data/{}"), ("POST", "/buckets/data/{}/chunked"),
    ("DELETE", "/tasks/{}"),
]


@pytest.mark.parametrize("method,template", PATH_TEMPLATES)
def test_invalid_path_ids(peer: ServerProcess, method: str, template: str) -> None:
    raw = Raw(peer.url)
    body = json.dumps({"key": "k9", "size": 1, "checksum": sha(b"x")}).encode()
    for bad in BAD_PATH_IDS:
        if "/buckets/data/" in template or template.startswith("/tasks"):
            if bad in ("a..b", "-x"):
                continue  # valid task ids
        if template.startswith("/tasks") and bad == "":
            continue  # DELETE /tasks/ is not a route
        path = API + template.format(bad)
        _raw_error(raw(method, path, body if method == "POST" else None), 400, 400)
        status, _, answer = raw(method, "/mx" + path)  # no root path configured: never served
        assert status in (400, 404) and answer["detail"]["code"] == status


@pytest.mark.parametrize("method,template", [
    ("GET", "/buckets/b/metadata/{}"), ("GET", "/buckets/b/metadata/{}/group"),
    ("GET", "/buckets/b/metadata/{}/chunks"), ("DELETE", "/buckets/b/bid/{}"), ("DELETE", "/tasks/{}"),
    ("POST", "/buckets/b/{}/disable"), ("DELETE", "/buckets/b/{}"), ("POST", "/buckets/data/{}/chunked"),
])
def test_reserved_metadata_in_id_positions(peer: ServerProcess, method: str, template: str) -> None:
    status, _, body = Raw(peer.url)(method, API + template.format("metadata"))
    assert status in (400, 405) and body["detail"]["code"] == 400, (status, body)


def test_invalid_header_values(peer: ServerProcess) -> None:
    for bad in BAD_HEADER_TASK_IDS:
        assert_error(p1(peer.url, "b", "new", b"x", headers={"Task-Id": bad}), 400, 400)
        response = requests.delete(f"{peer.url}{API}/buckets/b/k1", headers={"Task-Id": bad}, timeout=TIMEOUT)
        assert_error(response, 400, 400)
    for header in ("Update",):
        for bad in ("yes", "2", "", "on", "truee"):
            assert_error(p1(peer.url, "b", "new", b"x", headers={header: bad}), 400, 400)
    for bad in ("maybe", "-1"):
        assert_error(requests.delete(f"{peer.url}{API}/buckets/b/k1", headers={"Force": bad}, timeout=TIMEOUT),
                     400, 400)
    for bad in ("abc", sha(b"x"), '"' + "g" * 64 + '"', f'"{sha(b"x")}", "{sha(b"y")}"', "*"):
        assert_error(requests.delete(f"{peer.url}{API}/buckets/b/k1", headers={"If-Match": bad}, timeout=TIMEOUT),
                     400, 400)


def test_invalid_query_values(peer: ServerProcess) -> None:
    def get(path: str, **params: str) -> requests.Response:
        return requests.get(f"{peer.url}{API}{path}", params=params, timeout=TIMEOUT)

    for path in ("/buckets/b/metadata", "/stats", "/xballs", "/xballs/size", "/balls/len", "/peers/state",
                 "/buckets/b/metadata/g/group", "/buckets/b/metadata/g/chunks"):
        for bad in ("yes", "2", ""):
            assert_error(get(path, include_disabled=bad), 400, 400)
    for path in ("/buckets/b/metadata", "/stats", "/xballs", "/xballs/size", "/peers/state"):
        assert_error(get(path, start="-1"), 400, 400)
        assert_error(get(path, start="abc"), 400, 400)
        assert_error(get(path, end="1.5"), 400, 400)
    for bad in ("a/b", "../x", "x" * 300, "a\x00b", "-x"):
        assert_error(get("/buckets/b/metadata", after=bad), 400, 400)
    for bad in ("nokey", "b@", "@k", "a/b@k", "b@k/x", "b@k@z"):
        assert_error(get("/xballs", after=bad), 400, 400)
        assert_error(get("/xballs/size", after=bad), 400, 400)
    for bad in ("a/b", "", "x" * 300):
        response = requests.post(f"{peer.url}{API}/buckets/b/k1/replicate", params={"to": bad}, timeout=TIMEOUT)
        assert_error(response, 400, 400)


def _p1_raw(peer: ServerProcess, body: Any, bucket: str = "b") -> requests.Response:
    return requests.post(f"{peer.url}{API}/buckets/{bucket}/metadata", json=body, timeout=TIMEOUT)


def test_invalid_json_bodies(peer: ServerProcess) -> None:
    good = {"key": "new", "size": 1, "checksum": sha(b"x")}
    for raw_body in (b"not json", b"{", b"", b"\xff\xfe"):
        response = requests.post(f"{peer.url}{API}/buckets/b/metadata", data=raw_body,
                                 headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        found = assert_error(response, 422, 400)
        assert isinstance(found["errors"], list) and found["errors"][0]["loc"]
    cases: list[dict[str, Any]] = [
        {"size": 1, "checksum": sha(b"x")}, {"key": "new", "checksum": sha(b"x")}, {"key": "new", "size": 1},
        {**good, "size": "1"}, {**good, "size": -1}, {**good, "size": 1.5}, {**good, "size": True},
        {**good, "checksum": "abc"}, {**good, "checksum": "g" * 64}, {**good, "checksum": 5},
        {**good, "tags": {"a": 1}}, {**good, "tags": ["a"]}, {**good, "tags": {"": "v"}},
        {**good, "content_type": "no-slash"}, {**good, "content_type": "a/b\n"}, {**good, "content_type": 7},
        {**good, "is_disabled": "yes"}, {**good, "is_disable": 1}, {**good, "producer_id": "p" * 300},
        {**good, "bucket_id": 5},
    ]
    for bad in BAD_BODY_IDS:
        cases.append({**good, "key": bad})
        if bad is not None:
            cases.append({**good, "ball_id": bad})
    for body in cases:
        found = assert_error(_p1_raw(peer, body), 422, 400)
        assert found["errors"] and found["errors"][0]["type"], body
    for wrong in ([good], "string", 5, None):
        assert_error(_p1_raw(peer, wrong), 422, 400)
    assert_error(_p1_raw(peer, {**good, "bucket_id": "other"}), 400, 400)
    assert_error(_p1_raw(peer, {**good, "bucket_id": "a/b"}), 400, 400)
    assert_error(_p1_raw(peer, {**good, "tags": {f"t{i}": "v" * 100 for i in range(700)}}), 413, 400)
    for nested in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = requests.post(f"{peer.url}{API}/buckets/b/metadata", data=nested, timeout=TIMEOUT)
        assert_error(response, 422, 400)
    assert_error(_p1_raw(peer, {**good, "size": 10**50}), 413, 400)
    big = b'{"key":"new","size":1,"checksum":"' + b"0" * (1024 * 1024) + b'"}'
    assert_error(requests.post(f"{peer.url}{API}/buckets/b/metadata", data=big, timeout=TIMEOUT), 413, 400)


def test_invalid_node_bodies(peer: ServerProcess) -> None:
    good = {"id": "n1", "disk": 1, "memory": 1, "ip_addr": "127.0.0.1", "port": 9, "weight": 1.0,
            "used_disk": 0, "used_memory": 0}
    cases: list[Any] = [[good], "x", {**good, "port": "9"}, {**good, "port": 0}, {**good, "weight": "w"},
                        {**good, "protocol": "ftp"}, {**good, "ip_addr": "a/b"}]
    cases += [{k: v for k, v in good.items() if k != name} for name in good]
    cases += [{**good, "id": bad} for bad in BAD_BODY_IDS if bad != "metadata"]
    for body in cases:
        response = requests.post(f"{peer.url}{API}/nodes", json=body, timeout=TIMEOUT)
        assert_error(response, 422, 400)
    for raw_body in (b"[", b'{"id": "n1", "weight": NaN}', b"[" * 100_000):
        response = requests.post(f"{peer.url}{API}/nodes", data=raw_body, timeout=TIMEOUT)
        assert_error(response, 422, 400)
    nan = json.dumps({**good, "weight": float("nan")}).encode()
    assert_error(requests.post(f"{peer.url}{API}/nodes", data=nan, timeout=TIMEOUT), 422, 400)
    assert requests.get(f"{peer.url}{API}/stats", timeout=TIMEOUT).json()["peers"] == []


def test_bad_ranges(peer: ServerProcess) -> None:
    url = f"{peer.url}{API}/buckets/b/k1"
    for ignored in ("bytes=1-2,4-5", "bytes=abc", "items=0-1", "bytes=5-1", "bytes=-", "bytes 0-1"):
        response = requests.get(url, headers={"Range": ignored}, timeout=TIMEOUT)
        assert response.status_code == 200 and response.content == b"first ball", ignored
    for unsatisfiable in ("bytes=10-", "bytes=100-200", "bytes=-0"):
        response = requests.get(url, headers={"Range": unsatisfiable}, timeout=TIMEOUT)
        assert_error(response, 416, 400)
        assert response.headers["Content-Range"] == "bytes */10"


def test_integrity_failures(peer: ServerProcess) -> None:
    data = b"0123456789" * 1000
    cases = [data[:-1], data + b"x", b"x" * len(data), b"", data * 3]
    for body in cases:
        task = p1(peer.url, "b", "new", data).json()["task_id"]
        found = assert_error(p3(peer.url, task, body), 400, 501)
        assert found["expected_size"] == len(data) and found["expected_checksum"] == sha(data)
        if len(body) <= len(data):
            assert found["received_size"] == len(body)
            assert found["received_checksum"] == sha(body)
        else:
            assert len(data) < found["received_size"] <= len(body)
        assert_error(p3(peer.url, task, data), 404, 404)  # the task ended with the failure
    for body in cases:
        task = p1(peer.url, "b", "new", data).json()["task_id"]
        assert_error(p2(peer.url, task, body), 400, 501)
    # A chunked body that is too long is drained, then answered.
    task = p1(peer.url, "b", "new", data).json()["task_id"]
    assert_error(p3(peer.url, task, (data for _ in range(3))), 400, 501)


def test_unknown_and_reused_tasks(peer: ServerProcess) -> None:
    for path in ("/buckets/data/nope/chunked", "/buckets/data/nope"):
        response = requests.post(f"{peer.url}{API}{path}", data=b"abc", timeout=TIMEOUT)
        assert_error(response, 404, 404)
    task = p1(peer.url, "b", "k1", b"first ball").json()  # exists:true, nothing changes
    assert task["exists"] is True
    assert p3(peer.url, task["task_id"], b"first ball").status_code == 201
    assert_error(p3(peer.url, task["task_id"], b"first ball"), 404, 404)  # reused


def test_bad_multipart(peer: ServerProcess) -> None:
    data = b"abc"
    task = p1(peer.url, "b", "new", data).json()["task_id"]
    response = requests.post(f"{peer.url}{API}/buckets/data/{task}", files={"other": ("f", data)}, timeout=TIMEOUT)
    assert_error(response, 422, 400)
    task = p1(peer.url, "b", "new", data).json()["task_id"]
    response = requests.post(f"{peer.url}{API}/buckets/data/{task}", data=data,
                             headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    assert_error(response, 422, 400)
    task = p1(peer.url, "b", "new", data).json()["task_id"]
    response = requests.post(f"{peer.url}{API}/buckets/data/{task}", data=b"--xyz\r\ngarbage",
                             headers={"Content-Type": "multipart/form-data; boundary=xyz"}, timeout=TIMEOUT)
    assert_error(response, 422, 400)


def test_expired_task(tmp_path: Path) -> None:
    server = start_peer(tmp_path / "p", "peer-e", "--task-ttl", "0.3", "--exists-ttl", "0.3", "--capacity", "100")
    try:
        before = listings(server.url)
        task = p1(server.url, "b", "k", b"abc").json()["task_id"]
        time.sleep(0.6)
        assert_error(p3(server.url, task, b"abc"), 404, 404)
        assert_error(requests.delete(f"{server.url}{API}/tasks/{task}", timeout=TIMEOUT), 404, 404)
        assert p1(server.url, "b", "k", b"x" * 60).status_code == 201
        assert_error(p1(server.url, "b", "k2", b"x" * 60), 507, 502)
        time.sleep(0.6)  # the expired task's reservation is released
        assert p1(server.url, "b", "k2", b"x" * 60).status_code == 201
        requests.delete(f"{server.url}{API}/tasks", timeout=TIMEOUT).close()
        assert listings(server.url) == before
        assert data_files(tmp_path / "p") == set()
    finally:
        assert server.stop() == 0


def test_unknown_task_with_large_body_gets_typed_404(peer: ServerProcess) -> None:
    body = b"z" * (16 * 1024 * 1024)
    assert_error(p3(peer.url, "unknown-task", body), 404, 404)
    assert_error(requests.post(f"{peer.url}{API}/buckets/data/unknown-task", files={"data": ("f", body)},
                               timeout=TIMEOUT), 404, 404)
