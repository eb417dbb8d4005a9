"""Where a verified GET's CPU goes: CPU seconds per GB of the client, the router and each peer.

A GET moves every byte through four processes (peer → router → client, plus the hashing in the
client). Their CPU seconds per GB, summed, bound the throughput the machine can reach when they
share its cores: ``cores / total``. Measured for ``verify_full=True`` (the default: each chunk
hashed, and the whole object hashed again for ``full_checksum``) and ``verify_full=False``
(each chunk still hashed), with the cache off.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .common import BUCKET, MB, log, self_stat, server_stats, summarize


def run(vss: Any, size: int, chunk_mb: int, reps: int) -> list[dict[str, Any]]:
    from mictlanx_sync import Client

    key = "budget-object"
    # /proc counts CPU in 10 ms ticks: each run moves at least 512 MiB so a tick is < 2% of it
    gets_per_run = max(1, (512 << 20) // size)
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    with Client(vss.uri, capacity_storage="0", progress=False) as client:
        client.put(BUCKET, key, os.urandom(size), chunk_size=chunk_mb * MB).unwrap()
        for verify_full in (True, False):
            runs: list[dict[str, float]] = []
            for _ in range(reps):
                servers_before, client_before = server_stats(vss), self_stat()
                started = time.perf_counter()
                for _ in range(gets_per_run):
                    client.get(BUCKET, key, chunk_size="1MB", verify_full=verify_full).unwrap()
                seconds = time.perf_counter() - started
                servers_after, client_after = server_stats(vss), self_stat()
                gb = size * gets_per_run / 1e9
                run = {"mb_s": gb * 1e9 / seconds / MB, "client": (client_after["cpu"] - client_before["cpu"]) / gb}
                for name in servers_after:
                    role = "router" if "router" in name else "peers"
                    run[role] = run.get(role, 0.0) + (servers_after[name]["cpu"] - servers_before[name]["cpu"]) / gb
                run["total"] = run["client"] + run.get("router", 0.0) + run.get("peers", 0.0)
                runs.append(run)
            row: dict[str, Any] = {"verify_full": verify_full, "size": size, "chunk_mb": chunk_mb, "cores": cores}
            for field in ("mb_s", "client", "router", "peers", "total"):
                row[field] = summarize([r.get(field, 0.0) for r in runs])
            row["bound_mb_s"] = cores / row["total"]["median"] * 1e9 / MB
            rows.append(row)
            log(f"budget verify_full={verify_full}: {row['mb_s']['median']:.0f} MB/s; CPU s/GB client "
                f"{row['client']['median']:.2f} router {row['router']['median']:.2f} peers "
                f"{row['peers']['median']:.2f} -> {cores}-core bound {row['bound_mb_s']:.0f} MB/s")
        client.delete(key, BUCKET)
    return rows
