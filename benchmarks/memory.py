"""Peak RSS of the client and of the router for put_file / get_to_file of a large file.

The client runs in a fresh subprocess per operation (``python -m benchmarks.memory child``)
and reports its ``VmHWM`` (peak RSS over its whole life, imports included) and its RSS
before the operation. The router's (and peers') RSS is sampled from /proc every 20 ms by
the parent while the child runs; growth = peak - RSS just before the operation.
Target: client peak <= 100 MB + max_workers x chunk_size; router growth <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import BUCKET, MB, MiB, RssSampler, log, server_pids, summarize

MAX_WORKERS = 12


def _child(args: argparse.Namespace) -> None:
    from mictlanx_sync import Client

    from .common import proc_status

    pid = os.getpid()
    with Client(args.uri, capacity_storage="0", progress=False, max_workers=MAX_WORKERS) as client:
        before = proc_status(pid, "VmRSS")
        started = time.perf_counter()
        if args.op == "put_file":
            client.put_file(BUCKET, args.key, args.path, chunk_size=args.chunk).unwrap()
        else:
            client.get_to_file(BUCKET, args.key, output_path=args.path, fullname="out.bin", chunk_size="1MB",
                               overwrite=True).unwrap()
        seconds = time.perf_counter() - started
        print(json.dumps({"rss_before": before, "peak": proc_status(pid, "VmHWM"),
                          "rss_after": proc_status(pid, "VmRSS"), "seconds": seconds}))


def _run_child(uri: str, op: str, key: str, path: str, chunk: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.memory", "child", "--uri", uri, "--op", op, "--key", key,
           "--path", path, "--chunk", str(chunk)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode != 0:
        raise RuntimeError(f"{op} child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(vss: Any, size: int, chunk_mb: int, reps: int) -> dict[str, Any]:
    chunk = chunk_mb * MB
    pids = server_pids(vss)
    out: dict[str, Any] = {"size": size, "chunk_mb": chunk_mb, "max_workers": MAX_WORKERS,
                           "client_budget": 100 * MB + MAX_WORKERS * chunk}
    with tempfile.TemporaryDirectory(prefix="mictlanx-bench-mem-") as directory:
        source = os.path.join(directory, "source.bin")
        with open(source, "wb") as handle:
            for start in range(0, size, 16 * MiB):
                handle.write(os.urandom(min(16 * MiB, size - start)))
        for op in ("put_file", "get_to_file"):
            runs = []
            for rep in range(reps):
                # put_file run 0 writes "memory-object", which get_to_file then reads back
                key = "memory-object" if op == "get_to_file" or rep == 0 else f"memory-object-{rep}"
                path = source if op == "put_file" else os.path.join(directory, "out")
                with RssSampler(pids) as sampler:
                    child = _run_child(vss.uri, op, key, path, chunk)
                growth = {name: sampler.peak[name] - sampler.start_rss[name] for name in pids}
                runs.append({"client": child, "servers_start": sampler.start_rss, "servers_peak": sampler.peak,
                             "servers_growth": growth, "throughput": size / child["seconds"] / MB})
                if op == "get_to_file":
                    os.unlink(os.path.join(directory, "out", "out.bin"))
            router = next(n for n in pids if "router" in n)
            out[op] = {
                "client_peak": summarize([r["client"]["peak"] / MB for r in runs]),
                "client_rss_before": summarize([r["client"]["rss_before"] / MB for r in runs]),
                "router_growth": summarize([r["servers_growth"][router] / MB for r in runs]),
                "router_peak": summarize([r["servers_peak"][router] / MB for r in runs]),
                "peers_growth": {n: summarize([r["servers_growth"][n] / MB for r in runs])
                                 for n in pids if n != router},
                "throughput": summarize([r["throughput"] for r in runs]),
                "runs": runs,
            }
            log(f"memory {op} {size >> 20} MiB chunk {chunk_mb} MB: client peak "
                f"{out[op]['client_peak']['median']:.0f} MB (budget {out['client_budget'] / MB:.0f}), router growth "
                f"{out[op]['router_growth']['median']:.0f} MB, {out[op]['throughput']['median']:.0f} MB/s")
            if op == "put_file":  # keep one copy (memory-object) for get_to_file, drop the others
                client_cleanup(vss.uri, [f"memory-object-{r}" for r in range(1, reps)])
        client_cleanup(vss.uri, ["memory-object"])
    return out


def client_cleanup(uri: str, keys: list[str]) -> None:
    from mictlanx_sync import Client

    with Client(uri, capacity_storage="0", progress=False) as client:
        for key in keys:
            client.delete(key, BUCKET)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    child = sub.add_parser("child")
    child.add_argument("--uri", required=True)
    child.add_argument("--op", choices=["put_file", "get_to_file"], required=True)
    child.add_argument("--key", required=True)
    child.add_argument("--path", required=True)
    child.add_argument("--chunk", type=int, required=True)
    _child(parser.parse_args())


if __name__ == "__main__":
    main()
