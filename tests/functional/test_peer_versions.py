"""The peer's versions, staged writes, tombstones and P24 (docs/consistency.md) through raw HTTP.

Helpers here are shared by ``test_peer_versions_durability``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import requests

from tests.functional.test_peer_server import API, TIMEOUT, assert_error, data_files, get, p1, p3, running_peer, sha
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.timeout(60)

#: A short grace and a fast sweep, for tests that watch superseded versions go.
FAST_GC = ("--version-grace", "1", "--gc-interval", "0.2")


def v(n: int, writer: str = "w") -> str:
    """A version id with clock ``n`` (ordered by ``n``)."""
    return f"{n:016x}-{writer}"


def vput(url: str, bucket: str, key: str, data: bytes, version: Optional[str] = None, *, staged: bool = False,
         **meta: Any) -> dict[str, Any]:
    """P1 (+ P3 unless exists) with the version headers; asserts success, returns the P1 body."""
    # A versioned writer orders by version and checks create-only itself: Update: 1.
    headers = {"Mictlanx-Version": version, "Update": "1"} if version else {}
    if staged:
        headers["Mictlanx-Stage"] = "1"
    first = p1(url, bucket, key, data, headers=headers, **meta)
    assert first.status_code == 201, first.text
    body = dict(first.json())
    assert first.headers["Mictlanx-Version"] == body["version"]
    if version:
        assert body["version"] == version
    second = p3(url, body["task_id"], data)
    assert second.status_code == 201, second.text
    assert second.headers["Mictlanx-Version"] == body["version"]
    return body


def pinned(url: str, bucket: str, key: str, version: str, what: str = "") -> requests.Response:
    """P5 (``what=""``), P4 (``what="meta"``) or P11 (``what="size"``) pinned to ``version``."""
    path = {"": f"/buckets/{bucket}/{key}", "meta": f"/buckets/{bucket}/metadata/{key}",
            "size": f"/buckets/{bucket}/{key}/size"}[what]
    return get(url, path, headers={"Mictlanx-Version": version})


def delete(url: str, path: str, **headers: str) -> requests.Response:
    return requests.delete(f"{url}{API}{path}", headers=headers, timeout=TIMEOUT)


def commit(url: str, bucket: str, ball_id: str, version: Optional[str]) -> requests.Response:
    headers = {"Mictlanx-Version": version} if version is not None else {}
    return requests.post(f"{url}{API}/buckets/{bucket}/{ball_id}/commit", headers=headers, timeout=TIMEOUT)


def used(url: str) -> int:
    return int(get(url, "/stats/ufs").json()["used_disk"])


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def snapshot(url: str, bucket: str) -> tuple[Any, ...]:
    """Everything a test can see of a bucket (to prove a refused request changed nothing)."""
    listing = get(url, f"/buckets/{bucket}/metadata?include_disabled=1&include_tombstones=1").json()
    return listing, get(url, "/xballs").json(), used(url)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One peer for the tests that need no GC (default grace: superseded versions stay)."""
    with running_peer(tmp_path_factory.mktemp("versions") / "p", "peer-v") as server:
        yield server


@pytest.fixture
def fast_peer(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_peer(tmp_path / "p", "peer-gc", *FAST_GC) as server:
        yield server


# --- last writer wins ----------------------------------------------------------------------------------
def test_older_write_after_newer_is_superseded_and_changes_nothing(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "lww1", "k", b"newer", v(20))
    before = snapshot(url, "lww1")
    refused = assert_error(p1(url, "lww1", "k", b"older", headers={"Mictlanx-Version": v(10)}), 409, 409)
    assert (refused["version"], refused["superseded_by"]) == (v(10), v(20))
    assert snapshot(url, "lww1") == before
    assert get(url, "/buckets/lww1/k").content == b"newer"
    # The race lost in phase 2: P1 accepted, then a newer version committed, then the body arrived.
    task = p1(url, "lww1", "r", b"slow", headers={"Mictlanx-Version": v(30)}).json()["task_id"]
    vput(url, "lww1", "r", b"fast", v(31))
    refused = assert_error(p3(url, task, b"slow"), 409, 409)
    assert refused["superseded_by"] == v(31)
    assert get(url, "/buckets/lww1/r").content == b"fast"
    assert_error(pinned(url, "lww1", "r", v(30)), 404, 404)


def test_newer_write_applies_and_old_version_is_pinned_readable_until_gc(fast_peer: ServerProcess,
                                                                          tmp_path: Path) -> None:
    url = fast_peer.url
    vput(url, "lww2", "k", b"old", v(1))
    vput(url, "lww2", "k", b"new!", v(2))
    response = get(url, "/buckets/lww2/k")
    assert response.content == b"new!" and response.headers["Mictlanx-Version"] == v(2)
    meta = get(url, "/buckets/lww2/metadata/k").json()
    assert meta["version"] == v(2) and meta["metadata"]["version"] == v(2)
    old = pinned(url, "lww2", "k", v(1))
    assert old.content == b"old" and old.headers["Mictlanx-Version"] == v(1)
    assert pinned(url, "lww2", "k", v(1), "meta").json()["metadata"]["size"] == 3
    assert pinned(url, "lww2", "k", v(1), "size").json()["size"] == 3
    wait_for(lambda: pinned(url, "lww2", "k", v(1)).status_code == 404)
    assert len(data_files(tmp_path / "p")) == 1 and used(url) == 4
    assert get(url, "/buckets/lww2/k").content == b"new!"


def test_retry_of_the_same_version_is_idempotent(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "idem", "k", b"data", v(5))
    again = p1(url, "idem", "k", b"data", headers={"Mictlanx-Version": v(5)})
    assert again.status_code == 201 and again.json()["exists"] is True and again.json()["version"] == v(5)
    assert p3(url, again.json()["task_id"], b"data").status_code == 201
    assert get(url, "/buckets/idem/metadata/k").json()["version"] == v(5)


def test_unversioned_write_gets_a_peer_version_after_the_current_one(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "auto", "k", b"versioned", v(7))
    replacing = p1(url, "auto", "k", b"plain", headers={"Update": "1"})
    assert replacing.status_code == 201 and replacing.json()["version"] > v(7)
    assert replacing.json()["version"].endswith("-peer-v")
    assert p3(url, replacing.json()["task_id"], b"plain").status_code == 201
    assert get(url, "/buckets/auto/metadata/k").json()["version"] == replacing.json()["version"]


# --- staged writes and P24 -------------------------------------------------------------------------------
def test_staged_versions_are_invisible_until_committed(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "stg", "obj_1", b"second chunk", v(100), staged=True, ball_id="obj")
    assert_error(get(url, "/buckets/stg/metadata/obj_1"), 404, 404)
    assert_error(get(url, "/buckets/stg/obj_1"), 404, 404)
    assert_error(get(url, "/buckets/stg/obj_1/size"), 404, 404)
    assert get(url, "/buckets/stg/metadata").json()["balls"] == []
    assert_error(get(url, "/buckets/stg/metadata/obj/group"), 404, 404)
    assert all(b["bucket_id"] != "stg" for b in get(url, "/stats?end=0").json()["balls"])
    assert all(b["bucket_id"] != "stg" for b in get(url, "/xballs").json())
    assert pinned(url, "stg", "obj_1", v(100)).content == b"second chunk"
    assert pinned(url, "stg", "obj_1", v(100), "meta").json()["metadata"]["ball_id"] == "obj"
    # A retry of the same staged write is exists:true.
    again = p1(url, "stg", "obj_1", b"second chunk", ball_id="obj",
               headers={"Mictlanx-Version": v(100), "Mictlanx-Stage": "1"})
    assert again.json()["exists"] is True
    # The commit point (chunk 0, not staged), then P24.
    vput(url, "stg", "obj_0", b"first chunk", v(100), ball_id="obj")
    answer = commit(url, "stg", "obj", v(100))
    assert answer.status_code == 200
    assert answer.json() == {"bucket_id": "stg", "ball_id": "obj", "version": v(100), "committed": 1,
                             "superseded": 0}
    group = get(url, "/buckets/stg/metadata/obj/group").json()
    assert [(b["key"], b["version"]) for b in group["balls"]] == [("obj_0", v(100)), ("obj_1", v(100))]
    assert commit(url, "stg", "obj", v(100)).json()["committed"] == 0  # a repeated commit is harmless


def test_commit_supersedes_older_chunks_and_leftovers(peer: ServerProcess) -> None:
    url = peer.url
    for index in range(3):  # an older, longer object
        vput(url, "cmt", f"obj_{index}", b"old %d" % index, v(10), ball_id="obj")
    vput(url, "cmt", "obj_4", b"abandoned", v(15), staged=True, ball_id="obj")  # an abandoned older put
    vput(url, "cmt", "obj_1", b"new 1", v(20), staged=True, ball_id="obj")
    vput(url, "cmt", "obj_0", b"new 0", v(20), ball_id="obj")
    answer = commit(url, "cmt", "obj", v(20)).json()
    # obj_1 promoted (its v10 superseded), obj_2 left over, obj_4 abandoned.
    assert (answer["committed"], answer["superseded"]) == (1, 3)
    group = get(url, "/buckets/cmt/metadata/obj/group").json()["balls"]
    assert [(b["key"], b["version"]) for b in group] == [("obj_0", v(20)), ("obj_1", v(20))]
    assert get(url, "/buckets/cmt/obj_1").content == b"new 1"
    assert_error(get(url, "/buckets/cmt/obj_2"), 404, 404)
    assert pinned(url, "cmt", "obj_2", v(10)).content == b"old 2"  # superseded: still pinned-readable
    assert pinned(url, "cmt", "obj_1", v(10)).content == b"old 1"
    assert pinned(url, "cmt", "obj_4", v(15)).content == b"abandoned"
    # A staged version below the high-water mark is never promoted.
    vput(url, "cmt", "obj_1", b"late", v(12), staged=True, ball_id="obj")
    late = commit(url, "cmt", "obj", v(12)).json()
    assert late["committed"] == 0 and late["superseded"] >= 1
    assert get(url, "/buckets/cmt/obj_1").content == b"new 1"


# --- tombstones and deletes ---------------------------------------------------------------------------------
def test_tombstone_refuses_an_older_write_arriving_later(peer: ServerProcess) -> None:
    url = peer.url
    gone = delete(url, "/buckets/tmb/k", **{"Mictlanx-Version": v(50)})
    assert_error(gone, 404, 404)
    assert gone.headers["n-deletes"] == "0"
    hidden = get(url, "/buckets/tmb/metadata/k")
    assert_error(hidden, 404, 404)
    assert hidden.headers["Mictlanx-Tombstone"] == v(50) and hidden.json()["detail"]["tombstone"] == v(50)
    for staged in ("0", "1"):
        refused = assert_error(p1(url, "tmb", "k", b"late", headers={"Mictlanx-Version": v(40),
                                                                      "Mictlanx-Stage": staged}), 409, 409)
        assert refused["superseded_by"] == v(50)
    vput(url, "tmb", "k", b"after", v(60))
    assert get(url, "/buckets/tmb/k").content == b"after"
    # A ball_id tombstone hides every chunk of the ball and refuses older chunks.
    vput(url, "tmb", "obj_0", b"zero", v(60), ball_id="obj")
    removed = delete(url, "/buckets/tmb/bid/obj", **{"Mictlanx-Version": v(70)})
    assert removed.status_code == 200 and removed.json()["n_deletes"] == 1
    assert get(url, "/buckets/tmb/obj_0").headers["Mictlanx-Tombstone"] == v(70)
    assert_error(p1(url, "tmb", "obj_1", b"x", ball_id="obj",
                    headers={"Mictlanx-Version": v(65), "Mictlanx-Stage": "1"}), 409, 409)
    listing = get(url, "/buckets/tmb/metadata?include_tombstones=1").json()
    assert {"scope": "key", "name": "k", "version": v(50)} in listing["tombstones"]
    assert {"scope": "ball_id", "name": "obj", "version": v(70)} in listing["tombstones"]
    group = get(url, "/buckets/tmb/metadata/obj/group?include_tombstones=1").json()
    assert group["balls"] == [] and group["tombstones"] == [{"scope": "ball_id", "name": "obj", "version": v(70)}]
    assert "tombstones" not in get(url, "/buckets/tmb/metadata").json()


def test_delete_does_not_touch_newer_versions(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "del", "k", b"v5", v(5))
    older = delete(url, "/buckets/del/k", **{"Mictlanx-Version": v(3)})
    assert_error(older, 404, 404)
    assert get(url, "/buckets/del/k").content == b"v5"
    newer = delete(url, "/buckets/del/k", **{"Mictlanx-Version": v(7)})
    assert newer.status_code == 200 and newer.json()["n_deletes"] == 1 and newer.headers["n-deletes"] == "1"
    assert get(url, "/buckets/del/k").headers["Mictlanx-Tombstone"] == v(7)
    assert pinned(url, "del", "k", v(5)).content == b"v5"  # superseded, readable for version_grace
    # A staged version above the tombstone survives it.
    vput(url, "del", "s", b"staged", v(9), staged=True)
    assert_error(delete(url, "/buckets/del/s", **{"Mictlanx-Version": v(8)}), 404, 404)
    assert pinned(url, "del", "s", v(9)).content == b"staged"


def test_if_version_removes_exactly_one_non_current_version(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "ifv", "k", b"staged", v(1), staged=True)
    vput(url, "ifv", "k", b"current", v(2))
    assert_error(delete(url, "/buckets/ifv/k", **{"Mictlanx-If-Version": v(2)}), 412, 405)
    assert get(url, "/buckets/ifv/k").content == b"current"
    dropped = delete(url, "/buckets/ifv/k", **{"Mictlanx-If-Version": v(1)})
    assert dropped.status_code == 200 and dropped.json()["n_deletes"] == 1
    assert_error(pinned(url, "ifv", "k", v(1)), 404, 404)
    assert_error(delete(url, "/buckets/ifv/k", **{"Mictlanx-If-Version": v(1)}), 404, 404)
    assert get(url, "/buckets/ifv/k").content == b"current"
    # P9: every staged chunk of the version, refused while one of them is current.
    vput(url, "ifv", "obj_1", b"one", v(3), staged=True, ball_id="obj")
    vput(url, "ifv", "obj_2", b"two", v(3), staged=True, ball_id="obj")
    assert delete(url, "/buckets/ifv/bid/obj", **{"Mictlanx-If-Version": v(3)}).json()["n_deletes"] == 2
    vput(url, "ifv", "obj_0", b"zero", v(4), ball_id="obj")
    assert_error(delete(url, "/buckets/ifv/bid/obj", **{"Mictlanx-If-Version": v(4)}), 412, 405)
    assert_error(delete(url, "/buckets/ifv/bid/obj", **{"Mictlanx-If-Version": v(3)}), 404, 404)


# --- files shared between versions --------------------------------------------------------------------------
def test_identical_content_versions_share_one_file(fast_peer: ServerProcess, tmp_path: Path) -> None:
    url, data_dir = fast_peer.url, tmp_path / "p"
    data = b"x" * 1000
    vput(url, "shr", "k", data, v(1))
    newer = p1(url, "shr", "k", data, headers={"Mictlanx-Version": v(2)})
    assert newer.json()["exists"] is True  # committed at once, on the same file
    assert get(url, "/buckets/shr/metadata/k").json()["version"] == v(2)
    assert pinned(url, "shr", "k", v(1)).content == data
    assert used(url) == 1000 and len(data_files(data_dir)) == 1
    wait_for(lambda: pinned(url, "shr", "k", v(1)).status_code == 404)  # GC dropped v1, not the file
    assert get(url, "/buckets/shr/k").content == data
    assert used(url) == 1000 and len(data_files(data_dir)) == 1
    assert delete(url, "/buckets/shr/k", **{"Mictlanx-Version": v(3)}).status_code == 200
    assert used(url) == 1000  # superseded: still stored until GC
    wait_for(lambda: used(url) == 0)
    assert data_files(data_dir) == set()


# --- invalid input -------------------------------------------------------------------------------------------
BAD_VERSIONS = ["", "nope", "0000000000000001", "0000000000000001-", "000000000000000G-w", "00000000000000001-w",
                "0000000000000001-w/x", "0000000000000001-" + "w" * 65]


@pytest.mark.parametrize("bad", BAD_VERSIONS)
def test_invalid_version_headers_are_400_and_change_nothing(peer: ServerProcess, bad: str) -> None:
    url = peer.url
    vput(url, "bad", "k", b"keep", v(1000))
    vput(url, "bad", "obj_1", b"staged", v(1001), staged=True, ball_id="obj")
    before = snapshot(url, "bad")
    version = {"Mictlanx-Version": bad}
    assert_error(p1(url, "bad", "k", b"other", headers=version), 400, 400)
    assert_error(p1(url, "bad", "k", b"other", headers={"Mictlanx-Version": v(2000), "Mictlanx-Stage": "2"}),
                 400, 400)
    for path in ("/buckets/bad/k", "/buckets/bad/metadata/k", "/buckets/bad/k/size"):
        assert_error(get(url, path, headers=version), 400, 400)
    for path in ("/buckets/bad/k", "/buckets/bad/bid/k"):
        assert_error(delete(url, path, **version), 400, 400)
        assert_error(delete(url, path, **{"Mictlanx-If-Version": bad}), 400, 400)
        assert_error(delete(url, path, **{"Mictlanx-Version": v(2000), "Mictlanx-If-Version": v(1000)}), 400, 400)
    assert_error(commit(url, "bad", "obj", bad), 400, 400)
    assert_error(commit(url, "bad", "obj", None), 400, 400)
    assert_error(get(url, "/buckets/bad/metadata?include_tombstones=maybe"), 400, 400)
    assert snapshot(url, "bad") == before
    assert pinned(url, "bad", "obj_1", v(1001)).content == b"staged"
    assert get(url, "/buckets/bad/k").content == b"keep"


def test_pinned_read_of_an_unknown_version_is_404(peer: ServerProcess) -> None:
    vput(peer.url, "pin", "k", b"data", v(1))
    for what in ("", "meta", "size"):
        found = assert_error(pinned(peer.url, "pin", "k", v(2), what), 404, 404)
        assert found["version"] == v(2)
    assert sha(pinned(peer.url, "pin", "k", v(1)).content) == sha(b"data")
