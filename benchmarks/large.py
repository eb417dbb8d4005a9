"""Large objects: PUT and GET through the Client, with the raw ceilings of the same run.

For each (object size, chunk size, rf), the methods ``client``, ``router`` (R7/R11 raw) and
``peer`` (P3/P5 raw) are interleaved run by run (put 1 of each, put 2 of each, ...), then
read back the same way, so load drift hits every method alike. Each run writes a new key;
the objects are deleted after the configuration.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .ceilings import Ceilings
from .common import BUCKET, MB, log, self_stat, server_stats, stats_delta, throughput, timed

METHODS = ("client", "router", "peer")


def run(vss: Any, sizes: list[int], chunk_sizes_mb: list[int], rfs: list[int], reps: int,
        ceilings_for: Any = None) -> list[dict[str, Any]]:
    from mictlanx_sync import Client

    peers = vss.peer_urls
    results = []
    client = Client(vss.uri, capacity_storage="0", progress=False)
    ceilings = Ceilings(vss.router_urls[0], peers)
    try:
        for size in sizes:
            data = bytes(__import__("os").urandom(size))
            full = hashlib.sha256(data).hexdigest()
            for cs_mb in chunk_sizes_mb:
                for rf in rfs:
                    methods = [m for m in METHODS if m == "client" or ceilings_for is None
                               or ceilings_for(size, cs_mb, rf)]
                    results.append(_one(client, ceilings, data, full, size, cs_mb, rf, reps, methods, vss))
            del data
    finally:
        client.close()
        ceilings.close()
    return results


def _one(client: Any, ceilings: Ceilings, data: bytes, full: str, size: int, cs_mb: int, rf: int, reps: int,
         methods: list[str], vss: Any) -> dict[str, Any]:
    chunk = cs_mb * MB
    tag = f"L{size >> 20}-c{cs_mb}-rf{rf}"
    put_t: dict[str, list[float]] = {m: [] for m in methods}
    get_t: dict[str, list[float]] = {m: [] for m in methods}
    faults: dict[str, Any] = {}

    def put(method: str, key: str) -> None:
        if method == "client":
            client.put(BUCKET, key, data, chunk_size=chunk, rf=rf).unwrap()
        else:
            ceilings.put(method, key, data, chunk, rf)

    def get(method: str, key: str) -> None:
        if method == "client":
            got = client.get(BUCKET, key, chunk_size="1MB").unwrap()
            assert got.data.nbytes == size
        else:
            ceilings.get(method, key, size, chunk, full)

    for op, times, fn in (("put", put_t, put), ("get", get_t, get)):
        before_s, before_c = server_stats(vss), self_stat()
        for rep in range(reps):
            for method in methods:
                times[method].append(timed(lambda m=method, r=rep, call=fn: call(m, f"{tag}-{m}-{r}")))
        after_s, after_c = server_stats(vss), self_stat()
        faults[op] = {"servers": stats_delta(before_s, after_s),
                      "bench_process": {"minflt": after_c["minflt"] - before_c["minflt"],
                                        "cpu": after_c["cpu"] - before_c["cpu"]}}
    for rep in range(reps):
        for method in methods:
            key = f"{tag}-{method}-{rep}"
            if method == "client":
                client.delete(key, BUCKET)
            else:
                ceilings.delete(key)
    row = {"size": size, "chunk_mb": cs_mb, "rf": rf,
           "put": {m: throughput(size, put_t[m]) for m in methods},
           "get": {m: throughput(size, get_t[m]) for m in methods},
           "counters": faults}
    line = " ".join(f"{op} {m} {row[op][m]['median']:.0f}" for op in ("put", "get") for m in methods)
    log(f"large {size >> 20} MiB chunk {cs_mb} MB rf {rf}: {line} MB/s")
    return row
