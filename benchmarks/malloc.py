"""Is ``tune_malloc()`` (mallopt via ctypes at server start) equivalent to the environment
variables ``MALLOC_MMAP_THRESHOLD_=134217728 MALLOC_TRIM_THRESHOLD_=1073741824``?

The same workload runs against a fresh LocalVSS per variant:

- ``glibc-default``: ``tune_malloc`` disabled (``_nomalloc/sitecustomize.py``), no variables;
- ``mallopt``: the servers as shipped (``tune_malloc()`` at start), no variables;
- ``env``: ``tune_malloc`` disabled, the two variables set in the servers' environment;
- ``env+mallopt``: both (full run only).

Besides throughput it records the servers' minor page faults and CPU seconds per GB moved,
which is where glibc's mmap threshold shows: a piece above the threshold is mmapped and
page-faulted in afresh, then unmapped on free.
"""

from __future__ import annotations

import os
from typing import Any

from .ceilings import Ceilings
from .common import BUCKET, MB, local_vss, log, server_stats, stats_delta, throughput, timed


def run(variants: list[str], size: int, chunk_mb: int, rf: int, reps: int) -> list[dict[str, Any]]:
    from mictlanx_sync import Client

    data = os.urandom(size)
    import hashlib

    full = hashlib.sha256(data).hexdigest()
    chunk = chunk_mb * MB
    rows = []
    for variant in variants:
        with local_vss(variant=variant) as vss, Client(vss.uri, capacity_storage="0", progress=False) as client:
            ceilings = Ceilings(vss.router_urls[0], vss.peer_urls)
            row: dict[str, Any] = {"variant": variant, "size": size, "chunk_mb": chunk_mb, "rf": rf}
            try:
                # warm-up: one object through each path, not timed
                client.put(BUCKET, "warm", data, chunk_size=chunk, rf=rf).unwrap()
                client.get(BUCKET, "warm", chunk_size="1MB").unwrap()
                client.delete("warm", BUCKET)
                for method in ("client", "router"):
                    times: dict[str, list[float]] = {"put": [], "get": []}
                    counters = {}
                    for op in ("put", "get"):
                        before = server_stats(vss)
                        for rep in range(reps):
                            key = f"malloc-{method}-{rep}"
                            if method == "client" and op == "put":
                                fn = lambda k=key: client.put(BUCKET, k, data, chunk_size=chunk, rf=rf).unwrap()  # noqa: E731
                            elif method == "client":
                                fn = lambda k=key: client.get(BUCKET, k, chunk_size="1MB").unwrap()  # noqa: E731
                            elif op == "put":
                                fn = lambda k=key, ce=ceilings: ce.put("router", k, data, chunk, rf)  # noqa: E731
                            else:
                                fn = lambda k=key, ce=ceilings: ce.get("router", k, size, chunk, full)  # noqa: E731
                            times[op].append(timed(fn))
                        delta = stats_delta(before, server_stats(vss))
                        gb = reps * size / 1e9
                        counters[op] = {"minflt_per_gb": delta["minflt"] / gb, "cpu_s_per_gb": delta["cpu"] / gb}
                    for rep in range(reps):
                        if method == "client":
                            client.delete(f"malloc-{method}-{rep}", BUCKET)
                        else:
                            ceilings.delete(f"malloc-{method}-{rep}")
                    row[method] = {op: {**throughput(size, times[op]), **counters[op]} for op in ("put", "get")}
            finally:
                ceilings.close()
        c, r = row["client"], row["router"]
        log(f"malloc {variant}: client put {c['put']['median']:.0f} get {c['get']['median']:.0f} MB/s, "
            f"raw router put {r['put']['median']:.0f} get {r['get']['median']:.0f} MB/s; server faults/GB "
            f"put {c['put']['minflt_per_gb']:.0f} get {c['get']['minflt_per_gb']:.0f}")
        rows.append(row)
    return rows
