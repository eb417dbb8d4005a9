"""Issue 13's targets, before and after, measured in one run: ``python -m benchmarks.fastpaths``.

Two trees are measured alternately (before, after, before, after, ...): the working tree, and
``--before REV`` (default: 133532a, the last commit before issue 13's fast paths) extracted
with ``git archive`` into a temporary directory. Each round starts a fresh worker process per
tree with that tree first on ``PYTHONPATH``, so client, router and peers all come from the
tree under test; the worker starts its own process-mode ``LocalVSS`` (1 router, 2 peers, rf 1,
loopback) and measures:

- **large**: ``Client.get`` of a 128 MiB and a 256 MiB object (chunk 16 MB, cache off, verified:
  every chunk and the whole object), alternating run by run with the ceiling the issue defines,
  *one plain ``requests`` stream from the peer with SHA-256*: the same bytes read from the
  holder peer (P5, its chunks one after another on one kept-alive session, ``stream=True``,
  ``iter_content(1 MiB)``, each piece hashed). MB/s (10^6) and the worker's CPU seconds per GB
  (``time.process_time``: the client's process only; the servers are other processes). Each
  result is dropped before the next get, so from the second get on the client reuses its
  memory (``result_buffer_pool``); a third measurement, in trees that have the option, reads
  with ``result_buffer_pool=0`` (every result in fresh memory).
- **small**: 1 KiB put and get ops/s with 1 and 16 threads sharing one ``Client`` (each rep: a
  batch of new keys put, then read back).

Writes ``benchmarks/results/fastpaths-<date>.md`` and ``.json`` (``--name`` another stem). Never
run as a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

MiB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_BEFORE = "133532a"


def _median(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# --- the worker: runs inside one tree ---------------------------------------------------------
def _plain_stream(session: Any, peer_url: str, bucket: str, keys: list[str]) -> int:
    """The ceiling: the object's chunks from the peer, one stream after another, hashed."""
    received = 0
    for key in keys:
        digest = hashlib.sha256()
        with session.get(f"{peer_url}/api/v4/buckets/{bucket}/{key}", stream=True, timeout=(5, 120)) as resp:
            resp.raise_for_status()
            for piece in resp.iter_content(MiB):
                digest.update(piece)
                received += len(piece)
    return received


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _large(client: Any, fresh: Any, vss: Any, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    import requests

    rows = []
    session = requests.Session()
    for size in sizes:
        data = os.urandom(size)
        key = f"large-{size >> 20}"
        client.put("bench", key, data, chunk_size="16MB").unwrap()
        n = -(-size // 16_000_000)
        keys = [f"{key}_{i}" for i in range(n)]
        holders = {}
        for chunk in keys:  # where each chunk lives: the ceiling reads it there
            for url in vss.peer_urls.values():
                if requests.get(f"{url}/api/v4/buckets/bench/metadata/{chunk}", timeout=10).status_code == 200:
                    holders[chunk] = url
                    break
        del data
        client_runs: list[tuple[float, float]] = []
        fresh_runs: list[tuple[float, float]] = []
        plain_runs: list[tuple[float, float]] = []
        def read_client(key: str = key) -> None:
            client.get("bench", key).unwrap()

        def read_fresh(key: str = key) -> None:
            fresh.get("bench", key).unwrap()

        def read_plain(keys: list[str] = keys, holders: dict[str, str] = holders) -> None:
            for chunk in keys:
                _plain_stream(session, holders[chunk], "bench", [chunk])

        for _ in range(reps):
            client_runs.append(_timed(read_client))
            plain_runs.append(_timed(read_plain))
            if fresh is not None:
                fresh_runs.append(_timed(read_fresh))
        gb = size / 1e9
        row: dict[str, Any] = {"size": size, "chunk": 16_000_000,
               "client_mbps": _median([size / 1e6 / w for w, _ in client_runs]),
               "client_cpu_s_per_gb": _median([c / gb for _, c in client_runs]),
               "plain_mbps": _median([size / 1e6 / w for w, _ in plain_runs]),
               "plain_cpu_s_per_gb": _median([c / gb for _, c in plain_runs])}
        if fresh_runs:  # every get into fresh memory: what a caller that holds each result gets
            row["fresh_mbps"] = _median([size / 1e6 / w for w, _ in fresh_runs])
            row["fresh_cpu_s_per_gb"] = _median([c / gb for _, c in fresh_runs])
        row["ratio"] = row["client_mbps"]["median"] / row["plain_mbps"]["median"]
        rows.append(row)
        client.delete(key, "bench")
    session.close()
    return rows


def _small(client: Any, threads_list: list[int], ops: int, reps: int) -> list[dict[str, Any]]:
    payload = os.urandom(1024)
    rows = []
    for threads in threads_list:
        puts, gets = [], []
        with cf.ThreadPoolExecutor(threads) as pool:
            for rep in range(reps):
                keys = [f"s-t{threads}-r{rep}-{i}" for i in range(ops)]
                slices = [keys[t::threads] for t in range(threads)]

                def run(op: str, slices: list[list[str]] = slices) -> float:
                    def worker(mine: list[str]) -> None:
                        for k in mine:
                            if op == "put":
                                client.put("bench", k, payload).unwrap()
                            else:
                                assert len(client.get("bench", k).unwrap().data) == len(payload)
                    started = time.perf_counter()
                    list(pool.map(worker, slices))
                    return ops / (time.perf_counter() - started)

                puts.append(run("put"))
                gets.append(run("get"))
        rows.append({"threads": threads, "put": _median(puts), "get": _median(gets)})
    return rows


@contextlib.contextmanager
def _fresh_client(client_class: Any, uri: str) -> Iterator[Any]:
    """A Client that never reuses result memory (``result_buffer_pool=0``), in trees that have
    the option (after f029970); else ``None``."""
    try:
        fresh = client_class(uri, capacity_storage="0", progress=False, max_workers=12, result_buffer_pool=0)
    except TypeError:
        yield None
        return
    with fresh:
        yield fresh


def worker_main(args: argparse.Namespace) -> None:
    from mictlanx_sync import Client
    from mictlanx_sync.server.local import LocalVSS

    out: dict[str, Any] = {"tree": args.label, "module": __import__("mictlanx_sync").__file__}
    with tempfile.TemporaryDirectory(prefix="bench-fastpaths-") as tmp:
        with LocalVSS(peers=2, routers=1, mode="process", data_dir=tmp) as vss:
            with Client(vss.uri, capacity_storage="0", progress=False, max_workers=12) as client, \
                    _fresh_client(Client, vss.uri) as fresh:
                if "large" in args.sections:
                    out["large"] = _large(client, fresh, vss, [int(s) * MiB for s in args.sizes.split(",")],
                                          args.reps)
                if "small" in args.sections:
                    out["small"] = _small(client, [1, 16], args.ops, args.reps)
    json.dump(out, sys.stdout)


# --- the driver ---------------------------------------------------------------------------------
def _extract(rev: str, into: Path) -> Path:
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _run_worker(tree: Path, label: str, args: argparse.Namespace) -> dict[str, Any]:
    # This file runs as a script (the before tree has no such module), with the tree under
    # test first on the path; the worker reports which package it imported.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--label", label, "--reps", str(args.reps),
               "--ops", str(args.ops), "--sizes", args.sizes, "--sections", args.sections]
    done = subprocess.run(command, env=env, cwd=str(tree), capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"worker for {label} failed:\n{done.stderr[-4000:]}")
    result = dict(json.loads(done.stdout))
    if not str(result["module"]).startswith(str(tree)):
        raise SystemExit(f"worker for {label} imported {result['module']}, not the tree {tree}")
    return result


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One tree's rounds: every run of every round pooled, medians over all of them."""
    merged: dict[str, Any] = {}
    for section in ("large", "small"):
        if section not in rounds[0]:
            continue
        rows = []
        for i, first in enumerate(rounds[0][section]):
            row = dict(first)
            for field in first:
                if isinstance(first[field], dict) and "median" in first[field]:
                    values: list[float] = []
                    for r in rounds:
                        values.append(r[section][i][field]["median"])
                    row[field] = _median(values)
            if section == "large":
                row["ratio"] = row["client_mbps"]["median"] / row["plain_mbps"]["median"]
            rows.append(row)
        merged[section] = rows
    return merged


def _fmt(stat: dict[str, float], digits: int = 0) -> str:
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


def _report(before: dict[str, Any], after: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# Issue 13 fast paths, before and after ({meta['date']})", "",
             f"`{meta['command']}` on {meta['machine']}; load average {meta['load_start']} at start, "
             f"{meta['load_end']} at end; {meta['rounds']} rounds, trees alternating; medians of the "
             "rounds' medians with (min–max) over rounds. *Before* = "
             f"`{meta['before']}`, *after* = the working tree at `{meta['after']}`.", ""]
    if "large" in after:
        lines += ["## Large GET against one plain stream from the peer", "",
                  "| object | tree | Client.get MB/s | plain stream MB/s | Client / plain | client CPU s/GB | "
                  "plain CPU s/GB | no reuse MB/s (/ plain) | no reuse CPU s/GB |", "|---" * 9 + "|"]
        for b, a in zip(before.get("large", []), after["large"], strict=True):
            for name, row in (("before", b), ("after", a)):
                fresh = "— | —"
                if "fresh_mbps" in row:
                    share = row["fresh_mbps"]["median"] / row["plain_mbps"]["median"]
                    fresh = f"{_fmt(row['fresh_mbps'])} ({share:.0%}) | {_fmt(row['fresh_cpu_s_per_gb'], 2)}"
                lines.append(f"| {row['size'] >> 20} MiB | {name} | {_fmt(row['client_mbps'])} | "
                             f"{_fmt(row['plain_mbps'])} | {row['ratio']:.0%} | "
                             f"{_fmt(row['client_cpu_s_per_gb'], 2)} | "
                             f"{_fmt(row['plain_cpu_s_per_gb'], 2)} | {fresh} |")
        lines += ["", "Targets: Client / plain ≥ 90%; client CPU ≤ 0.8 s per GB. *No reuse*: the same gets with "
                  "`result_buffer_pool=0`, every result in fresh memory (a caller that keeps every result).", ""]
    if "small" in after:
        lines += ["## 1 KiB objects, one Client shared by threads", "",
                  "| threads | op | before ops/s | after ops/s | after / before | target |",
                  "|---|---|---|---|---|---|"]
        for b, a in zip(before.get("small", []), after["small"], strict=True):
            for op, target in (("get", 2.0), ("put", 1.5)):
                ratio = a[op]["median"] / b[op]["median"]
                lines.append(f"| {a['threads']} | {op} | {_fmt(b[op])} | {_fmt(a[op])} | {ratio:.2f}x | "
                             f"≥ {target}x {'met' if ratio >= target else 'MISSED'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fastpaths", description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help=f"git revision to compare with ({DEFAULT_BEFORE})")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per tree (default 2)")
    parser.add_argument("--reps", type=int, default=5, help="runs per measurement in a round (default 5)")
    parser.add_argument("--ops", type=int, default=150, help="small objects per run (default 150)")
    parser.add_argument("--sizes", default="128,256", help="large object sizes in MiB (default 128,256)")
    parser.add_argument("--sections", default="large,small", help="large, small or both (default)")
    parser.add_argument("--name", default="", help="results file stem (default fastpaths-<date>)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="after", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    root = Path(__file__).resolve().parent.parent
    after_rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True).stdout.strip()
    meta: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "command": "python -m benchmarks.fastpaths " + " ".join(argv or sys.argv[1:]),
                            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
                            "load_start": _loadavg(), "before": args.before, "after": after_rev,
                            "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        before_tree = _extract(args.before, Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for round_no in range(args.rounds):
            for label, tree in (("before", before_tree), ("after", root)):
                print(f"round {round_no + 1}/{args.rounds}: {label} (load {_loadavg()})", file=sys.stderr, flush=True)
                runs[label].append(_run_worker(tree, label, args))
    meta["load_end"] = _loadavg()
    before, after = _merge(runs["before"]), _merge(runs["after"])
    stem = args.name or "fastpaths-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs, "before": before,
                                                      "after": after}, indent=1))
    text = _report(before, after, meta)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
