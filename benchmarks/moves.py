"""Issue 16's move benchmark: 16 -> 17 -> 15 peers under load, ``python -m benchmarks.moves``.

    python -m benchmarks.moves [--objects 2000] [--grace 5] [--seed 16] [--out DIR] [--stem NAME]

Starts a real process-mode ``LocalVSS`` (one router, 16 peers, each a ``python -m mictlanx_sync``
subprocess on a free loopback port), fills it with ``--objects`` objects of mixed sizes at
rf 2 through the ``Client``, and, while reader and writer threads keep using one shared
``Client``, changes the peer set twice:

* **Phase A, 16 -> 17.** A 17th peer joins (``LocalVSS.add_peer``: R15 on the router) and the
  router's rebalancer runs to completion (``GET /api/v4/rebalance``).
* **Phase B, 17 -> 15.** Two of the original peers are stopped for good, one after the other
  (B1, B2): each is declared gone after ``--grace`` seconds and the rebalancer re-creates its
  copies. With rf 2, two peers stopped at the same moment would take with them every ball whose
  two copies were on exactly those two (1 in 136 of them with 17 peers): no rebalancer can
  re-create those, so the peers leave one at a time, each after the previous repair.

Measured per step, against the peers' own listings (P6 of every bucket on every peer, taken
just before the change, so ``stored`` counts every current copy):

* **moved**: the bytes the rebalancer copied and verified (its ``bytes`` counter, over every
  epoch of the step), and, independently, the bytes of the copies of the fill bucket that
  appeared on some peer (listings after minus before; nothing else writes that bucket).
* **ideal (even share)**: join: ``stored / 17``, the bytes the new peer holds under an exactly
  even placement, i.e. the least that must move for it to carry its share. Leave: the bytes
  the departed peer held (its copies must be re-created, nothing else need move).
* **rendezvous minimum**: the bytes of the copies whose placement changed: for every ball, its
  size times the number of its new top-``rf`` peers (rendezvous ranking over the new set) that
  did not hold its newest version. What an exact rebalancer must move for this placement.
* **ratio** = moved / ideal (target <= 1.2) and moved / rendezvous minimum (1.00 = not a byte
  more than the placement change requires).
* the load: operations started or finished during the step and those that failed (target 0),
  with every error.

At the end every object is read back verified (the fill bucket against its SHA-256, the
writers' objects against their last acknowledged content) and every ball's placement is
checked: its newest version on exactly its top-``rf`` of the 15 peers left, no copy elsewhere.

Writes ``<out>/moves-<date>.md`` and ``.json`` (``--stem`` overrides the name). Never run as a
test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import requests

from mictlanx_sync.server.router.placement import rank

from .common import MB, loadavg, log, patched_env

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "moves"  # the fill: written once, then only read
LOAD_BUCKET = "moves-load"  # the writers' objects: created and updated during the moves
RF = 2
PEERS = 16
PAGE = 1000
KiB, MiB = 1024, 1024 * 1024
#: the fill's size mix: (share, smallest, largest, chunk size); objects of 1 MiB or more are
#: written in 1 MiB chunks, so the client's direct reads (307 to the peer) run during the moves too
SIZE_MIX = ((0.45, 256, 4 * KiB, "256kb"), (0.30, 4 * KiB, 64 * KiB, "256kb"),
            (0.20, 64 * KiB, 512 * KiB, "256kb"), (0.05, 1 * MiB, 2 * MiB, "1MiB"))
TARGET_RATIO = 1.2

Ball = tuple[str, str]  # (bucket, key)
Copy = tuple[str, int]  # (version, size)
Snapshot = dict[str, dict[Ball, Copy]]  # peer_id -> ball -> its current copy there


# --- sizes and content ---------------------------------------------------------------------------
def fill_plan(n: int, seed: int) -> list[tuple[str, int, str]]:
    """``(key, size, chunk_size)`` of the fill, deterministic for a seed."""
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        pick, acc = rng.random(), 0.0
        band = SIZE_MIX[-1]
        for candidate in SIZE_MIX:
            acc += candidate[0]
            if pick < acc:
                band = candidate
                break
        _share, lo, hi, chunk = band
        plan.append((f"obj-{i:05d}", rng.randint(lo, hi), chunk))
    return plan


def content(seed: int, key: str, size: int, generation: int = 0) -> bytes:
    """Incompressible bytes derived from the key: kept as a digest, regenerated if needed."""
    return random.Random(f"{seed}/{key}/{generation}").randbytes(size)


def digest(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def placement_spread(n: int, seeds: range) -> dict[str, Any]:
    """What rendezvous placement alone gives for the join, without any server: for each seed's
    fill (its balls: the client's chunks ``{key}_{i}``), the bytes of the copies the 17th peer
    takes over / (stored / 17). The join's moved / ideal cannot beat this; its spread over seeds
    shows how much of the ratio is the luck of the hash rather than the rebalancer."""
    from mictlanx_sync.protocol.sizes import parse_size

    old = [f"mictlanx-peer-{i}" for i in range(PEERS)]
    new, joined = [*old, f"mictlanx-peer-{PEERS}"], f"mictlanx-peer-{PEERS}"
    ratios = []
    for seed in seeds:
        stored = taken = 0
        for key, size, chunk in fill_plan(n, seed):
            step_ = parse_size(chunk)
            for i in range(max(1, -(-size // step_))):
                ball = min(step_, size - i * step_)
                stored += RF * ball
                if joined in rank(new, BUCKET, f"{key}_{i}")[:RF]:
                    taken += ball
        ratios.append(taken / (stored / len(new)))
    ordered = sorted(ratios)
    return {"seeds": [seeds.start, seeds.stop - 1], "min": ordered[0], "median": statistics.median(ordered),
            "max": ordered[-1], "sd": statistics.pstdev(ordered), "over_target": sum(r > TARGET_RATIO for r in ratios)}


# --- the peers' listings ------------------------------------------------------------------------
class Cluster:
    """Thin helpers over a process-mode LocalVSS: listings, rebalancer status, phases."""

    def __init__(self, vss: Any) -> None:
        self.vss = vss
        self.http = requests.Session()
        self.http.trust_env = False
        self.stopped: set[str] = set()

    @property
    def router_url(self) -> str:
        return str(self.vss.router_urls[0])

    def present(self) -> list[str]:
        return sorted(p for p in self.vss.peer_urls if p not in self.stopped)

    def listing(self, peer_id: str, bucket: str) -> dict[Ball, Copy]:
        """The current balls of ``bucket`` on one peer (P6, keyset pages)."""
        url = f"{self.vss.peer_urls[peer_id]}/api/v4/buckets/{bucket}/metadata"
        out: dict[Ball, Copy] = {}
        after: Optional[str] = None
        while True:
            params = {"start": "0", "end": str(PAGE), **({"after": after} if after is not None else {})}
            resp = self.http.get(url, params=params, timeout=60)
            resp.raise_for_status()
            balls = resp.json().get("balls", [])
            for meta in balls:
                if not meta.get("is_disabled"):
                    out[(bucket, meta["key"])] = (str(meta.get("version") or ""), int(meta.get("size") or 0))
                after = meta["key"]
            if len(balls) < PAGE:
                return out

    def snapshot(self, peers: Optional[list[str]] = None) -> Snapshot:
        peers = self.present() if peers is None else peers
        def one(peer_id: str) -> dict[Ball, Copy]:
            return {**self.listing(peer_id, BUCKET), **self.listing(peer_id, LOAD_BUCKET)}

        with cf.ThreadPoolExecutor(8) as pool:
            return dict(zip(peers, pool.map(one, peers), strict=True))

    def status(self) -> dict[str, Any]:
        resp = self.http.get(f"{self.router_url}/api/v4/rebalance", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def wait_pass(self, after_epoch: int, peers: list[str], timeout: float) -> tuple[dict[str, Any],
                                                                                   dict[int, dict[str, Any]]]:
        """Until a pass after ``after_epoch`` is done on exactly ``peers``: its status, and the last
        status seen of every epoch that ran meanwhile (an incomplete pass is retried as a new one)."""
        deadline = time.monotonic() + timeout
        epochs: dict[int, dict[str, Any]] = {}
        while True:
            st = self.status()
            if st["epoch"] > after_epoch:
                epochs[st["epoch"]] = st
                if st["state"] == "done" and sorted(st["done_peers"]) == sorted(peers) and not st["running"]:
                    return st, epochs
            if time.monotonic() > deadline:
                raise TimeoutError(f"no completed rebalance onto {len(peers)} peers within {timeout:.0f} s: {st}")
            time.sleep(0.1)


# --- figures from snapshots ---------------------------------------------------------------------
def newest_copies(snap: Snapshot) -> dict[Ball, Copy]:
    """Every ball's newest version (highest version id any peer lists) and its size."""
    best: dict[Ball, Copy] = {}
    for copies in snap.values():
        for ball, copy in copies.items():
            if ball not in best or copy[0] > best[ball][0]:
                best[ball] = copy
    return best


def stored_bytes(snap: Snapshot, bucket: Optional[str] = None) -> int:
    return sum(size for copies in snap.values() for (b, _), (_, size) in copies.items() if bucket in (None, b))


def rendezvous_minimum(snap: Snapshot, new_peers: list[str], rf: int = RF) -> tuple[int, int]:
    """(bytes, copies) that must be created for every ball to have its newest version on its top
    ``rf`` of ``new_peers``, given where the copies are in ``snap``."""
    total = count = 0
    for ball, (version, size) in newest_copies(snap).items():
        holders = {p for p, copies in snap.items() if copies.get(ball, ("", -1))[0] == version}
        for target in rank(new_peers, *ball)[:rf]:
            if target not in holders:
                total += size
                count += 1
    return total, count


def gained(before: Snapshot, after: Snapshot, bucket: str, new_peers: list[str],
           rf: int = RF) -> dict[str, Any]:
    """Copies of ``bucket`` (written before the step, not written since) that appeared on a peer
    between two snapshots: their bytes, and how many landed outside the ball's top ``rf``."""
    out: dict[str, Any] = {"bytes": 0, "copies": 0, "outside_targets": 0, "examples": []}
    for peer_id, copies in after.items():
        old = before.get(peer_id, {})
        for ball, copy in copies.items():
            if ball[0] != bucket or old.get(ball) == copy:
                continue
            out["bytes"] += copy[1]
            out["copies"] += 1
            if peer_id not in rank(new_peers, *ball)[:rf]:
                out["outside_targets"] += 1
                if len(out["examples"]) < 5:
                    out["examples"].append([peer_id, *ball])
    return out


def placement_check(snap: Snapshot, peers: list[str], rf: int = RF) -> dict[str, Any]:
    """Every ball: its newest version on each of its top ``rf`` of ``peers``, and no copy elsewhere."""
    newest = newest_copies(snap)
    under, extra, stale = 0, 0, 0
    examples: list[dict[str, Any]] = []
    for ball, (version, _size) in newest.items():
        targets = rank(peers, *ball)[:rf]
        at = [p for p in targets if snap.get(p, {}).get(ball, ("", 0))[0] == version]
        if len(at) < rf:
            under += 1
            if len(examples) < 5:
                examples.append({"ball": list(ball), "problem": "under-replicated", "targets": targets, "at": at})
        for p, copies in snap.items():
            if ball in copies and p not in targets:
                if copies[ball][0] == version:
                    extra += 1
                else:
                    stale += 1
                if len(examples) < 5:
                    examples.append({"ball": list(ball), "problem": "extra" if copies[ball][0] == version else
                                     "stale older version", "peer": p, "targets": targets})
    return {"balls": len(newest), "under_replicated": under, "extra_copies": extra,
            "stale_copies": stale, "examples": examples}


# --- the load ------------------------------------------------------------------------------------
@dataclass
class Op:
    kind: str
    key: str
    start: float
    end: float
    error: Optional[str] = None


@dataclass
class Load:
    """Reader and writer threads on one shared ``Client``, each operation timed and checked."""

    client: Any
    fill: dict[str, tuple[int, str]]  # key -> (size, sha256)
    seed: int
    readers: int = 2
    writers: int = 1
    ops: list[Op] = field(default_factory=list)
    #: the writers' objects: key -> the digests a read may return (the last acknowledged write, plus
    #: the content of a write that failed after it, which may or may not have been applied)
    written: dict[str, set[str]] = field(default_factory=dict)
    #: retries the client logged (attempts that failed and were retried): invisible to the
    #: application, so not failures, but a sign of what the moves cost the data path
    retries: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _handler: Optional[logging.Handler] = None

    def start(self) -> None:
        load = self

        class Retries(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "retrying in" in record.getMessage():
                    load.retries.append((time.monotonic(), record.getMessage()))

        self._handler = Retries(logging.WARNING)
        logging.getLogger("mictlanx_sync.client").addHandler(self._handler)
        for i in range(self.readers):
            self._threads.append(threading.Thread(target=self._reader, args=(i,), daemon=True))
        for i in range(self.writers):
            self._threads.append(threading.Thread(target=self._writer, args=(i,), daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        if self._handler is not None:
            logging.getLogger("mictlanx_sync.client").removeHandler(self._handler)

    def _timed(self, kind: str, key: str, action: Any) -> Optional[str]:
        """Run one operation (``action()`` returns None or what went wrong) and record it."""
        started = time.monotonic()
        try:
            error = action()
        except Exception as exc:  # counted, never fatal
            error = f"{type(exc).__name__}: {exc}"
        self.ops.append(Op(kind, key, started, time.monotonic(), error))
        return error

    def _read(self, bucket: str, key: str, accepted: set[str]) -> Optional[str]:
        got = self.client.get(bucket, key)
        if not got.is_ok:
            return f"{type(got.unwrap_err()).__name__}: {got.unwrap_err()}"
        return None if digest(got.unwrap().data) in accepted else "read returned other bytes"

    def _reader(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        keys = sorted(self.fill)
        while not self._stop.is_set():
            key = rng.choice(keys)
            self._timed("read", key, lambda key=key: self._read(BUCKET, key, {self.fill[key][1]}))

    def _writer(self, index: int) -> None:
        """Creates, updates and reads back (read-your-write) its own objects."""
        rng = random.Random(self.seed * 1000 + 500 + index)
        mine: list[str] = []
        generation: dict[str, int] = {}
        n = 0
        while not self._stop.is_set():
            pick = rng.random()
            if not mine or pick < 0.4:
                key, kind, update = f"w{index}-{n:05d}", "create", False
                n += 1
            elif pick < 0.8:
                key, kind, update = rng.choice(mine), "update", True
            else:
                key = rng.choice(mine)
                self._timed("read-back", key, lambda key=key: self._read(LOAD_BUCKET, key, self.written[key]))
                continue
            generation[key] = generation.get(key, -1) + 1
            data = content(self.seed, key, rng.randint(KiB, 128 * KiB), generation[key])

            def put(key: str = key, data: bytes = data, update: bool = update) -> Optional[str]:
                got = self.client.put(LOAD_BUCKET, key, data, rf=RF, update=update)
                return None if got.is_ok else f"{type(got.unwrap_err()).__name__}: {got.unwrap_err()}"

            if self._timed(kind, key, put) is None:
                self.written[key] = {digest(data)}
                if kind == "create":
                    mine.append(key)
            else:  # it may or may not have been applied: a later read may return either
                self.written.setdefault(key, set()).add(digest(data))

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Operations that overlapped ``[t0, t1]``: counts by kind, failures and their errors."""
        ops = [op for op in list(self.ops) if op.start <= t1 and op.end >= t0]
        kinds: dict[str, int] = {}
        for op in ops:
            kinds[op.kind] = kinds.get(op.kind, 0) + 1
        failed = [op for op in ops if op.error is not None]
        latencies = sorted(op.end - op.start for op in ops)
        retries = [msg for at, msg in list(self.retries) if t0 <= at <= t1]
        return {"ops": len(ops), "failed": len(failed), "by_kind": kinds, "retries": len(retries),
                "retry_messages": retries[:10],
                "ops_per_s": len(ops) / max(1e-9, t1 - t0),
                "latency_p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
                "latency_max_ms": 1000 * latencies[-1] if latencies else 0.0,
                "errors": [f"{op.kind} {op.key}: {op.error}" for op in failed[:20]]}


# --- the run --------------------------------------------------------------------------------------
def fill(client: Any, plan: list[tuple[str, int, str]], seed: int, threads: int) -> dict[str, tuple[int, str]]:
    def one(item: tuple[str, int, str]) -> tuple[str, tuple[int, str]]:
        key, size, chunk = item
        data = content(seed, key, size)
        client.put(BUCKET, key, data, rf=RF, chunk_size=chunk).unwrap()
        return key, (size, digest(data))

    with cf.ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, plan))


def step(cluster: Cluster, load: Load, name: str, change: Any, new_peers: list[str], timeout: float,
         ideal_kind: str) -> dict[str, Any]:
    """One peer-set change under load: snapshot, change, wait for the pass, snapshot, figures."""
    before = cluster.snapshot()
    epoch = cluster.status()["epoch"]
    stored = stored_bytes(before)
    log(f"{name}: {len(before)} peers hold {stored / MB:.1f} MB; changing the peer set")
    t0 = time.monotonic()
    departed = change()
    if ideal_kind == "join":
        ideal = stored / len(new_peers)
    else:
        ideal = float(stored_bytes({departed: before[departed]}))
    minimum, minimum_copies = rendezvous_minimum({p: c for p, c in before.items() if p in new_peers}, new_peers)
    final, epochs = cluster.wait_pass(epoch, new_peers, timeout)
    t1 = time.monotonic()
    after = cluster.snapshot(new_peers)
    counters = {k: sum(int(st.get(k, 0)) for st in epochs.values())
                for k in ("checked", "planned", "moved", "in_place", "skipped", "deferred", "failed", "bytes",
                          "surplus", "removed")}
    pass_seconds = sum(float(st["finished_at"] or 0) - float(st["started_at"] or 0) for st in epochs.values())
    fill_min = rendezvous_minimum({p: {b: c for b, c in copies.items() if b[0] == BUCKET}
                                   for p, copies in before.items() if p in new_peers}, new_peers)
    moved = counters["bytes"]
    result = {
        "step": name, "peers_before": len(before), "peers_after": len(new_peers), "departed": departed,
        "stored_before": stored, "stored_after": stored_bytes(after),
        "per_peer_before": {p: stored_bytes({p: c}) for p, c in before.items()},
        "per_peer_after": {p: stored_bytes({p: c}) for p, c in after.items()},
        "ideal": ideal, "ideal_kind": ideal_kind, "rendezvous_minimum": minimum,
        "rendezvous_minimum_copies": minimum_copies, "moved": moved, "counters": counters,
        "ratio_ideal": moved / ideal if ideal else 0.0, "ratio_minimum": moved / minimum if minimum else 0.0,
        "fill_moved_listings": gained(before, after, BUCKET, new_peers), "fill_minimum": fill_min[0],
        "fill_minimum_copies": fill_min[1],
        "epochs": {str(e): {"state": st["state"], "reason": st.get("reason"), "moved": st.get("moved"),
                            "errors": st.get("errors", [])[:5]} for e, st in sorted(epochs.items())},
        "seconds": t1 - t0, "pass_seconds": pass_seconds,
        "throughput_mb_s": moved / MB / pass_seconds if pass_seconds > 0 else 0.0,
        "load": load.window(t0, t1), "loadavg": loadavg(),
    }
    log(f"{name}: moved {moved / MB:.2f} MB (ideal {ideal / MB:.2f}, rendezvous minimum {minimum / MB:.2f}), "
        f"ratio {result['ratio_ideal']:.3f}; removed {counters['removed']}, failed copies {counters['failed']}; "
        f"{result['load']['ops']} ops, {result['load']['failed']} failed; {result['seconds']:.1f} s")
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    from mictlanx_sync import Client, LocalVSS

    base = Path(tempfile.mkdtemp(prefix="mictlanx-moves-"))
    env = {"MICTLANX_REBALANCE_GRACE": str(args.grace), "MICTLANX_REBALANCE_SETTLE": str(args.settle),
           "MICTLANX_REBALANCE_RF": str(RF), "MICTLANX_REBALANCE_BYTES_PER_SECOND": args.rate,
           "MICTLANX_REBALANCE_CONCURRENCY": str(args.concurrency)}
    vss = LocalVSS(peers=PEERS, routers=1, mode="process", data_dir=base / "vss", health_interval=0.5,
                   log_level="WARNING")
    started = time.monotonic()
    result: dict[str, Any] = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks.moves", *args.argv]), "machine":
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
        "load_start": loadavg(), "objects": args.objects, "seed": args.seed, "rf": RF, "router_env": env,
        "readers": args.readers, "writers": args.writers, "size_mix": SIZE_MIX}}
    with patched_env(env):
        vss.start()
    try:
        cluster = Cluster(vss)
        log(f"LocalVSS up: 1 router, {len(vss.peer_urls)} peers ({vss.uri})")
        with Client(vss.uri, capacity_storage="0", progress=False, cache_path=str(base / "cache")) as client:
            plan = fill_plan(args.objects, args.seed)
            t = time.monotonic()
            fill_info = fill(client, plan, args.seed, args.fill_threads)
            fill_seconds = time.monotonic() - t
            snap = cluster.snapshot()
            logical = sum(size for size, _ in fill_info.values())
            result["fill"] = {"objects": len(fill_info), "logical": logical, "balls": len(newest_copies(snap)),
                              "stored": stored_bytes(snap), "seconds": fill_seconds,
                              "per_peer": {p: stored_bytes({p: c}) for p, c in snap.items()},
                              "placement": placement_check(snap, cluster.present())}
            log(f"filled {len(fill_info)} objects, {logical / MB:.1f} MB logical, {stored_bytes(snap) / MB:.1f} MB "
                f"stored in {result['fill']['balls']} balls, {fill_seconds:.1f} s")
            load = Load(client, fill_info, args.seed, readers=args.readers, writers=args.writers)
            load.start()
            load_started = time.monotonic()
            time.sleep(args.warmup)
            steps = []
            try:
                joined = [*cluster.present(), f"mictlanx-peer-{PEERS}"]

                def join() -> Optional[str]:
                    vss.add_peer()
                    return None

                steps.append(step(cluster, load, "A: 16 -> 17 (join)", join, sorted(joined), args.timeout, "join"))
                victims = random.Random(args.seed).sample([f"mictlanx-peer-{i}" for i in range(PEERS)], 2)
                for label, victim in zip(("B1: 17 -> 16 (leave)", "B2: 16 -> 15 (leave)"), victims, strict=True):
                    def leave(victim: str = victim) -> str:
                        vss.stop_peer(victim)
                        cluster.stopped.add(victim)
                        return victim

                    remaining = [p for p in cluster.present() if p != victim]
                    steps.append(step(cluster, load, label, leave, remaining, args.timeout + args.grace, "leave"))
                time.sleep(args.warmup)
            finally:
                load.stop()
            load_ended = time.monotonic()
            result["steps"] = steps
            result["load_total"] = load.window(load_started, load_ended)
            log("checking placement and reading every object back")
            final = cluster.snapshot()
            result["final_placement"] = placement_check(final, cluster.present())
            result["final_stored"] = stored_bytes(final)
            result["final_per_peer"] = {p: stored_bytes({p: c}) for p, c in final.items()}
            result["read_back"] = read_back(client, fill_info, load.written)
            result["again"] = again(cluster, args.timeout)
    finally:
        vss.stop()
        shutil.rmtree(base, ignore_errors=True)
    result["meta"]["seconds"] = time.monotonic() - started
    result["meta"]["load_end"] = loadavg()
    result["placement_spread"] = placement_spread(args.objects, range(1, 41))
    result["targets"] = targets(result)
    return result


def again(cluster: Cluster, timeout: float) -> dict[str, Any]:
    """One more pass (R28) once the load has stopped: it must find every ball in place, copy
    nothing and drop nothing (a copy moved twice, or left to move, would show here); its
    duration is the cost of checking every ball."""
    epoch = cluster.status()["epoch"]
    cluster.http.post(f"{cluster.router_url}/api/v4/rebalance", timeout=10).raise_for_status()
    st, _ = cluster.wait_pass(epoch, cluster.present(), timeout)
    seconds = float(st["finished_at"] or 0) - float(st["started_at"] or 0)
    log(f"a pass after the moves: checked {st['checked']}, planned {st['planned']}, moved {st['moved']}, "
        f"removed {st['removed']} in {seconds:.1f} s")
    return {k: st[k] for k in ("checked", "planned", "moved", "in_place", "removed", "surplus", "failed")} | {
        "seconds": seconds}


def read_back(client: Any, fill_info: dict[str, tuple[int, str]], written: dict[str, set[str]]) -> dict[str, Any]:
    """Every object read through the router and checked: the fill against its digest, the writers'
    objects against their last acknowledged content."""
    bad: list[str] = []

    def one(item: tuple[str, str, set[str]]) -> None:
        bucket, key, expected = item
        got = client.get(bucket, key)
        if not got.is_ok:
            bad.append(f"{bucket}/{key}: {got.unwrap_err()}")
        elif digest(got.unwrap().data) not in expected:
            bad.append(f"{bucket}/{key}: other bytes")

    items = [(BUCKET, k, {h}) for k, (_, h) in fill_info.items()] + [(LOAD_BUCKET, k, v) for k, v in written.items()]
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, items))
    return {"objects": len(items), "failed": len(bad), "errors": bad[:20]}


# --- report -------------------------------------------------------------------------------------
def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for s in result.get("steps", []):
        out.append({"target": f"{s['step']}: moved <= {TARGET_RATIO}x ideal", "value": f"{s['ratio_ideal']:.3f}x",
                    "met": s["ratio_ideal"] <= TARGET_RATIO})
    failed = sum(s["load"]["failed"] for s in result.get("steps", []))
    ops = sum(s["load"]["ops"] for s in result.get("steps", []))
    out.append({"target": "zero failed operations during the moves", "value": f"{failed} of {ops}",
                "met": failed == 0})
    final = result.get("final_placement", {})
    out.append({"target": "every ball at rf on exactly its targets at the end",
                "value": f"{final.get('under_replicated')} under-replicated, {final.get('extra_copies')} extra, "
                         f"{final.get('stale_copies')} stale of {final.get('balls')} balls",
                "met": not (final.get("under_replicated") or final.get("extra_copies") or final.get("stale_copies"))})
    ag = result.get("again", {})
    out.append({"target": "a pass after the moves copies and drops nothing",
                "value": f"planned {ag.get('planned')}, moved {ag.get('moved')}, removed {ag.get('removed')} of "
                         f"{ag.get('checked')} balls checked", "met": ag.get("planned") == ag.get("moved") ==
                ag.get("removed") == 0})
    rb = result.get("read_back", {})
    out.append({"target": "every object reads back verified", "value": f"{rb.get('failed')} of {rb.get('objects')} "
                "failed", "met": rb.get("failed") == 0})
    return out


def section(result: dict[str, Any], level: str = "##") -> list[str]:
    """The figures as Markdown (without the targets): the standalone report and ``python -m benchmarks``."""
    meta, f = result["meta"], result["fill"]
    lines = [f"{level} Moves: 16 -> 17 -> 15 peers under load (issue 16), {meta['date']}", "",
             f"Command: `{meta['command']}`; {meta['seconds']:.0f} s in all; load average {meta['load_start']} at "
             f"the start, {meta['load_end']} at the end.  ",
             f"Router: {', '.join(f'{k}={v}' for k, v in meta['router_env'].items())}; rf {meta['rf']}; "
             f"load: {meta['readers']} reader and {meta['writers']} writer threads on one Client.", "",
             f"Fill: {f['objects']:,} objects, {f['logical'] / MB:.1f} MB logical, {f['balls']:,} balls, "
             f"{f['stored'] / MB:.1f} MB stored on 16 peers ({min(f['per_peer'].values()) / MB:.1f}–"
             f"{max(f['per_peer'].values()) / MB:.1f} MB each), in {f['seconds']:.1f} s.", "",
             "| step | stored before MB | moved MB | ideal MB | moved / ideal | rendezvous min MB | moved / min | "
             "fill copies moved / min | outside targets | removed | failed copies | step s | pass s | MB/s | "
             "ops during | ops failed | client retries |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["steps"]:
        g = s["fill_moved_listings"]
        lines.append(
            f"| {s['step']} | {s['stored_before'] / MB:.1f} | {s['moved'] / MB:.2f} | {s['ideal'] / MB:.2f} | "
            f"**{s['ratio_ideal']:.3f}** | {s['rendezvous_minimum'] / MB:.2f} | {s['ratio_minimum']:.3f} | "
            f"{g['copies']} / {s['fill_minimum_copies']} | {g['outside_targets']} | {s['counters']['removed']} | "
            f"{s['counters']['failed']} | {s['seconds']:.1f} | {s['pass_seconds']:.1f} | "
            f"{s['throughput_mb_s']:.1f} | {s['load']['ops']} | **{s['load']['failed']}** | {s['load']['retries']} |")
    columns = [("after the fill", f["per_peer"])] + [(f"after {s['step'].split(':')[0]}", s["per_peer_after"])
                                                      for s in result["steps"]]
    peers = sorted({p for _, per in columns for p in per}, key=lambda p: int(p.rsplit("-", 1)[1]))
    lines += ["", "Stored MB per peer (every current copy; `-` = not in the VSS):", "",
              "| peer | " + " | ".join(name for name, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(f"{per[p] / MB:.1f}" if p in per else "-" for _, per in columns) + " |"
              for p in peers]
    moved = sum(s["moved"] for s in result["steps"])
    ideal = sum(s["ideal"] for s in result["steps"])
    lt = result["load_total"]
    lines += ["", f"All steps: moved {moved / MB:.2f} MB against an ideal of {ideal / MB:.2f} MB "
                  f"({moved / ideal:.3f}x). Load over the whole run: {lt['ops']} operations ({lt['by_kind']}), "
                  f"{lt['failed']} failed, {lt['retries']} client retries, {lt['ops_per_s']:.1f} ops/s, p50 "
                  f"{lt['latency_p50_ms']:.0f} ms, max {lt['latency_max_ms']:.0f} ms.", ""]
    sp = result["placement_spread"]
    lines += [f"Placement alone (no server; the same size mix, seeds {sp['seeds'][0]}–{sp['seeds'][1]}): the bytes "
              f"the 17th peer takes over / (stored / 17) is {sp['min']:.3f}–{sp['max']:.3f} (median "
              f"{sp['median']:.3f}, sd {sp['sd']:.3f}), above {TARGET_RATIO} for {sp['over_target']} of them. The "
              "join's moved / ideal cannot be lower than its seed's value and its spread is the luck of the hash; "
              "what the rebalancer adds is *moved / min*.", ""]
    fp, rb = result["final_placement"], result["read_back"]
    lines += [f"End: {fp['balls']:,} balls on 15 peers, {fp['under_replicated']} under-replicated, "
              f"{fp['extra_copies']} extra copies, {fp['stale_copies']} stale copies; {rb['objects']:,} objects read "
              f"back verified, {rb['failed']} failed. One more pass then (R28, load stopped): "
              f"{result['again']['checked']:,} balls checked in {result['again']['seconds']:.1f} s, planned "
              f"{result['again']['planned']}, moved {result['again']['moved']}, removed {result['again']['removed']}.",
              ""]
    errors = [e for s in result["steps"] for e in s["load"]["errors"]]
    if errors:
        lines += ["Errors during the moves:", "", *[f"- `{e}`" for e in errors], ""]
    return lines


DEFINITIONS = [
    "- *moved*: the rebalancer's `bytes` counter (copies made and verified on their target), summed over "
    "the epochs of the step.",
    "- *ideal*, join: stored bytes (every current copy on every peer, rf copies per ball) / 17, the bytes "
    "the new peer carries under an exactly even placement, the least that must move for it to hold its "
    "share. Leave: the bytes the departed peer held, the copies that must be re-created.",
    "- *rendezvous min*: the bytes of the copies whose placement changed (each ball's size times the "
    "number of its new top-2 that lacked its newest version), what an exact rebalancer moves for this "
    "particular placement; *moved / min* = 1.000 means not one byte more. Below 1 on a leave: the writers "
    "re-created some of those copies themselves (an update places its new version on the peers available).",
    "- *fill copies moved / min*: copies of the fill bucket (only read during the run) that appeared on "
    "a peer, counted from the peers' listings before and after, against the rendezvous minimum for "
    "that bucket; *outside targets*: those that landed on a peer outside the ball's new top-2 (0 expected).",
    "- *removed*: extra copies the rebalancer dropped (the displaced holder of each moved ball on a join; "
    "none on a leave).",
    "- *step s*: from the change (R15, or the peer stopped) to the pass done, grace and settle included; "
    "*pass s*: the pass itself; *MB/s*: moved / pass s.",
    "- *ops during*: load operations that overlapped the step, *ops failed*: those that returned an error "
    "or other bytes after the client's retries; *client retries*: attempts the client logged as failed "
    "and retried during the step.",
]


def markdown(result: dict[str, Any]) -> str:
    """The standalone report: figures, targets, definitions."""
    lines = [*section(result, "#"), f"Machine: {result['meta']['machine']}.", "", "## Targets", "",
             "| target | value | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in result["targets"]]
    lines += ["", "## Definitions", "", *DEFINITIONS, ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.moves", description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=2000, help="objects in the fill (default 2,000)")
    parser.add_argument("--seed", type=int, default=16, help="sizes, keys and departed peers (default 16)")
    parser.add_argument("--grace", type=float, default=5.0,
                        help="the router's --rebalance-grace: a stopped peer is gone after it (default 5 s)")
    parser.add_argument("--settle", type=float, default=1.0, help="the router's --rebalance-settle (default 1 s)")
    parser.add_argument("--rate", default="50MiB", help="the router's --rebalance-bytes-per-second (default 50MiB)")
    parser.add_argument("--concurrency", type=int, default=2, help="the router's --rebalance-concurrency (default 2)")
    parser.add_argument("--readers", type=int, default=2, help="reader threads during the moves (default 2)")
    parser.add_argument("--writers", type=int, default=1, help="writer threads during the moves (default 1)")
    parser.add_argument("--fill-threads", type=int, default=4, help="threads filling the VSS (default 4)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before and after the steps")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for one pass (default 600 s)")
    parser.add_argument("--out", default=str(RESULTS), help="output directory (default benchmarks/results)")
    parser.add_argument("--stem", default=None, help="output file name stem (default moves-<date>)")
    return parser


def options(argv: list[str]) -> argparse.Namespace:
    """Parsed options (``argv`` as on the command line), for ``python -m benchmarks --only moves``."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    import sys

    args = options(list(sys.argv[1:] if argv is None else argv))
    result = run(args)
    stem = args.stem or "moves-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = markdown(result)
    (out / f"{stem}.md").write_text(text + "\n")
    print(text, flush=True)
    for t in result["targets"]:
        log(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']}")
    return 0 if all(t["met"] for t in result["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
