"""Small objects: put and get ops/s with 1, 4 and 16 threads sharing one Client, and the
unpooled baseline (a new ``requests.Session`` per request, chunks one after another).

The baseline is the same ``Client`` code with ``Transport.session`` patched (in this
process only, for the duration of the measurement) to build a fresh session, hence a new
TCP connection, for every request, and ``max_workers=1`` so chunks go one at a time: what a
client without connection pooling or parallelism costs.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import time
from typing import Any, Iterator

from .common import BUCKET, MB, log, summarize, throughput, timed


def _ops(client: Any, op: str, keys: list[str], payload: bytes, pool: cf.ThreadPoolExecutor, threads: int) -> float:
    """Run ``op`` on every key with ``threads`` workers; returns ops/s."""
    slices = [keys[t::threads] for t in range(threads)]

    def worker(mine: list[str]) -> None:
        for key in mine:
            if op == "put":
                client.put(BUCKET, key, payload).unwrap()
            else:
                assert client.get(BUCKET, key).unwrap().data.nbytes == len(payload)

    started = time.perf_counter()
    for future in [pool.submit(worker, s) for s in slices]:
        future.result()
    return len(keys) / (time.perf_counter() - started)


def measure(client: Any, sizes: list[int], threads_list: list[int], ops: int, reps: int,
            label: str) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        payload = os.urandom(size)
        for threads in threads_list:
            pool = cf.ThreadPoolExecutor(threads, "small")
            put_runs, get_runs, written = [], [], []
            for rep in range(reps):
                keys = [f"{label}-s{size}-t{threads}-r{rep}-{i}" for i in range(ops)]
                put_runs.append(_ops(client, "put", keys, payload, pool, threads))
                written.extend(keys)
                get_runs.append(_ops(client, "get", keys, payload, pool, threads))
            pool.shutdown()
            for key in written:
                client.delete(key, BUCKET)
            row = {"client": label, "size": size, "threads": threads, "ops_per_rep": ops,
                   "put": summarize(put_runs), "get": summarize(get_runs)}
            log(f"small {label} {size} B x{threads}: put {row['put']['median']:.0f}/s "
                f"get {row['get']['median']:.0f}/s")
            rows.append(row)
    return rows


@contextlib.contextmanager
def unpooled() -> Iterator[None]:
    """Every request of every Transport gets a brand-new session (no connection reuse)."""
    from mictlanx_sync.protocol import transport

    original = transport.Transport.session

    def fresh(self: Any) -> Any:
        return self._new_session()

    transport.Transport.session = fresh  # type: ignore[method-assign]
    try:
        yield
    finally:
        transport.Transport.session = original  # type: ignore[method-assign]


def run(uri: str, sizes: list[int], threads_list: list[int], ops: int, reps: int) -> list[dict[str, Any]]:
    from mictlanx_sync import Client

    with Client(uri, capacity_storage="0", progress=False) as client:
        return measure(client, sizes, threads_list, ops, reps, "pooled")


def run_baseline(uri: str, sizes: list[int], threads_list: list[int], ops: int, reps: int,
                 large_size: int, large_chunk_mb: int) -> dict[str, Any]:
    from mictlanx_sync import Client

    with unpooled(), Client(uri, capacity_storage="0", progress=False, max_workers=1,
                            max_bulk_workers=1) as client:
        small = measure(client, sizes, threads_list, ops, reps, "unpooled")
        data = os.urandom(large_size)
        put_t, get_t = [], []
        for rep in range(reps):
            key = f"unpooled-large-{rep}"
            put_t.append(timed(lambda k=key: client.put(BUCKET, k, data, chunk_size=large_chunk_mb * MB,
                                                         max_concurrency=1).unwrap()))
            get_t.append(timed(lambda k=key: client.get(BUCKET, k, chunk_size="1MB", max_paralell_gets=1).unwrap()))
        for rep in range(reps):
            client.delete(f"unpooled-large-{rep}", BUCKET)
    large = {"size": large_size, "chunk_mb": large_chunk_mb, "rf": 1,
             "put": throughput(large_size, put_t), "get": throughput(large_size, get_t)}
    log(f"unpooled large {large_size >> 20} MiB: put {large['put']['median']:.0f} "
        f"get {large['get']['median']:.0f} MB/s")
    return {"small": small, "large": large}
