"""Scale benchmark (issue 16): one peer at growing ball counts.

    python -m benchmarks.scale --balls 1000000 [--steps 0,100000,1000000] [--dir DIR] [--out FILE]

Fills one peer's data dir with the **bulk loader** ``Storage.bulk_load`` (labelled as such in
the report): it writes each ball's file and its index row through the peer's own storage layer,
5,000 per transaction, with the peer stopped. It is not the API path (no P1/P3, no fsync, no
capacity or version checks); a million two-phase uploads over HTTP would take hours here.
The "empty" step holds only the probe balls (``--probes``, 2,000), so GETs have keys to hit.
Balls of at most ``--inline-ball-max`` bytes (the peer's default, 4000; 0: files) are kept in
the index, as the peer keeps them (docs/storage.md); the table gives the disk per ball.

At each step a peer process is started on the data dir and measured over keep-alive HTTP:
- restart: process start to the first ``/health`` 200, after a clean stop (SIGTERM) and after
  a SIGKILL (median of 3 each);
- P4 (metadata) and P5 (data) GET latency, p50/p99 over 2,000 random keys;
- a keyset page of P6 (``after`` = a random key, ``end=1000``), p50/p99 over 200 pages;
- the peer's RSS idle after start, and its peak (VmHWM) after the measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from mictlanx_sync.server.peer.config import DEFAULT_INLINE_BALL_MAX
from mictlanx_sync.server.peer.storage import Ball, Storage

from .common import MiB, loadavg, log, proc_status

API = "/api/v4"
BUCKET = "scale"


def key_of(i: int) -> str:
    return f"k{i:07d}"


def balls(first: int, last: int, size: int) -> Iterator[tuple[Ball, bytes]]:
    for i in range(first, last):
        data = (f"{key_of(i)}:".encode() * (size // 9 + 1))[:size]
        yield Ball(BUCKET, key_of(i), size, hashlib.sha256(data).hexdigest(), tags={"i": str(i)},
                   version=f"{i:013d}-scale"), data


def fill(data_dir: Path, first: int, last: int, size: int, inline_max: int) -> float:
    """Bulk-load keys ``first..last-1``; the seconds it took."""
    started = time.perf_counter()
    storage = Storage(data_dir, fsync=False, inline_max=inline_max)
    try:
        step = 50_000
        for at in range(first, last, step):
            storage.bulk_load(balls(at, min(last, at + step), size))
            log(f"  loaded {min(last, at + step):,} balls ({time.perf_counter() - started:.0f}s)")
    finally:
        storage.close()
    return time.perf_counter() - started


class Peer:
    def __init__(self, data_dir: Path, inline_max: int) -> None:
        self.data_dir = data_dir
        self.inline_max = inline_max
        self.proc: Any = None
        self.url = ""

    def start(self) -> float:
        """Start the process; the seconds until /health answers 200."""
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mictlanx_sync", "peer", "--peer-id", "scale-peer", "--data-dir",
             str(self.data_dir), "--port", "0", "--inline-ball-max", str(self.inline_max)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"peer did not start: {line!r}")
        self.url = line.split()[-1].rstrip("/")
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.002)

    def stop(self, kill: bool = False) -> None:
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(60)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def measure(peer: Peer, total: int, samples: int, pages: int, rng: random.Random) -> dict[str, Any]:
    session = requests.Session()
    keys = [key_of(i) for i in rng.sample(range(total), min(samples, total))]
    out: dict[str, Any] = {"rss_idle": proc_status(peer.proc.pid, "VmRSS")}
    for name, path in (("p4", f"{API}/buckets/{BUCKET}/metadata/{{}}"), ("p5", f"{API}/buckets/{BUCKET}/{{}}")):
        times = []
        for key in keys:
            started = time.perf_counter()
            response = session.get(peer.url + path.format(key), timeout=30)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        out[name] = percentiles(times)
    times = []
    for _ in range(pages):
        after = key_of(rng.randrange(total))
        started = time.perf_counter()
        response = session.get(f"{peer.url}{API}/buckets/{BUCKET}/metadata", params={"after": after, "end": 1000},
                               timeout=30)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and len(response.json()["balls"]) == min(1000, total - 1 - int(after[1:]))
    out["page"] = percentiles(times)
    out["rss_peak"] = proc_status(peer.proc.pid, "VmHWM")
    return out


def restarts(peer: Peer, runs: int = 3) -> dict[str, float]:
    clean, crash = [], []
    for _ in range(runs):
        peer.stop()
        clean.append(peer.start())
    for _ in range(runs):
        peer.stop(kill=True)
        crash.append(peer.start())
    return {"clean": statistics.median(clean), "crash": statistics.median(crash)}


def disk(data_dir: Path) -> tuple[int, int]:
    """(bytes on disk of balls/, bytes of the index files but its reserve, which is fixed headroom)."""
    blocks = sum(entry.stat().st_blocks for entry in os.scandir(data_dir / "balls")) * 512
    index = sum(p.stat().st_size for p in data_dir.glob("index.sqlite3*") if not p.name.endswith("-reserve"))
    return blocks, index


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--balls", type=int, default=1_000_000, help="the largest step (default 1,000,000)")
    parser.add_argument("--steps", default="", help="ball counts, comma-separated (default 0,100000,BALLS)")
    parser.add_argument("--size", type=int, default=512, help="bytes per ball (default 512)")
    parser.add_argument("--inline-ball-max", type=int, default=DEFAULT_INLINE_BALL_MAX,
                        help=f"balls kept in the index up to this size (default {DEFAULT_INLINE_BALL_MAX}; 0: files)")
    parser.add_argument("--probes", type=int, default=2000, help="balls of the 'empty' step (default 2,000)")
    parser.add_argument("--samples", type=int, default=2000, help="GETs per measurement (default 2,000)")
    parser.add_argument("--pages", type=int, default=200, help="keyset pages per measurement (default 200)")
    parser.add_argument("--dir", default="", help="data dir (default: a temporary one, removed at the end)")
    parser.add_argument("--out", default="", help="also write the Markdown table here")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")] if args.steps else [0, 100_000, args.balls]
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mictlanx-scale-"))
    data_dir = base / "peer"
    rng = random.Random(16)
    rows = []
    loaded = 0
    peer = Peer(data_dir, args.inline_ball_max)
    try:
        for step in steps:
            total = max(step, args.probes)
            if total > loaded:
                log(f"bulk-loading {loaded:,} -> {total:,} balls")
                seconds = fill(data_dir, loaded, total, args.size, args.inline_ball_max)
                log(f"  {total - loaded:,} balls in {seconds:.0f}s ({(total - loaded) / seconds:,.0f}/s)")
                loaded = total
            first = peer.start()
            log(f"step {step:,}: first start {first:.2f}s; load {loadavg()}")
            result = measure(peer, total, args.samples, args.pages, rng)
            result.update(restarts(peer), first_start=first, step=step, total=total, load=loadavg())
            result["disk"], result["index"] = disk(data_dir)
            peer.stop()
            log(f"  {result}")
            rows.append(result)
        table = render(rows, args)
        print(table, flush=True)
        if args.out:
            Path(args.out).write_text(table)
    finally:
        if peer.proc is not None and peer.proc.poll() is None:
            peer.stop()
        if not args.dir:
            log(f"removing {base}")
            shutil.rmtree(base, ignore_errors=True)
    return 0


def render(rows: list[dict[str, Any]], args: Any) -> str:
    lines = ["| balls | P4 GET p50 / p99 ms | P5 GET p50 / p99 ms | keyset page (end=1000) p50 / p99 ms | "
             "restart clean / after SIGKILL s | RSS idle / peak MiB | balls/ on disk | index | disk per ball | "
             "load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = f"{r['step']:,}" if r["step"] >= args.probes else f"{r['step']:,} (+{r['total']:,} probes)"
        lines.append(
            f"| {label} | {r['p4'][0]:.2f} / {r['p4'][1]:.2f} | {r['p5'][0]:.2f} / {r['p5'][1]:.2f} | "
            f"{r['page'][0]:.2f} / {r['page'][1]:.2f} | {r['clean']:.2f} / {r['crash']:.2f} | "
            f"{r['rss_idle'] / MiB:.0f} / {r['rss_peak'] / MiB:.0f} | {r['disk'] / MiB:,.0f} MiB | "
            f"{r['index'] / MiB:,.0f} MiB | {(r['disk'] + r['index']) / r['total']:,.0f} B | {r['load'][0]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
