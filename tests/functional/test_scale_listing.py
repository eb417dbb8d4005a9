"""Issue 16: unpaged listings stream (P6, P15, P16 on a peer) or are bounded (R2 on the router).

The peers are filled with 20,000 balls by ``Storage.bulk_load`` (the documented loader that
writes through the peer's storage layer; 20,000 uploads over HTTP would take minutes here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests

from mictlanx_sync.server.peer.storage import Ball, Storage
from tests.support.servers import ServerProcess, start_peer, start_router

API = "/api/v4"
N = 20_000
TIMEOUT = 120
#: peak-RSS growth allowed for an unpaged 20,000-ball P6 on a warmed-up peer (the paged walk
#: runs first: SQLite's 2 MiB page cache and the code paths cost a fixed ~6 MiB on a cold peer
#: whatever the size). Measured here (2026-12-03): whole-list answers before streaming grew the
#: peak by 21-25 MiB per call warm (32 MiB cold), and linearly with the bucket; streamed, 0.0-0.4
#: MiB warm, the same at 20,000 and 60,000 balls (one batch of 1,000 rows and a 64 KiB piece).
#: 4 MiB leaves room for allocator noise and still fails a whole-list build by 5x.
RSS_BOUND = 4 * 1024 * 1024


def _balls(bucket: str, keys: range, prefix: str = "k") -> Iterator[tuple[Ball, bytes]]:
    for i in keys:
        data = f"{bucket}/{prefix}{i:06d}".encode()
        yield Ball(bucket, f"{prefix}{i:06d}", len(data), hashlib.sha256(data).hexdigest(),
                   tags={"i": str(i)}, version=f"v{i:06d}"), data


def _fill(data_dir: Path, *groups: Iterator[tuple[Ball, bytes]]) -> None:
    storage = Storage(data_dir, fsync=False)
    try:
        for group in groups:
            storage.bulk_load(group)
    finally:
        storage.close()


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def _peak_growth(server: ServerProcess, call: Any) -> tuple[Any, int]:
    """``call()`` and how far the server's peak RSS rose above its RSS before it."""
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status(server.pid)["VmRSS"]
    result = call()
    return result, _status(server.pid)["VmHWM"] - before


def _pages(url: str, path: str, size: int = 1000, key: Any = lambda e: e["key"],
           field: Optional[str] = "balls", after_of: Any = None) -> list[Any]:
    out: list[Any] = []
    after: Optional[str] = None
    while True:
        params: dict[str, Any] = {"end": size, **({"after": after} if after is not None else {})}
        body = requests.get(f"{url}{API}{path}", params=params, timeout=TIMEOUT).json()
        page = body[field] if field else body
        out += page
        if len(page) < size:
            return out
        after = after_of(page[-1]) if after_of else key(page[-1])


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    base = tmp_path_factory.mktemp("scale")
    # peer A: every even key of "big" plus a second bucket; peer B: keys 0..N/2 of "big" (overlap)
    _fill(base / "a", _balls("big", range(0, N, 2)), _balls("big", range(1, N, 2)), _balls("other", range(50)))
    _fill(base / "b", _balls("big", range(0, N // 2)))
    started = [start_peer(base / "a", "peer-a"), start_peer(base / "b", "peer-b")]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def test_unpaged_p6_streams_what_paging_returns(peers: list[ServerProcess]) -> None:
    peer = peers[0]
    paged = _pages(peer.url, "/buckets/big/metadata")  # also warms the peer up (see RSS_BOUND)
    response, growth = _peak_growth(peer, lambda: requests.get(f"{peer.url}{API}/buckets/big/metadata",
                                                               timeout=TIMEOUT))
    assert response.status_code == 200
    assert "content-length" not in response.headers  # streamed (chunked)
    body = response.json()
    assert set(body) == {"peer_id", "balls"} and body["peer_id"] == "peer-a"
    assert len(body["balls"]) == N
    assert body["balls"] == paged
    print(f"unpaged P6 of {N}: peak RSS +{growth / 2**20:.1f} MiB")
    assert growth < RSS_BOUND, f"peak RSS grew {growth / 2**20:.1f} MiB for one listing"
    # the window and tombstone forms still agree with paging
    window = requests.get(f"{peer.url}{API}/buckets/big/metadata", params={"start": 5, "end": 4005},
                          timeout=TIMEOUT).json()["balls"]
    assert window == body["balls"][5:4005]
    with_stones = requests.get(f"{peer.url}{API}/buckets/big/metadata", params={"include_tombstones": "1"},
                               timeout=TIMEOUT).json()
    assert with_stones["tombstones"] == [] and with_stones["balls"] == body["balls"]


def test_unpaged_inventory_streams_what_paging_returns(peers: list[ServerProcess]) -> None:
    peer = peers[0]
    paged = _pages(peer.url, "/xballs", field=None, after_of=lambda e: f"{e['bucket_id']}@{e['key']}")
    whole, growth = _peak_growth(peer, lambda: requests.get(f"{peer.url}{API}/xballs", timeout=TIMEOUT).json())
    assert len(whole) == N + 50 and growth < RSS_BOUND
    assert whole == paged
    sizes = requests.get(f"{peer.url}{API}/xballs/size", timeout=TIMEOUT).json()
    assert sizes == [[e["bucket_id"], e["key"], e["size"]] for e in whole]
    state = requests.get(f"{peer.url}{API}/peers/state", timeout=TIMEOUT).json()
    assert list(state["balls"]) == [f"{e['bucket_id']}@{e['key']}" for e in whole]
    stats = requests.get(f"{peer.url}{API}/stats", params={"end": 0}, timeout=TIMEOUT).json()
    assert len(stats) == 7 and len(stats["balls"]) == N + 50


def test_unpaged_r2_is_bounded_and_pages_on(peers: list[ServerProcess], tmp_path: Path) -> None:
    specs = [("peer-a", peers[0].url), ("peer-b", peers[1].url)]
    router = start_router(tmp_path / "r", specs, env={"MICTLANX_ROUTER_MAX_LISTING": "7000"})
    try:
        url = f"{router.url}{API}/buckets/big/metadata"
        paged = _pages(router.url, "/buckets/big/metadata")
        assert [b["key"] for b in paged] == [f"k{i:06d}" for i in range(N)]
        first = requests.get(url, timeout=TIMEOUT).json()
        assert first["extra"]["truncated"] is True and len(first["balls"]) == 7000
        assert first["extra"]["next_after"] == first["balls"][-1]["key"]
        walked, after = list(first["balls"]), first["extra"]["next_after"]
        while after is not None:
            body = requests.get(url, params={"after": after}, timeout=TIMEOUT).json()
            walked += body["balls"]
            after = body["extra"].get("next_after")
            assert ("truncated" in body["extra"]) == (after is not None)
        assert walked == paged
        # a page inside the bound is merged exactly as before, without the flag
        page = requests.get(url, params={"start": 10, "end": 2010}, timeout=TIMEOUT).json()
        assert page["balls"] == paged[10:2010] and "truncated" not in page["extra"]
    finally:
        router.stop()
    router = start_router(tmp_path / "r2", specs)  # the default bound (100,000): one call lists everything
    try:
        body = requests.get(f"{router.url}{API}/buckets/big/metadata", timeout=TIMEOUT).json()
        assert body["balls"] == paged and "truncated" not in body["extra"]
    finally:
        router.stop()
