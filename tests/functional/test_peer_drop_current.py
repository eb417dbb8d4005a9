"""P8 with ``Mictlanx-If-Version: V`` + ``Mictlanx-Drop-Current: 1``: the rebalancer's move of one copy away.

docs/rebalancing.md §4: the key's current version is removed only while it is exactly V, with no
tombstone (the object is not deleted, a copy of V may come back), and V stays readable by pinned
reads for ``version_grace``; otherwise 409 (another version is current) or 404 (nothing is), and
nothing changes. Real peers on loopback, raw HTTP.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.functional.test_peer_server import (
    API,
    LAYOUTS,
    TIMEOUT,
    assert_error,
    data_files,
    get,
    p1,
    p3,
    running_peer,
    sha,
)
from tests.functional.test_peer_versions import FAST_GC, delete, pinned, snapshot, used, v, vput, wait_for
from tests.support.servers import ServerProcess, start_peer

pytestmark = pytest.mark.timeout(60)

TOKEN = "drop-current-token"


def drop(url: str, bucket: str, key: str, version: str, **headers: str) -> requests.Response:
    """The rebalancer's request: P8 with If-Version and Drop-Current."""
    return delete(url, f"/buckets/{bucket}/{key}",
                  **{"Mictlanx-If-Version": version, "Mictlanx-Drop-Current": "1", **headers})


def listing(url: str, bucket: str) -> dict[str, Any]:
    return dict(get(url, f"/buckets/{bucket}/metadata?include_tombstones=1").json())


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One peer with the default grace (superseded versions stay for the whole module)."""
    with running_peer(tmp_path_factory.mktemp("dropcur") / "p", "peer-drop") as server:
        yield server


def test_the_current_version_is_dropped_without_a_tombstone_and_stays_pinned_readable(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "dc1", "k", b"older", v(1))
    vput(url, "dc1", "k", b"current", v(2))
    stored = used(url)
    dropped = drop(url, "dc1", "k", v(2))
    assert dropped.status_code == 200, dropped.text
    assert dropped.json() == {"n_deletes": 1, "key": "k", "version": v(2)}
    assert dropped.headers["n-deletes"] == "1" and dropped.headers["Mictlanx-Version"] == v(2)
    gone = assert_error(get(url, "/buckets/dc1/k"), 404, 404)
    assert "tombstone" not in gone and "Mictlanx-Tombstone" not in get(url, "/buckets/dc1/metadata/k").headers
    assert listing(url, "dc1") == {"peer_id": "peer-drop", "balls": [], "tombstones": []}
    # superseded, not deleted: a reader pinned to v2 that chose this peer still gets it (and v1 as before)
    assert pinned(url, "dc1", "k", v(2)).content == b"current"
    assert pinned(url, "dc1", "k", v(1)).content == b"older"
    assert used(url) == stored  # freed by the GC after version_grace
    # No tombstone: the same version can be copied here again (another plan's target) and is current.
    vput(url, "dc1", "k", b"current", v(2))
    assert get(url, "/buckets/dc1/k").content == b"current"
    assert drop(url, "dc1", "k", v(2)).status_code == 200
    assert_error(drop(url, "dc1", "k", v(2)), 404, 404)  # a retry of a drop that went through
    vput(url, "dc1", "k", b"newer", v(3))  # and a newer write lands as on any peer without the key
    assert get(url, "/buckets/dc1/k").content == b"newer"


def test_another_current_version_is_409_and_changes_nothing(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "dc2", "k", b"five", v(5))
    vput(url, "dc2", "k", b"seven", v(7), staged=True)
    vput(url, "dc2", "k", b"four", v(4), staged=True)  # below the current one: stays staged
    before = snapshot(url, "dc2")
    for version in (v(4), v(6), v(7)):  # older (staged), never seen, newer but only staged
        refused = assert_error(drop(url, "dc2", "k", version), 409, 409)
        assert (refused["version"], refused["current"]) == (version, v(5))
    assert snapshot(url, "dc2") == before
    assert get(url, "/buckets/dc2/k").content == b"five"
    assert pinned(url, "dc2", "k", v(7)).content == b"seven"
    assert pinned(url, "dc2", "k", v(4)).content == b"four"


def test_nothing_current_is_404_and_changes_nothing(peer: ServerProcess) -> None:
    url = peer.url
    assert_error(drop(url, "dc3", "never", v(1)), 404, 404)
    vput(url, "dc3", "buried", b"x", v(1))
    assert delete(url, "/buckets/dc3/buried", **{"Mictlanx-Version": v(2)}).status_code == 200
    vput(url, "dc3", "staged", b"s", v(3), staged=True)
    before = snapshot(url, "dc3")
    for key, version in (("buried", v(1)), ("buried", v(2)), ("staged", v(3))):
        missing = drop(url, "dc3", key, version)
        assert_error(missing, 404, 404)
        assert missing.headers["n-deletes"] == "0"
    assert snapshot(url, "dc3") == before
    assert {"scope": "key", "name": "buried", "version": v(2)} in listing(url, "dc3")["tombstones"]
    assert pinned(url, "dc3", "staged", v(3)).content == b"s"


def test_a_write_of_the_next_version_racing_the_drop_wins_either_way(peer: ServerProcess) -> None:
    url = peer.url
    # The newer write's P1 was accepted before the drop, its body arrives after: it commits over nothing.
    vput(url, "dc4", "a", b"v10", v(10))
    task = p1(url, "dc4", "a", b"v11!", headers={"Mictlanx-Version": v(11), "Update": "1"}).json()["task_id"]
    assert drop(url, "dc4", "a", v(10)).status_code == 200
    assert p3(url, task, b"v11!").status_code == 201
    assert get(url, "/buckets/dc4/a").content == b"v11!"
    assert get(url, "/buckets/dc4/metadata/a").json()["version"] == v(11)
    # The newer write committed first (here the same bytes at a newer version, committed at P1): 409, kept.
    vput(url, "dc4", "b", b"same", v(20))
    assert p1(url, "dc4", "b", b"same", headers={"Mictlanx-Version": v(21), "Update": "1"}).json()["exists"]
    refused = assert_error(drop(url, "dc4", "b", v(20)), 409, 409)
    assert refused["current"] == v(21)
    assert get(url, "/buckets/dc4/b").content == b"same"


def test_many_drops_and_writes_at_once_leave_the_newest_write_current(peer: ServerProcess) -> None:
    url = peer.url
    keys = [f"r{i}" for i in range(20)]
    for key in keys:
        vput(url, "dc5", key, b"old " + key.encode(), v(30))
    answers: dict[str, int] = {}

    def dropper() -> None:
        for key in keys:
            answers[key] = drop(url, "dc5", key, v(30)).status_code

    thread = threading.Thread(target=dropper)
    thread.start()
    for key in keys:
        vput(url, "dc5", key, b"new " + key.encode(), v(31))
    thread.join(30)
    assert set(answers.values()) <= {200, 409} and len(answers) == len(keys)
    for key in keys:  # whichever came first, the newer write is current and the drop never touched it
        assert get(url, f"/buckets/dc5/{key}").content == b"new " + key.encode()


@pytest.mark.parametrize("headers", [
    {"Mictlanx-Drop-Current": "1"},  # which version?
    {"Mictlanx-Drop-Current": "1", "Mictlanx-Version": v(50)},  # a tombstone is never "dropped"
    {"Mictlanx-Drop-Current": "1", "Mictlanx-Version": v(51), "Mictlanx-If-Version": v(50)},
    {"Mictlanx-Drop-Current": "maybe", "Mictlanx-If-Version": v(50)},
    {"Mictlanx-Drop-Current": "1", "Mictlanx-If-Version": "not-a-version"},
])
def test_bad_drop_headers_are_400_and_change_nothing(peer: ServerProcess, headers: dict[str, str]) -> None:
    url = peer.url
    vput(url, "dc6", "k", b"keep", v(50))
    before = snapshot(url, "dc6")
    assert_error(delete(url, "/buckets/dc6/k", **headers), 400, 400)
    # P9 has no Drop-Current: one key at a time
    assert_error(delete(url, "/buckets/dc6/bid/k", **{"Mictlanx-If-Version": v(50), "Mictlanx-Drop-Current": "1"}),
                 400, 400)
    assert snapshot(url, "dc6") == before
    assert get(url, "/buckets/dc6/k").content == b"keep"


def test_preconditions_and_drop_current_0(peer: ServerProcess) -> None:
    url = peer.url
    vput(url, "dc7", "k", b"keep", v(60))
    before = snapshot(url, "dc7")
    assert_error(drop(url, "dc7", "k", v(60), **{"If-Match": '"' + "0" * 64 + '"'}), 412, 405)
    # without Drop-Current (or with 0) If-Version keeps its meaning: a current version is never un-committed
    assert_error(delete(url, "/buckets/dc7/k", **{"Mictlanx-If-Version": v(60), "Mictlanx-Drop-Current": "0"}),
                 412, 405)
    assert snapshot(url, "dc7") == before


def test_the_dropped_version_is_freed_after_the_grace(tmp_path: Path) -> None:
    with running_peer(tmp_path / "p", "peer-gc", *FAST_GC) as server:
        url = server.url
        vput(url, "dc8", "k", b"moved away", v(1))
        assert drop(url, "dc8", "k", v(1)).status_code == 200
        assert pinned(url, "dc8", "k", v(1)).content == b"moved away"  # within the 1 s grace
        wait_for(lambda: pinned(url, "dc8", "k", v(1)).status_code == 404)
        assert used(url) == 0 and data_files(tmp_path / "p") == set()


def test_the_token_is_required(tmp_path: Path) -> None:
    server = start_peer(tmp_path / "p", "peer-token", "--token", TOKEN, env={"MICTLANX_PEER_TOKEN": ""})
    try:
        url, auth = server.url, {"Authorization": f"Bearer {TOKEN}"}
        body = {"key": "k", "size": 4, "checksum": sha(b"abcd")}
        first = requests.post(f"{url}{API}/buckets/dc9/metadata", json=body, timeout=TIMEOUT,
                              headers={**auth, "Mictlanx-Version": v(1)})
        assert first.status_code == 201, first.text
        assert requests.post(f"{url}{API}/buckets/data/{first.json()['task_id']}/chunked", data=b"abcd",
                             headers=auth, timeout=TIMEOUT).status_code == 201
        headers = {"Mictlanx-If-Version": v(1), "Mictlanx-Drop-Current": "1"}
        for wrong in ({}, {"Authorization": "Bearer wrong"}):
            refused = requests.delete(f"{url}{API}/buckets/dc9/k", headers={**headers, **wrong}, timeout=TIMEOUT)
            assert refused.status_code == 401
        assert requests.get(f"{url}{API}/buckets/dc9/k", headers=auth, timeout=TIMEOUT).content == b"abcd"
        done = requests.delete(f"{url}{API}/buckets/dc9/k", headers={**headers, **auth}, timeout=TIMEOUT)
        assert done.status_code == 200, done.text
        assert requests.get(f"{url}{API}/buckets/dc9/k", headers=auth, timeout=TIMEOUT).status_code == 404
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_drop_survives_sigkill(tmp_path: Path, layout: str) -> None:
    server = start_peer(tmp_path / "p", "peer-crash", *LAYOUTS[layout], fsync=True)
    try:
        vput(server.url, "dc10", "k", b"moved", v(1))
        vput(server.url, "dc10", "stay", b"stays", v(1))
        assert drop(server.url, "dc10", "k", v(1)).status_code == 200
        server.kill()
        server.restart()
        url = server.url
        assert_error(get(url, "/buckets/dc10/k"), 404, 404)
        assert pinned(url, "dc10", "k", v(1)).content == b"moved"
        assert get(url, "/buckets/dc10/stay").content == b"stays"
        assert listing(url, "dc10")["tombstones"] == []
        assert used(url) == len(b"moved" + b"stays") and len(data_files(tmp_path / "p")) == 2
    finally:
        assert server.stop() == 0
