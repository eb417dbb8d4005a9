"""Router side of docs/consistency.md: versioned writes, reconciled reads, tombstones, R26.

Three real peers and two real routers (subprocesses on loopback), driven with plain
``requests``. Peers and routers are stopped, killed and restarted to build the failure
histories the design is about; every test leaves all five running again.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests

from mictlanx_sync.protocol.versions import HybridClock
from mictlanx_sync.server.router.placement import rank
from tests.support.servers import ServerProcess, start_peer, start_router

pytestmark = pytest.mark.timeout(120)

PEERS = ("vp-0", "vp-1", "vp-2")
V = "Mictlanx-Version"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Cluster:
    """Three peers, routers ``a`` and ``b`` over all of them, and raw-HTTP helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peers = {p: start_peer(root / p, p) for p in PEERS}
        self.routers = {name: self._router(name) for name in ("a", "b")}
        self.http = requests.Session()
        self.clock = HybridClock("tester")

    def _router(self, name: str, port: int = 0) -> ServerProcess:
        peers = [(p, self.peers[p].url) for p in PEERS]
        return start_router(self.root / f"router-{name}", peers, "--health-interval", "0.2",
                            "--unhealthy-threshold", "1", router_id=f"router-{name}", port=port)

    def close(self) -> None:
        self.http.close()
        for server in [*self.routers.values(), *self.peers.values()]:
            server.kill()

    # --- requests -----------------------------------------------------------------------------
    def r(self, router: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, f"{self.routers[router].url}/api/v4{path}", **kwargs)

    def r5(self, router: str, bucket: str, key: str, data: bytes, rf: int = 2, version: Optional[str] = None,
           stage: bool = False, update: bool = True, **fields: Any) -> requests.Response:
        # Update: 1 as a versioned writer sends it (docs/consistency.md §3.1); without it a
        # write over other content is the spec's create-only conflict, 409/405.
        headers = {V: version} if version else {}
        if update:
            headers["Update"] = "1"
        if stage:
            headers["Mictlanx-Stage"] = "1"
        body = {"key": key, "size": len(data), "checksum": sha(data), "replication_factor": rf, **fields}
        return self.r(router, "POST", f"/buckets/{bucket}/metadata", json=body, headers=headers)

    def r7(self, router: str, r5: requests.Response, data: bytes) -> requests.Response:
        assert r5.status_code == 200, r5.text
        return self.r(router, "POST", f"/buckets/data/{r5.json()['tasks_ids'][0]}/chunked", data=data)

    def put(self, router: str, bucket: str, key: str, data: bytes, **kwargs: Any) -> str:
        """R5 + R7; asserts success and returns the version created."""
        resp = self.r7(router, self.r5(router, bucket, key, data, **kwargs), data)
        assert resp.status_code == 200, resp.text
        return resp.headers[V]

    def peer_meta(self, peer: str, bucket: str, key: str, version: Optional[str] = None) -> Optional[dict]:
        """P4 straight on one peer: the metadata (with ``version``), or None on 404."""
        resp = self.http.get(f"{self.peers[peer].url}/api/v4/buckets/{bucket}/metadata/{key}",
                             headers={V: version} if version else {}, timeout=10)
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return {**resp.json()["metadata"], "version": resp.json().get("version", "")}

    def peer_put(self, peer: str, bucket: str, key: str, data: bytes, version: str) -> None:
        """P1 + P3 straight on one peer, with ``version``."""
        url = self.peers[peer].url
        body = {"key": key, "size": len(data), "checksum": sha(data), "bucket_id": bucket, "ball_id": key}
        p1 = self.http.post(f"{url}/api/v4/buckets/{bucket}/metadata", json=body, headers={V: version, "Update": "1"},
                            timeout=10)
        assert p1.status_code in (200, 201), p1.text
        p3 = self.http.post(f"{url}/api/v4/buckets/data/{p1.json()['task_id']}/chunked", data=data, timeout=10)
        assert p3.status_code in (200, 201), p3.text

    # --- failures -----------------------------------------------------------------------------
    def wait_available(self, router: str, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = self.http.get(f"{self.routers[router].url}/health", timeout=5).json()
                if health["available_peers"] == count:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"router {router} never saw {count} available peers")

    def stop_peer(self, peer: str) -> None:
        self.peers[peer].stop()
        for router in self.routers:
            if self.routers[router].proc is not None and self.routers[router].proc.poll() is None:
                self.wait_available(router, len(PEERS) - 1)

    def start_peer(self, peer: str) -> None:
        server = self.peers[peer]
        server.start(server.port or 0)

    def heal(self) -> None:
        """Every peer and router running again, every router seeing every peer."""
        for peer, server in self.peers.items():
            if server.proc is None or server.proc.poll() is not None:
                self.start_peer(peer)
        for name, router in self.routers.items():
            if router.proc is None or router.proc.poll() is not None:
                router.start(router.port or 0)
            self.wait_available(name, len(PEERS))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("versions"))
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture()
def vc(cluster: Cluster) -> Iterator[Cluster]:
    cluster.heal()
    yield cluster
    cluster.heal()


@pytest.fixture()
def bucket(request: pytest.FixtureRequest) -> str:
    return "v" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


def detail(resp: requests.Response) -> dict:
    return dict(resp.json()["detail"])


def holders(vc: Cluster, bucket: str, key: str) -> dict[str, dict]:
    return {p: m for p in PEERS if (m := vc.peer_meta(p, bucket, key)) is not None}


# --- writes ----------------------------------------------------------------------------------------
def test_racing_writes_converge_on_the_newer_version(vc: Cluster, bucket: str) -> None:
    older, newer = vc.clock.next(), vc.clock.next()
    d_old, d_new = os.urandom(3000), os.urandom(3000)
    # The newer write commits first: the older one is superseded on every replica.
    m_old = vc.r5("a", bucket, "k1", d_old, version=older)
    m_new = vc.r5("b", bucket, "k1", d_new, version=newer)
    assert m_old.json()["extra"]["version"] == older and m_new.headers[V] == newer
    assert vc.r7("b", m_new, d_new).headers[V] == newer
    lost = vc.r7("a", m_old, d_old)
    assert lost.status_code == 409 and detail(lost)["code"] == 409, lost.text
    assert detail(lost)["superseded_by"] == newer and detail(lost)["errors"]
    # The older write commits first: the newer one replaces it on every replica.
    m_old = vc.r5("a", bucket, "k2", d_old, version=older)
    m_new = vc.r5("b", bucket, "k2", d_new, version=newer)
    assert vc.r7("a", m_old, d_old).status_code == 200
    assert vc.r7("b", m_new, d_new).status_code == 200
    for key in ("k1", "k2"):
        copies = holders(vc, bucket, key)
        assert len(copies) == 2 and {(m["version"], m["checksum"]) for m in copies.values()} == {(newer, sha(d_new))}
    # A late retry of the older write is refused at R5 already.
    late = vc.r5("a", bucket, "k2", d_old, version=older)
    assert late.status_code == 409 and detail(late)["superseded_by"] == newer


def test_router_assigns_one_version_per_group(vc: Cluster, bucket: str) -> None:
    data = os.urandom(500)
    meta = vc.r5("a", bucket, "k", data)
    version = meta.json()["extra"]["version"]
    assert meta.headers[V] == version and version.endswith("-router-a")
    assert vc.r7("a", meta, data).headers[V] == version
    assert {m["version"] for m in holders(vc, bucket, "k").values()} == {version}
    # Router b has observed nothing of it yet, but its next version still sorts after it
    # once it has read it (the clock observes every version it sees).
    assert vc.r("b", "GET", f"/buckets/{bucket}/metadata/k").headers[V] == version
    assert vc.put("b", bucket, "k", os.urandom(500)) > version


# --- reads -----------------------------------------------------------------------------------------
def test_reads_serve_the_highest_version_not_the_highest_ranked(vc: Cluster, bucket: str) -> None:
    d1, d2 = os.urandom(4000), os.urandom(4000)
    v1 = vc.put("a", bucket, "k", d1, rf=3)
    v2 = vc.clock.next()
    lowest = rank(PEERS, bucket, "k")[-1]
    vc.peer_put(lowest, bucket, "k", d2, v2)  # only the lowest-ranked peer has the newest version
    for router in ("a", "b"):
        meta = vc.r(router, "GET", f"/buckets/{bucket}/metadata/k")
        assert meta.status_code == 200 and meta.headers[V] == v2 and meta.json()["version"] == v2
        assert meta.json()["metadata"]["checksum"] == sha(d2)
        data = vc.r(router, "GET", f"/buckets/{bucket}/k")
        assert data.content == d2 and data.headers[V] == v2 and data.headers["peer-id"] == lowest
    # Pinned reads serve exactly the version asked for.
    pinned = vc.r("b", "GET", f"/buckets/{bucket}/metadata/k", headers={V: v1})
    assert pinned.status_code == 200 and pinned.json()["metadata"]["checksum"] == sha(d1)
    assert vc.r("b", "GET", f"/buckets/{bucket}/k", headers={V: v1}).content == d1
    sizes = vc.r("a", "GET", f"/buckets/{bucket}/k/size", headers={V: v2}).json()
    assert [s["peer_id"] for s in sizes] == [lowest]
    unknown = vc.r("a", "GET", f"/buckets/{bucket}/metadata/k", headers={V: vc.clock.next()})
    assert unknown.status_code == 404 and detail(unknown)["code"] == 404
    # Listings keep the highest version of each key.
    listing = vc.r("a", "GET", f"/buckets/{bucket}/metadata").json()["balls"]
    assert [(b["key"], b["checksum"]) for b in listing] == [("k", sha(d2))]
    chunks = vc.r("b", "GET", f"/buckets/{bucket}/metadata/k/chunks").json()["chunks"]
    assert [c["checksum"] for c in chunks] == [sha(d2)]


def test_merge_reads_every_chunk_at_one_version(vc: Cluster, bucket: str) -> None:
    parts = [os.urandom(1000), os.urandom(700)]
    full = sha(b"".join(parts))
    version = vc.clock.next()
    for i, part in enumerate(parts):
        tags = {"index": str(i), "num_chunks": "2", "full_checksum": full, "chunk_size": str(len(part))}
        vc.put("a", bucket, f"obj_{i}", part, version=version, ball_id="obj", tags=tags)
    merged = vc.r("b", "GET", f"/buckets/{bucket}/obj/merge")
    assert merged.status_code == 200 and merged.content == b"".join(parts) and merged.headers[V] == version
    pinned = vc.r("b", "GET", f"/buckets/{bucket}/obj/merge", headers={V: version})
    assert pinned.content == b"".join(parts)
    assert vc.r("b", "GET", f"/buckets/{bucket}/obj/merge", headers={V: vc.clock.next()}).status_code == 404


# --- deletes ---------------------------------------------------------------------------------------
def test_stale_copy_of_a_peer_down_during_a_delete_stays_deleted(vc: Cluster, bucket: str) -> None:
    old = os.urandom(2000)
    v_old = vc.put("a", bucket, "k", old, rf=2)
    stale_holder = sorted(holders(vc, bucket, "k"))[0]
    vc.stop_peer(stale_holder)
    deleted = vc.r("a", "DELETE", f"/buckets/{bucket}/k")
    assert deleted.status_code == 200 and deleted.json()["pending_peers"] == [stale_holder], deleted.text
    tombstone = deleted.json()["version"]
    assert tombstone > v_old and deleted.headers[V] == tombstone
    vc.routers["a"].kill()  # its pending delete waits in its journal
    vc.start_peer(stale_holder)
    vc.wait_available("b", 3)
    assert vc.peer_meta(stale_holder, bucket, "k") is not None  # the stale copy is still there ...
    gone = vc.r("b", "GET", f"/buckets/{bucket}/metadata/k")  # ... and hidden by the other peers' tombstones
    assert gone.status_code == 404 and detail(gone)["code"] == 404 and gone.headers["Mictlanx-Tombstone"] == tombstone
    assert vc.r("b", "GET", f"/buckets/{bucket}/k").status_code == 404
    assert vc.r("b", "GET", f"/buckets/{bucket}/metadata").json()["balls"] == []
    assert vc.r("b", "GET", f"/buckets/{bucket}/metadata/k/chunks").status_code == 404
    # A newer write through b, then router a comes back and replays its delete: the write survives.
    new = os.urandom(2500)
    v_new = vc.put("b", bucket, "k", new, rf=2)
    assert v_new > tombstone
    vc.routers["a"].start(vc.routers["a"].port or 0)
    vc.wait_available("a", 3)
    assert not (vc.root / "router-a" / "pending-deletes.jsonl").read_text().strip()
    for router in ("a", "b"):
        assert vc.r(router, "GET", f"/buckets/{bucket}/k").content == new
        assert vc.r(router, "GET", f"/buckets/{bucket}/metadata/k").headers[V] == v_new
    assert {m["version"] for m in holders(vc, bucket, "k").values()} == {v_new}


def test_ball_delete_hides_every_chunk_in_listings(vc: Cluster, bucket: str) -> None:
    vc.put("a", bucket, "keep", b"keep", rf=1)
    vc.put("a", bucket, "obj_0", b"chunk", rf=3, ball_id="obj", tags={"index": "0", "num_chunks": "1"})
    lone = rank(PEERS, bucket, "obj_0")[0]
    vc.stop_peer(lone)
    deleted = vc.r("b", "DELETE", f"/buckets/{bucket}/bid/obj")
    assert deleted.status_code == 200 and deleted.json()["version"] and deleted.json()["pending_peers"] == [lone]
    vc.routers["b"].kill()
    vc.start_peer(lone)
    vc.wait_available("a", 3)
    assert vc.peer_meta(lone, bucket, "obj_0") is not None
    keys = [b["key"] for b in vc.r("a", "GET", f"/buckets/{bucket}/metadata").json()["balls"]]
    assert keys == ["keep"]
    assert vc.r("a", "GET", f"/buckets/{bucket}/metadata/obj/chunks").status_code == 404
    assert vc.r("a", "GET", f"/buckets/{bucket}/obj/merge").status_code == 404


def test_if_version_delete_drops_exactly_one_staged_version(vc: Cluster, bucket: str) -> None:
    current = vc.put("a", bucket, "k", b"current", rf=2)
    staged = vc.put("a", bucket, "k", b"staged", rf=2, stage=True)
    assert vc.r("a", "GET", f"/buckets/{bucket}/metadata/k").headers[V] == current
    dropped = vc.r("a", "DELETE", f"/buckets/{bucket}/k", headers={"Mictlanx-If-Version": staged})
    assert dropped.status_code in (200, 404), dropped.text
    assert vc.r("a", "GET", f"/buckets/{bucket}/metadata/k", headers={V: staged}).status_code == 404
    assert vc.r("b", "GET", f"/buckets/{bucket}/k").content == b"current"


# --- R26 -------------------------------------------------------------------------------------------
def test_commit_promotes_staged_chunks_and_replays_for_a_returning_peer(vc: Cluster, bucket: str) -> None:
    version = vc.clock.next()
    vc.put("a", bucket, "obj_1", b"tail", rf=3, version=version, stage=True, ball_id="obj")
    hidden = vc.r("a", "GET", f"/buckets/{bucket}/metadata/obj_1")
    assert hidden.status_code == 404, hidden.text
    assert vc.r("a", "GET", f"/buckets/{bucket}/metadata/obj_1", headers={V: version}).status_code == 200
    away = PEERS[1]
    vc.stop_peer(away)
    done = vc.r("a", "POST", f"/buckets/{bucket}/obj/commit", headers={V: version})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body == {"bucket_id": bucket, "ball_id": "obj", "version": version, "committed": 2, "superseded": 0,
                    "failed_peers": [], "pending_peers": [away]}
    assert vc.r("b", "GET", f"/buckets/{bucket}/obj_1").content == b"tail"
    vc.start_peer(away)
    vc.wait_available("a", 3)  # the pending commit is replayed before the peer is used again
    returned = vc.peer_meta(away, bucket, "obj_1")
    assert returned is not None and returned["version"] == version


def test_commit_errors(vc: Cluster, bucket: str) -> None:
    missing = vc.r("a", "POST", f"/buckets/{bucket}/obj/commit")
    assert missing.status_code == 400 and detail(missing)["code"] == 400
    nothing = vc.r("a", "POST", f"/buckets/{bucket}/obj/commit", headers={V: vc.clock.next()})
    assert nothing.status_code == 200 and nothing.json()["committed"] == 0


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "headers"), [
    ("POST", "/buckets/{b}/metadata", {V: "nope"}),
    ("POST", "/buckets/{b}/metadata", {"Mictlanx-Stage": "maybe"}),
    ("GET", "/buckets/{b}/metadata/k", {V: "0123"}),
    ("GET", "/buckets/{b}/k", {V: "ABCDEF0123456789-w"}),
    ("GET", "/buckets/{b}/k/size", {V: "x"}),
    ("GET", "/buckets/{b}/k/merge", {V: "x"}),
    ("DELETE", "/buckets/{b}/k", {V: "x"}),
    ("DELETE", "/buckets/{b}/k", {"Mictlanx-If-Version": "x"}),
    ("DELETE", "/buckets/{b}/bid/k", {V: "0000000000000001-w", "Mictlanx-If-Version": "0000000000000001-w"}),
    # the rebalancer's peer-level drop is never fanned out to every peer by a router delete
    ("DELETE", "/buckets/{b}/k", {"Mictlanx-If-Version": "0000000000000001-w", "Mictlanx-Drop-Current": "1"}),
    ("DELETE", "/buckets/{b}/bid/k", {"Mictlanx-If-Version": "0000000000000001-w", "Mictlanx-Drop-Current": "1"}),
    ("DELETE", "/buckets/{b}/k", {"Mictlanx-Drop-Current": "maybe"}),
    ("POST", "/buckets/{b}/k/commit", {V: "0000000000000001-"}),
])
def test_invalid_version_headers_are_400_before_any_peer(vc: Cluster, bucket: str, method: str, path: str,
                                                         headers: dict) -> None:
    data = b"never stored"
    body = {"key": "k", "size": len(data), "checksum": sha(data), "replication_factor": 3}
    resp = vc.r("a", method, path.format(b=bucket), headers=headers, json=body if method == "POST" else None)
    assert resp.status_code == 400 and detail(resp)["code"] == 400, resp.text
    assert holders(vc, bucket, "k") == {}


def test_merge_follows_chunk_0_before_the_commit_reaches_the_other_chunks(vc: Cluster, bucket: str) -> None:
    def put_object(parts: list[bytes], version: str, stage_tail: bool) -> None:
        full = sha(b"".join(parts))
        for i in reversed(range(len(parts))):  # chunk 0 last: the commit point
            tags = {"index": str(i), "num_chunks": str(len(parts)), "full_checksum": full}
            vc.put("a", bucket, f"obj_{i}", parts[i], version=version, ball_id="obj", tags=tags,
                   stage=stage_tail and i > 0)

    old, new = [os.urandom(900), os.urandom(900)], [os.urandom(900), os.urandom(500)]
    put_object(old, vc.clock.next(), stage_tail=False)
    version = vc.clock.next()
    put_object(new, version, stage_tail=True)  # no R26 yet: chunk 1 of ``new`` is only staged
    merged = vc.r("b", "GET", f"/buckets/{bucket}/obj/merge")
    assert merged.status_code == 200 and merged.content == b"".join(new) and merged.headers[V] == version


def test_repair_never_resurrects_a_deleted_key_from_a_stale_copy(vc: Cluster, bucket: str) -> None:
    vc.put("a", bucket, "gone", b"deleted later", rf=1)
    kept = vc.put("a", bucket, "kept", b"still here", rf=1)
    (lone,) = holders(vc, bucket, "gone")
    vc.stop_peer(lone)
    assert vc.r("b", "DELETE", f"/buckets/{bucket}/gone").status_code == 200
    vc.routers["b"].kill()
    vc.start_peer(lone)
    vc.wait_available("a", 3)
    report = vc.r("a", "POST", f"/repair/buckets/{bucket}", params={"rf": "2"}).json()
    assert report["failed"] == 0 and report["repaired"] == 1, report
    assert list(holders(vc, bucket, "gone")) == [lone]
    assert {m["version"] for m in holders(vc, bucket, "kept").values()} == {kept}
    assert len(holders(vc, bucket, "kept")) == 2
