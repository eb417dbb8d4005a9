"""A cache hit against a miss for a 64 MiB get (chunk cache on a temporary directory).

Each run clears the cache, then times one get (the miss: every chunk from the router, and
each verified chunk written to the cache) and a second get (the hit: every chunk from the
cache, re-hashed before use). ``nocache`` is the same get with the cache disabled.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .common import BUCKET, MB, log, throughput, timed


def run(uri: str, size: int, chunk_mb: int, reps: int) -> dict[str, Any]:
    from mictlanx_sync import Client

    data = os.urandom(size)
    key = "cache-object"
    miss, hit, nocache = [], [], []
    with tempfile.TemporaryDirectory(prefix="mictlanx-bench-cache-") as directory, \
            Client(uri, cache_path=directory, capacity_storage="2GB", progress=False) as client, \
            Client(uri, capacity_storage="0", progress=False) as plain:
        client.put(BUCKET, key, data, chunk_size=chunk_mb * MB).unwrap()
        for _ in range(reps):
            client.cache.clear()
            miss.append(timed(lambda: client.get(BUCKET, key, chunk_size="1MB").unwrap()))
            hit.append(timed(lambda: client.get(BUCKET, key, chunk_size="1MB").unwrap()))
            nocache.append(timed(lambda: plain.get(BUCKET, key, chunk_size="1MB").unwrap()))
        client.delete(key, BUCKET)
    result = {"size": size, "chunk_mb": chunk_mb, "miss": throughput(size, miss), "hit": throughput(size, hit),
              "nocache": throughput(size, nocache),
              "miss_seconds": sorted(miss)[len(miss) // 2], "hit_seconds": sorted(hit)[len(hit) // 2]}
    result["speedup"] = result["miss_seconds"] / result["hit_seconds"]
    log(f"cache {size >> 20} MiB: miss {result['miss']['median']:.0f} hit {result['hit']['median']:.0f} "
        f"no-cache {result['nocache']['median']:.0f} MB/s, hit {result['speedup']:.1f}x faster")
    return result
