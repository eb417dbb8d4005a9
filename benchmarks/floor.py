"""What a verified read costs this machine before any client code: ``python -m benchmarks.floor``.

Issue 13 asks for a verified ``get`` at ≤ 0.8 s of client CPU per GB. This measures the parts
no client can avoid, each in the client's process, CPU seconds per GB (10^9 bytes):

- **sha256**: ``hashlib.sha256().update`` over 1 MiB pieces already in memory (the
  verification every byte needs; OpenSSL's own ``openssl speed -evp sha256`` is printed
  next to it when the command exists);
- **receive**: the object's chunks read from the peer (P5) over one kept-alive connection
  into one reused 1 MiB buffer, no hashing: the kernel's copy out of the socket and the
  HTTP framing, the least Python there can be;
- **receive + sha256**: the same, each piece hashed where it landed: the floor of a
  verified read into memory that is already mapped;
- **fresh memory**: first touch of a new 128 MiB buffer, per GB (what a ``get`` into new
  memory adds; the client's ``result_buffer_pool`` avoids it when results are released).

Writes ``benchmarks/results/floor-<date>.md``. Never run as a test.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import mmap
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Callable
from urllib.parse import urlsplit

from .common import BUCKET, MiB, loadavg, log

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _cpu_per_gb(fn: Callable[[], int], reps: int) -> list[float]:
    values = []
    for _ in range(reps):
        started = time.process_time()
        moved = fn()
        values.append((time.process_time() - started) / (moved / 1e9))
    return values


def _sha256_only(size: int) -> int:
    piece = os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(piece)
    return size


def _receive(peer_url: str, keys: list[str], hashed: bool) -> int:
    """Every chunk from the peer over one connection into one reused buffer; bytes read."""
    parts = urlsplit(peer_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    buffer = memoryview(bytearray(MiB))
    total = 0
    try:
        for key in keys:
            connection.request("GET", f"/api/v4/buckets/{BUCKET}/{key}")
            answer = connection.getresponse()
            if answer.status != 200:
                raise SystemExit(f"P5 {key}: {answer.status}")
            digest = hashlib.sha256()
            while True:
                got = answer.readinto(buffer)
                if not got:
                    break
                if hashed:
                    digest.update(buffer[:got])
                total += got
    finally:
        connection.close()
    return total


def _fresh_memory(size: int) -> int:
    region = mmap.mmap(-1, size)
    view = memoryview(region)
    for offset in range(0, size, mmap.PAGESIZE):  # one write per page: each takes its fault
        view[offset] = 1
    view.release()
    region.close()
    return size


def _openssl_speed() -> str:
    if shutil.which("openssl") is None:
        return "openssl not installed"
    done = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", str(MiB), "-seconds", "2"],
                          capture_output=True, text=True, timeout=60)
    last = done.stdout.strip().splitlines()[-1:] or ["?"]
    try:
        kbytes = float(last[0].split()[-1].rstrip("k"))
    except ValueError:
        return last[0]
    return f"{kbytes * 1000 / 1e9:.2f} GB/s = {1e9 / (kbytes * 1000):.2f} s/GB (1 MiB blocks)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="object size (default 256 MiB)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)

    from mictlanx_sync import Client
    from mictlanx_sync.server.local import LocalVSS

    size = args.size_mib * MiB
    load_start = loadavg()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, \
            LocalVSS(peers=1, routers=1, mode="process", data_dir=tmp) as vss, \
            Client(vss.uri, capacity_storage="0", progress=False) as client:
        client.put(BUCKET, "floor", os.urandom(size), chunk_size="16MB").unwrap()
        keys = [f"floor_{i}" for i in range(-(-size // 16_000_000))]
        peer_url = next(iter(vss.peer_urls.values()))
        rows["sha256"] = _cpu_per_gb(lambda: _sha256_only(size), args.reps)
        for _ in range(args.reps):  # alternating, so both see the same load
            rows.setdefault("receive", []).extend(_cpu_per_gb(lambda: _receive(peer_url, keys, False), 1))
            rows.setdefault("receive + sha256", []).extend(_cpu_per_gb(lambda: _receive(peer_url, keys, True), 1))
        rows["fresh memory"] = _cpu_per_gb(lambda: _fresh_memory(128 * MiB), args.reps)
    lines = [f"# What a verified read costs this machine ({datetime.date.today()})", "",
             f"`python -m benchmarks.floor` ({args.size_mib} MiB, {args.reps} runs each; {os.cpu_count()} CPUs; "
             f"load {load_start} at start, {loadavg()} at end). Client-process CPU seconds per GB, median (min–max).",
             "", "| part | CPU s/GB |", "|---|---|"]
    for name, values in rows.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}) |")
    lines += ["", f"`openssl speed -evp sha256`: {_openssl_speed()}.", ""]
    text = "\n".join(lines)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"floor-{datetime.date.today()}.md")
    with open(path, "w") as handle:
        handle.write(text)
    log(f"wrote {path}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
