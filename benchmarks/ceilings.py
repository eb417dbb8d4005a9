"""The ceilings: raw ``requests`` without the Client, straight to a peer or through the router.

- ``peer``: P1 + P3 to the peer(s) (rf 2: both peers, concurrently) and P5 back;
- ``router``: R5 + R7 through the router and R11 back.

Both do the Client's hashing (SHA-256 of the whole object, and of every chunk before it is
sent or as it is received, then the whole object again after a GET) and move chunks with
the Client's default parallelism (10 in flight), streamed in 1 MiB pieces, so the gap to the
Client is the Client's own overhead (retry layer, existence check, bookkeeping) and, for the
router, the extra hop.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import threading
from typing import Any, Iterator

from .common import BUCKET, MiB, router_session

PIECE = MiB
IN_FLIGHT = 10


class _Sized:
    """A body of known length streamed in 1 MiB memoryview pieces (like the Client's)."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return self.view.nbytes

    def __iter__(self) -> Iterator[memoryview]:
        for start in range(0, self.view.nbytes, PIECE):
            yield self.view[start:start + PIECE]


def _meta(key: str, ball_id: str, size: int, checksum: str, index: int, n: int, full: str) -> dict[str, Any]:
    return {"key": key, "size": size, "checksum": checksum, "producer_id": "bench",
            "content_type": "application/octet-stream", "ball_id": ball_id, "bucket_id": BUCKET,
            "tags": {"index": str(index), "num_chunks": str(n), "full_checksum": full}}


class Ceilings:
    def __init__(self, router_url: str, peer_urls: dict[str, str]) -> None:
        self.router = router_url
        self.peers = [peer_urls[k] for k in sorted(peer_urls)]
        self.session = router_session(64)
        self.pool = cf.ThreadPoolExecutor(IN_FLIGHT, "ceiling")
        self.side = cf.ThreadPoolExecutor(IN_FLIGHT, "ceiling-replica")
        self.placement: dict[str, list[list[str]]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown()
        self.side.shutdown()
        self.session.close()

    # --- helpers -----------------------------------------------------------------------------
    def _chunks(self, data: bytes, chunk_size: int) -> list[memoryview]:
        view = memoryview(data)
        return [view[s:s + chunk_size] for s in range(0, len(view), chunk_size)] or [view[:0]]

    def _post(self, url: str, **kwargs: Any) -> Any:
        import requests

        for attempt in range(3):  # a pooled connection the server closed (keep-alive 5 s) as we reused it
            try:
                response = self.session.post(url, timeout=(5, 120), **kwargs)
                break
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        if response.status_code >= 300:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:200]}")
        return response

    def _peer_put(self, peer: str, meta: dict[str, Any], view: memoryview) -> None:
        task = self._post(f"{peer}/api/v4/buckets/{BUCKET}/metadata", json=meta).json()["task_id"]
        self._post(f"{peer}/api/v4/buckets/data/{task}/chunked", data=_Sized(view),
                   headers={"Content-Type": "application/octet-stream"})

    # --- PUT -----------------------------------------------------------------------------------
    def put(self, where: str, key: str, data: bytes, chunk_size: int, rf: int) -> None:
        full = hashlib.sha256(data).hexdigest()
        chunks = self._chunks(data, chunk_size)
        n = len(chunks)
        placement: list[list[str]] = [[] for _ in chunks]

        def one(i: int) -> None:
            view = chunks[i]
            checksum = hashlib.sha256(view).hexdigest()
            meta = _meta(f"{key}_{i}", key, view.nbytes, checksum, i, n, full)
            if where == "router":
                answer = self._post(f"{self.router}/api/v4/buckets/{BUCKET}/metadata",
                                    json={**meta, "replication_factor": rf}).json()
                group = answer["tasks_ids"][0]
                if not answer.get("extra", {}).get("exists"):
                    self._post(f"{self.router}/api/v4/buckets/data/{group}/chunked", data=_Sized(view),
                               headers={"Content-Type": "application/octet-stream"})
                return
            targets = [self.peers[(i + r) % len(self.peers)] for r in range(rf)]
            placement[i] = targets
            extra = [self.side.submit(self._peer_put, p, meta, view) for p in targets[1:]]
            self._peer_put(targets[0], meta, view)
            for future in extra:
                future.result()

        for future in [self.pool.submit(one, i) for i in range(n)]:
            future.result()
        if where == "peer":
            with self._lock:
                self.placement[key] = placement

    # --- GET -----------------------------------------------------------------------------------
    def get(self, where: str, key: str, size: int, chunk_size: int, full: str) -> None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        n = max(1, -(-size // chunk_size))
        placement = self.placement.get(key)

        def one(i: int) -> None:
            import requests

            for attempt in range(3):  # see _post: a reused connection the server had just closed
                try:
                    return fetch(i)
                except requests.ConnectionError:
                    if attempt == 2:
                        raise

        def fetch(i: int) -> None:
            base = self.router if where == "router" else placement[i][0]  # type: ignore[index]
            url = f"{base}/api/v4/buckets/{BUCKET}/{key}_{i}"
            with self.session.get(url, stream=True, timeout=(5, 120),
                                  headers={"Accept-Encoding": "identity", "Chunk-Size": str(PIECE)}) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url}: {response.status_code}")
                length = int(response.headers["Content-Length"])
                etag = response.headers["ETag"].strip('"')
                hasher = hashlib.sha256()
                position = i * chunk_size
                received = 0
                for piece in response.iter_content(PIECE):
                    view[position + received:position + received + len(piece)] = piece
                    hasher.update(piece)
                    received += len(piece)
                if received != length or hasher.hexdigest() != etag:
                    raise RuntimeError(f"GET {url}: bad body")

        for future in [self.pool.submit(one, i) for i in range(n)]:
            future.result()
        if hashlib.sha256(view).hexdigest() != full:
            raise RuntimeError(f"{key}: full checksum mismatch")

    def delete(self, key: str) -> None:
        self.session.delete(f"{self.router}/api/v4/buckets/{BUCKET}/bid/{key}", timeout=(5, 120))
        self.placement.pop(key, None)
