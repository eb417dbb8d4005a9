"""Issue 13's fast paths (docs/protocol-extensions.md): small objects in fewer requests.

Inline reads (R3/P4 with ``Mictlanx-Inline-Max``) and inline writes (R5/P1 with
``data_base64``): how many requests each operation makes, that every byte is still verified
(a corrupt inline copy fails over), that bad input changes nothing, and that the client and
the router fall back to the plain protocol against servers without the extensions.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.protocol.errors import AlreadyExistsError
from mictlanx_sync.protocol.inline import IF_ABSENT_HEADER, INLINE_CAP, INLINE_FIELD, INLINE_MAX_HEADER

from .client_support import (
    P5_GET_DATA,
    R5_PUT_METADATA,
    R7_PUT_DATA,
    Cluster,
    FailFirst,
    new_client,
    sha256,
)

pytestmark = pytest.mark.timeout(120)
R3_METADATA = r"/api/v4/buckets/[^/]+/metadata/[^/]+"
R26_COMMIT = r"/api/v4/buckets/[^/]+/[^/]+/commit"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(peers=3, routers=1) as instance:
        yield instance


@pytest.fixture()
def client(cluster: Cluster, tmp_path: Path) -> Iterator[Client]:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as instance:
        yield instance


def _router_requests(cluster: Cluster) -> list[tuple[str, str]]:
    return [(s.method, s.path) for s in cluster.log.select(server="mictlanx-router")]


def _kinds(cluster: Cluster) -> list[str]:
    """The router requests of the log, named by endpoint."""
    names = []
    for method, path in _router_requests(cluster):
        for name, verb, pattern in (("R3", "GET", R3_METADATA), ("R5", "POST", R5_PUT_METADATA),
                                    ("R7", "POST", R7_PUT_DATA), ("R26", "POST", R26_COMMIT),
                                    ("R11", "GET", P5_GET_DATA)):
            if method == verb and re.fullmatch(pattern, path):
                names.append(name)
                break
        else:
            names.append(f"{method} {path}")
    return names


def _peer_url(cluster: Cluster, peer_id: str) -> str:
    return next(p.url for p in cluster.peers if p.server_id == peer_id)


# --- how many requests ----------------------------------------------------------------------
def test_small_objects_take_one_request_each(cluster: Cluster, client: Client) -> None:
    data = os.urandom(1024)
    cluster.log.clear()
    assert client.put("fast", "small", data).unwrap()
    assert _kinds(cluster) == ["R5"]  # the bytes and the create-only check (Mictlanx-If-Absent) in one
    cluster.log.clear()
    assert client.put("fast", "small", data).unwrap()  # the same again: identical, nothing written
    assert _kinds(cluster) == ["R5"]
    assert cluster.stored_versions(cluster.holders("fast", "small_0")[0], "fast", "small_0") == 1
    cluster.log.clear()
    got = client.get("fast", "small").unwrap()
    assert got.data.tobytes() == data and got.metadatas[0].checksum == sha256(data)
    assert _kinds(cluster) == ["R3"]
    cluster.log.clear()
    other = os.urandom(1000)
    assert client.put("fast", "small", other, update=True).unwrap()
    assert _kinds(cluster) == ["R3", "R5"]  # one chunk over one chunk: no R26 to send
    assert client.get("fast", "small").unwrap().data.tobytes() == other
    out = client.get_to_file("fast", "small", str(cluster.data_dir / "out"), fullname="small.bin").unwrap()
    assert Path(out).read_bytes() == other


def test_objects_above_the_limit_keep_the_two_phase_protocol(cluster: Cluster, client: Client) -> None:
    data = os.urandom(3 * 100_000)
    cluster.log.clear()
    assert client.put("fast", "large", data, chunk_size=100_000).unwrap()
    kinds = _kinds(cluster)
    assert kinds.count("R5") == 3 and kinds.count("R7") == 3 and kinds.count("R26") == 1
    cluster.log.clear()
    assert client.get("fast", "large").unwrap().data.tobytes() == data
    assert _kinds(cluster).count("R11") == 3
    # One small chunk over an object of three: R26 retires the old chunks 1 and 2.
    cluster.log.clear()
    assert client.put("fast", "large", b"tiny", update=True).unwrap()
    assert _kinds(cluster) == ["R3", "R5", "R26"]
    assert client.get("fast", "large").unwrap().data.tobytes() == b"tiny"


def test_small_creates_keep_the_create_only_rules(cluster: Cluster, client: Client) -> None:
    first = os.urandom(3000)
    assert client.put("fast", "once", first).unwrap()
    holder = cluster.holders("fast", "once_0")[0]
    refused = client.put("fast", "once", os.urandom(3000))
    assert type(refused.unwrap_err()) is AlreadyExistsError
    assert "use update=True" in refused.unwrap_err().message
    assert client.get("fast", "once").unwrap().data.tobytes() == first
    assert cluster.stored_versions(holder, "fast", "once_0") == 1  # nothing written
    # The same content stored in three chunks: the router answers "identical, 3 chunks" and
    # the client checks the stored object is whole (R3, R12) before calling it stored.
    assert client.put("fast", "in-three", first, chunk_size=1000).unwrap()
    cluster.log.clear()
    assert client.put("fast", "in-three", first).unwrap()
    kinds = _kinds(cluster)
    assert kinds[0] == "R5" and "R7" not in kinds and kinds.count("R5") == 1, kinds


def test_a_create_after_a_newer_delete_is_ordered_after_it(cluster: Cluster, client: Client) -> None:
    """A delete stamped ahead of this writer's clock (another writer's clock leads): the router
    names the tombstone, the client orders its create after it, and the object is visible."""
    assert client.put("fast", "reborn", b"old").unwrap()
    ahead = f"{int(time.time() * 1000 + 3_600_000) << 16:016x}-leading"
    resp = requests.delete(f"{cluster.routers[0].url}/api/v4/buckets/fast/bid/reborn",
                           headers={"Mictlanx-Version": ahead}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert client.get("fast", "reborn").is_err
    assert client.put("fast", "reborn", b"new").unwrap()
    assert client.get("fast", "reborn").unwrap().data.tobytes() == b"new"


def test_inline_max_zero_turns_the_fast_paths_off(cluster: Cluster, tmp_path: Path) -> None:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", inline_max=0) as plain:
        cluster.log.clear()
        assert plain.put("fast", "plain", b"abc").unwrap()
        assert plain.get("fast", "plain").unwrap().data.tobytes() == b"abc"
        assert _kinds(cluster) == ["R3", "R5", "R7", "R3", "R11"]
    with pytest.raises(Exception, match="inline_max"):
        Client(cluster.uri(), inline_max=INLINE_CAP + 1)


# --- every byte still verified ----------------------------------------------------------------
def test_a_corrupt_inline_copy_fails_over_to_a_good_replica(cluster: Cluster, client: Client) -> None:
    data = os.urandom(2048)
    assert client.put("fast", "flipped", data, rf=3).unwrap()
    answer = client.routers[0].get_metadata("fast", "flipped_0", headers={INLINE_MAX_HEADER: "65536"}).unwrap()
    assert answer.inline_data == data
    assert cluster.corrupt_versions(answer.peer_id, "fast", "flipped_0", 100) == 1  # R3's inline copy: other bytes
    assert client.routers[0].get_metadata(
        "fast", "flipped_0", headers={INLINE_MAX_HEADER: "65536"}).unwrap().inline_data != data
    cluster.log.clear()
    assert client.get("fast", "flipped").unwrap().data.tobytes() == data
    assert "R11" in _kinds(cluster)  # the inline bytes did not verify: read through R11, failing over


def test_peer_inlines_only_what_it_may(cluster: Cluster, client: Client) -> None:
    """Above the cap whatever is asked; a malformed limit is ignored, never an error."""
    big = os.urandom(INLINE_CAP + 1)
    assert client.put("fast", "big", big, chunk_size=INLINE_CAP + 1).unwrap()
    url = _peer_url(cluster, cluster.holders("fast", "big_0")[0])
    for value in ("1048576", "abc", "-1", "", "9" * 20):
        resp = requests.get(f"{url}/api/v4/buckets/fast/metadata/big_0", headers={INLINE_MAX_HEADER: value},
                            timeout=10)
        assert resp.status_code == 200 and INLINE_FIELD not in resp.json(), value
    assert client.put("fast", "small-one", b"12345").unwrap()
    small_holder = _peer_url(cluster, cluster.holders("fast", "small-one_0")[0])
    resp = requests.get(f"{small_holder}/api/v4/buckets/fast/metadata/small-one_0",
                        headers={INLINE_MAX_HEADER: "5"}, timeout=10)
    assert base64.b64decode(resp.json()[INLINE_FIELD]) == b"12345"
    resp = requests.get(f"{small_holder}/api/v4/buckets/fast/metadata/small-one_0",
                        headers={INLINE_MAX_HEADER: "4"}, timeout=10)
    assert INLINE_FIELD not in resp.json()


def test_a_disabled_ball_is_never_inlined(cluster: Cluster, client: Client) -> None:
    assert client.put("fast", "gone", b"secret").unwrap()
    url = _peer_url(cluster, cluster.holders("fast", "gone_0")[0])
    assert requests.post(f"{url}/api/v4/buckets/fast/gone_0/disable", timeout=10).status_code == 204
    resp = requests.get(f"{url}/api/v4/buckets/fast/metadata/gone_0", headers={INLINE_MAX_HEADER: "100"},
                        timeout=10)
    assert resp.status_code == 200 and resp.json()["metadata"]["is_disabled"] is True
    assert INLINE_FIELD not in resp.json()
    assert client.get("fast", "gone").is_err


# --- bad input ------------------------------------------------------------------------------
def _p1_body(key: str, data: bytes, **override: Any) -> dict[str, Any]:
    body = {"key": key, "size": len(data), "checksum": sha256(data), "tags": {}, "producer_id": "t",
            "content_type": "application/octet-stream", "ball_id": key, "bucket_id": "fast",
            INLINE_FIELD: base64.b64encode(data).decode()}
    body.update(override)
    return body


@pytest.mark.parametrize("where", ["router", "peer"])
def test_bad_inline_writes_are_refused_and_store_nothing(cluster: Cluster, where: str) -> None:
    url = cluster.routers[0].url if where == "router" else cluster.peers[0].url
    data = b"the declared bytes"
    cases = [
        ("wrong-bytes", _p1_body("bad-1", data, **{INLINE_FIELD: base64.b64encode(b"other bytes!!!!!!!").decode()}),
         400, 501),
        ("short", _p1_body("bad-2", data, **{INLINE_FIELD: base64.b64encode(data[:-1]).decode()}), 400, 501),
        ("not-base64", _p1_body("bad-3", data, **{INLINE_FIELD: "***"}), 422, None),
        ("not-a-string", _p1_body("bad-4", data, **{INLINE_FIELD: 12}), 422, None),
        ("too-large", _p1_body("bad-5", os.urandom(INLINE_CAP + 1)), 413, None),
    ]
    for name, body, status, code in cases:
        resp = requests.post(f"{url}/api/v4/buckets/fast/metadata", json=body, timeout=10)
        assert resp.status_code == status, (name, resp.text)
        if code is not None:
            assert resp.json()["detail"]["code"] == code, name
        assert cluster.holders("fast", body["key"]) == [], name


def test_an_inline_write_is_idempotent(cluster: Cluster) -> None:
    data = b"written twice with one version"
    headers = {"Mictlanx-Version": "01a2b0000000aaaa-idem", "Update": "1"}
    url = cluster.peers[1].url
    first = requests.post(f"{url}/api/v4/buckets/fast/metadata", json=_p1_body("idem", data), headers=headers,
                          timeout=10)
    again = requests.post(f"{url}/api/v4/buckets/fast/metadata", json=_p1_body("idem", data), headers=headers,
                          timeout=10)
    assert first.status_code == again.status_code == 201
    assert first.json()["committed"] is True and again.json()["committed"] is True
    assert again.json()["exists"] is True
    assert requests.get(f"{url}/api/v4/buckets/fast/idem", timeout=10).content == data
    assert cluster.stored_versions(cluster.peers[1].server_id, "fast", "idem") == 1


# --- servers without the extensions -----------------------------------------------------------
class _HideInline:
    """ASGI middleware: a server as one without the fast paths sees its requests (their
    headers dropped, ``data_base64`` removed from JSON bodies)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hidden = {INLINE_MAX_HEADER.lower().encode(), IF_ABSENT_HEADER.lower().encode()}
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in hidden]
        if scope["method"] != "POST" or not scope["path"].endswith("/metadata"):
            await self.app({**scope, "headers": headers}, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.loads(b"".join(chunks) or b"null")
        if isinstance(body, dict):
            body.pop(INLINE_FIELD, None)
        raw = json.dumps(body).encode()
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(raw)).encode()))
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


@pytest.mark.parametrize("hidden", ["router", "peers"])
def test_fast_paths_fall_back_against_servers_without_them(tmp_path: Path, hidden: str) -> None:
    cluster = Cluster(peers=2, routers=1)
    if hidden == "router":
        cluster.router_wrap = _HideInline
    else:
        cluster.peer_wrap = _HideInline
    with cluster, new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        data = os.urandom(3000)
        assert client.put("old", "obj", data, rf=2).unwrap()
        assert client.get("old", "obj").unwrap().data.tobytes() == data
        assert client.put("old", "obj", b"updated", rf=2, update=True).unwrap()
        assert client.get("old", "obj").unwrap().data.tobytes() == b"updated"
        router_r7 = cluster.log.count(server="mictlanx-router", method="POST", path=R7_PUT_DATA)
        peer_p3 = cluster.log.count(server="mictlanx-peer", method="POST", path=R7_PUT_DATA)
        r11 = cluster.log.count(server="mictlanx-router", method="GET", path=P5_GET_DATA)
        if hidden == "router":  # the client saw no `committed` and no inline bytes: R7 and R11
            assert router_r7 == 2 and r11 == 2
        else:  # the router wrote phase 2 itself (P3) to peers that only made a task
            assert router_r7 == 0 and peer_p3 == 4 and r11 == 2


def test_a_create_retried_after_one_replica_failed_still_ends_with_every_copy(tmp_path: Path) -> None:
    """The first attempt commits on one replica and fails on the other; the retry, same version,
    must write the missing copy, not take its own first copy for an identical object."""
    budget = [1]
    cluster = Cluster(peers=2, routers=1)
    cluster.peer_wrap = lambda app: FailFirst(app, "POST", "/metadata", budget)
    with cluster, new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        data = os.urandom(2000)
        assert client.put("retry", "both", data, rf=2).unwrap()
        assert budget == [0]  # the failure did happen
        assert sorted(cluster.holders("retry", "both_0")) == ["mictlanx-peer-0", "mictlanx-peer-1"]
        assert client.get("retry", "both").unwrap().data.tobytes() == data
