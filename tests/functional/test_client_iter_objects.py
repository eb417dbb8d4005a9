"""Issue 14 point 8: ``Client.iter_objects`` walks a bucket in keyset pages, in bounded memory.

Each object is yielded once and whole even when its chunks span pages and other objects'
keys sort between them (``p_0``, ``p_1x_0``, ``p_1``...); 5,000 objects are walked in
pages of 500 chunk keys, counting the R2 requests and the largest page.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import time
from typing import Any, Iterator

import pytest

from mictlanx_sync import Client, Peer
from mictlanx_sync.errors import ValidationError
from mictlanx_sync.server.local import LocalVSS


@pytest.fixture()
def client(vss: LocalVSS) -> Iterator[Client]:
    with Client(vss.uri, capacity_storage="0", progress=False, max_workers=16) as instance:
        yield instance


class PageCounter:
    """Wraps every router's R2 to count requests and the largest page answered."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests = 0
        self.largest = 0
        self.asked: list[Any] = []
        for router in client.routers:
            original = router.get_bucket_metadata

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                result = _original(*args, **kwargs)
                self.requests += 1
                self.asked.append(kwargs.get("end"))
                if result.is_ok:
                    self.largest = max(self.largest, len(result.unwrap().balls))
                return result

            monkeypatch.setattr(router, "get_bucket_metadata", counted)


def summary(balls: Any) -> dict[str, tuple[int, int, list[str]]]:
    return {b.ball_id: (b.size, len(b.chunks), [c.key for c in b.chunks]) for b in balls}


@pytest.mark.timeout(120)
def test_objects_spanning_pages_and_interleaved_keys(client: Client, bucket: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # "p" has 12 chunks p_0..p_11; "p_1x" (chunks p_1x_0..) sorts between p_1 and p_10.
    names = {"p": 12, "p_1x": 3, "p_": 2, "px": 1, "q": 5, "a": 1, "p_1": 2, "zz": 7}
    for name, chunks in names.items():
        client.put(bucket, name, os.urandom(1000 * chunks - 1), chunk_size=1000).unwrap()
    expected = summary(client.get_bucket_metadata(bucket).unwrap())
    assert sum(n for _, n, _ in expected.values()) == sum(names.values())
    for page_size in (1, 2, 3, 5, 7, 1000):
        counter = PageCounter(client, monkeypatch)
        walked = list(client.iter_objects(bucket, page_size=page_size))
        assert sorted(b.ball_id for b in walked) == sorted(names), page_size  # each once
        assert summary(walked) == expected, page_size  # each whole, chunks in index order
        assert counter.largest <= page_size and set(counter.asked) == {page_size}
        monkeypatch.undo()


def test_empty_bucket_and_bad_arguments(client: Client, bucket: str) -> None:
    assert list(client.iter_objects(bucket)) == []
    with pytest.raises(ValidationError):
        client.iter_objects(bucket, page_size=0)
    with pytest.raises(ValidationError):
        client.iter_objects("not a bucket!")


@pytest.mark.timeout(180)
def test_5000_objects_in_pages_of_500(client: Client, vss: LocalVSS, bucket: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    n = 5000
    started = time.monotonic()
    # Cheaply: each object is one 1-byte chunk written straight to one peer (P1 + P3, as a
    # put through the router would store it); the router lists every peer's keys.
    host, port = vss.peer_urls["mictlanx-peer-0"].split("//", 1)[1].split(":")
    with Peer("mictlanx-peer-0", host, int(port), pool_maxsize=8) as peer:
        def store(i: int) -> bool:
            data = bytes([i % 256])
            checksum = hashlib.sha256(data).hexdigest()
            tags = {"index": "0", "num_chunks": "1", "chunk_size": "1", "full_checksum": checksum}
            meta = peer.put_metadata(f"obj-{i:05d}_0", 1, checksum, "test", "application/octet-stream",
                                     f"obj-{i:05d}", bucket, tags=tags).unwrap()
            return peer.put_chunked(meta.task_id, data).is_ok

        with cf.ThreadPoolExecutor(8) as pool:
            assert all(pool.map(store, range(n)))
    filled = time.monotonic() - started

    counter = PageCounter(client, monkeypatch)
    walked = client.iter_objects(bucket, page_size=500)
    first = next(walked)
    assert first.ball_id == "obj-00000" and counter.requests == 1  # lazy: one page so far
    count, total = 1, first.size
    for ball in walked:
        count += 1
        total += ball.size
        assert len(ball.chunks) == 1
    assert count == n and total == n
    assert counter.requests == n // 500 + 1  # 10 full pages, then an empty one ends the walk
    assert counter.largest == 500
    print(f"filled {n} objects in {filled:.1f} s")
