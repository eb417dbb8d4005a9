"""``python -m benchmarks.races [--rounds N] [--json OUT]``: count outcomes of racing writers (issue 11).

Runs six scenarios against an in-process cluster (``tests/functional/client_support.py``'s
``Cluster(peers=3, routers=2)``, two ``Client`` objects, one per router, rf=2, chunk_size
1000) and **counts** what happens instead of asserting, so the same script runs on the code
before versions (commit ``50cfb80``) and after (docs/consistency.md). Set ``PYTHONPATH`` to
the tree you measure: the script prints ``mictlanx_sync.__file__`` so you can check.

Scenarios (each round a fresh key; round counts default to ``--rounds``):

1. ``updates``: initial put, then two ``put(update=True)`` of different content released by a
   barrier (4-chunk objects; every 4th round single-chunk objects).
2. ``creates``: two ``put`` without ``update`` of different content, no initial object
   (every 4th round single-chunk).
3. ``delete``: ``put(update=True)`` of 16 chunks racing ``delete(ball_id=, bucket_id=)``
   (odd rounds over an existing 3-chunk object); the delete starts ``(round % 6) x
   --delete-stagger`` ms after the put (0 to 125 ms by default) so that it lands at several
   points of the put; then a fresh create when the key reads as not found.
4. ``failed_put``: router 1 answers 400 to the 4th and later R7 uploads (``/_faults``), so
   client b's put fails mid-way while client a puts the same bytes through router 0.
5. ``peer_down``: new-key puts (default 100) with one of the three peers stopped, each read
   back through the other client.
6. ``rechunk``: a put, then the same bytes again with twice the chunk size (no ``update``).

Every call is bounded: the clients use ``RetryPolicy(retries=3, initial_delay=0.05,
max_delay=0.2, deadline=20)`` and a racing call that has not returned after ``--hang`` seconds
is counted as hung (its thread is abandoned).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import requests

import mictlanx_sync
from mictlanx_sync.protocol.errors import AlreadyExistsError, NotFoundError
from mictlanx_sync.protocol.policies import RetryPolicy
from tests.functional import client_support as cs

RF = 2
CHUNK = 1000
RETRY = RetryPolicy(retries=3, initial_delay=0.05, max_delay=0.2, deadline=20)
R5_PUT_METADATA = r"/api/v4/buckets/[^/]+/metadata"
VERSION_HEADER = "mictlanx-version"  # lower-case, as the request log records headers
HANG = object()  # a racing call that did not return in time


# --- cluster --------------------------------------------------------------------------------------
class RaceCluster(cs.Cluster):
    """``Cluster`` whose routers run the fault middleware with no rule (``/_faults`` on).

    Builds the router apps itself (the ``Cluster`` of commit 50cfb80 has no ``router_faults``;
    ``RouterConfig.faults`` exists in both versions)."""

    def __init__(self, peers: int = 3, routers: int = 2) -> None:
        self._race_faults = "[]"
        super().__init__(peers=peers, routers=routers)

    def _router_node(self, router_id: str) -> Any:
        from mictlanx_sync.server.router.app import create_app
        from mictlanx_sync.server.router.config import RouterConfig
        from mictlanx_sync.server.router.peers import PeerEntry

        data_dir = self.data_dir / router_id

        def make_app() -> Any:
            peers = [PeerEntry(p.server_id, cs.HOST, p.port) for p in self.peers]
            config = RouterConfig(router_id=router_id, data_dir=data_dir, peers=peers,
                                  health_interval=self.health_interval, task_ttl=self.router_task_ttl,
                                  faults=self._race_faults)
            return cs.CountingMiddleware(create_app(config), router_id, self.log, self._router_delay,
                                         lambda: self.router_strip_headers)

        return cs._Node("router", router_id, data_dir, make_app)


# --- counting -----------------------------------------------------------------------------------------
class Tally:
    """Counters of one scenario (insertion-ordered), optionally split by a round tag, plus
    the details of every counted failure (round number and what happened)."""

    def __init__(self, name: str, title: str, counters: list[str], failures: list[str]) -> None:
        self.name = name
        self.title = title
        self.rounds = 0
        self.counters = {c: 0 for c in counters}
        self.single = {c: 0 for c in counters}  # the same counters, single-chunk rounds only
        self.single_rounds = 0
        self.failures = set(failures)  # counters whose rounds are reported in detail
        self.details: list[dict[str, Any]] = []
        self.seconds = 0.0

    def hit(self, counter: str, round_: int, single: bool = False, detail: Any = None) -> None:
        self.counters[counter] += 1
        if single:
            self.single[counter] += 1
        if counter in self.failures:
            self.details.append({"round": round_, "counter": counter, "detail": detail})

    def as_json(self) -> dict[str, Any]:
        out = {"title": self.title, "rounds": self.rounds, "counters": self.counters,
               "details": self.details, "seconds": round(self.seconds, 1)}
        if self.single_rounds:
            out["single_chunk_rounds"] = self.single_rounds
            out["single_chunk_counters"] = self.single
        return out


def describe(error: Any) -> str:
    if error is HANG:
        return "hung"
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:297] + "..."


def race(hang: float, *calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together by a barrier. Each result is the call's
    return value, the exception it raised, or ``HANG`` after ``hang`` seconds."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [HANG] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(10)
            results[i] = call()
        except BaseException as exc:  # counted, never raised
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + hang
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return list(results)


def acked(result: Any) -> bool:
    """A racing call acknowledged: it returned an ``Ok`` Result."""
    return result is not HANG and not isinstance(result, BaseException) and bool(getattr(result, "is_ok", False))


def error_of(result: Any) -> Any:
    if result is HANG or isinstance(result, BaseException):
        return result
    return result.unwrap_err()


def read(client: Any, bucket: str, key: str) -> tuple[str, Any]:
    """``("ok", bytes)``, ``("notfound", error)`` or ``("error", error)`` — never raises."""
    try:
        result = client.get(bucket, key)
    except Exception as exc:
        return "error", exc
    if result.is_err:
        error = result.unwrap_err()
        return ("notfound" if type(error) is NotFoundError else "error"), error
    return "ok", result.unwrap().data.tobytes()


def show(outcome: tuple[str, Any], datas: dict[str, bytes]) -> str:
    kind, value = outcome
    if kind != "ok":
        return f"{kind} ({describe(value)})"
    for name, data in datas.items():
        if value == data:
            return f"bytes of {name}"
    return f"{len(value)} bytes of no write"


def peer_checksums(cluster: cs.Cluster, bucket: str, key: str) -> dict[str, str]:
    """``peer_id -> checksum`` of the current copy of ``bucket/key`` on each running peer (P4
    straight on the peer); a peer answering neither 200 nor 404 shows as ``"<status>"``."""
    state = {}
    for peer in cluster.peers:
        if not peer.running:
            continue
        try:
            resp = requests.get(f"{peer.url}/api/v4/buckets/{bucket}/metadata/{key}", timeout=10)
        except requests.RequestException as exc:
            state[peer.server_id] = f"<{type(exc).__name__}>"
            continue
        if resp.status_code == 200:
            state[peer.server_id] = resp.json()["metadata"]["checksum"]
        elif resp.status_code != 404:
            state[peer.server_id] = f"<{resp.status_code}>"
    return state


def chunk_states(cluster: cs.Cluster, bucket: str, key: str, n: int) -> list[dict[str, str]]:
    return [peer_checksums(cluster, bucket, f"{key}_{i}") for i in range(n)]


def disagreeing(states: list[dict[str, str]]) -> list[int]:
    """Chunk indexes whose replicas hold different checksums."""
    return [i for i, state in enumerate(states) if len(set(state.values())) > 1]


def misreplicated(states: list[dict[str, str]], data: bytes) -> list[tuple[int, int]]:
    """``(index, copies)`` of the chunks of ``data`` whose copy count is not ``RF`` or whose
    copies are not that chunk's bytes."""
    n = max(1, -(-len(data) // CHUNK))
    bad = []
    for i in range(n):
        want = hashlib.sha256(data[i * CHUNK:(i + 1) * CHUNK]).hexdigest()
        state = states[i] if i < len(states) else {}
        if len(state) != RF or set(state.values()) != {want}:
            bad.append((i, len(state)))
    return bad


def chunk0_version(cluster: cs.Cluster, router_index: int) -> str:
    """The version the writer behind router ``router_index`` gave chunk 0 (its unstaged R5),
    ``""`` on code without versions."""
    seen = cluster.log.select(server=cluster.routers[router_index].server_id, method="POST", path=R5_PUT_METADATA,
                              where=lambda s: s.headers.get(VERSION_HEADER, "") != ""
                              and "mictlanx-stage" not in s.headers)
    versions = [s.headers[VERSION_HEADER] for s in seen]
    return max(versions) if versions else ""


# --- scenarios ----------------------------------------------------------------------------------------
UPDATE_COUNTERS = ["both acknowledged", "some put failed", "get failed", "bytes of no acknowledged write",
                   "clients read different bytes", "replicas of a chunk disagree",
                   "chunks of the read object without rf=2 good copies", "versions compared (both acknowledged)",
                   "older of two acknowledged writes read"]


def scenario_updates(cluster: cs.Cluster, a: Any, b: Any, rounds: int, hang: float, bucket: str,
                     update: bool = True) -> Tally:
    if update:
        tally = Tally("updates", "1. racing updates (put(update=True) x2)", UPDATE_COUNTERS,
                      [c for c in UPDATE_COUNTERS[1:] if not c.startswith("versions compared")])
    else:
        counters = ["both acknowledged", "one acknowledged, other AlreadyExists", "both failed",
                    "some put failed otherwise", "nothing stored", "get failed", "bytes of no acknowledged write",
                    "clients read different bytes", "replicas of a chunk disagree",
                    "chunks of the read object without rf=2 good copies", "versions compared (both acknowledged)",
                   "older of two acknowledged writes read"]
        tally = Tally("creates", "2. racing creates (put x2, no update)", counters,
                      ["both failed", "some put failed otherwise", "nothing stored", "get failed",
                       "bytes of no acknowledged write", "clients read different bytes",
                       "replicas of a chunk disagree", "chunks of the read object without rf=2 good copies",
                       "older of two acknowledged writes read"])
    for round_ in range(rounds):
        key = f"{'upd' if update else 'new'}-{round_}"
        single = round_ % 4 == 3
        tally.rounds += 1
        tally.single_rounds += single
        if update:
            first = a.put(bucket, key, os.urandom(2500), chunk_size=CHUNK, rf=RF)
            if first.is_err:
                tally.hit("some put failed", round_, single, f"initial put: {describe(first.unwrap_err())}")
        datas = [os.urandom(4 * CHUNK - round_ % 3), os.urandom(4 * CHUNK + round_ % 5)]
        if single:
            datas = [os.urandom(CHUNK // 2), os.urandom(CHUNK // 3)]
        cluster.log.clear()
        results = race(hang, partial(a.put, bucket, key, datas[0], chunk_size=CHUNK, rf=RF, update=update),
                       partial(b.put, bucket, key, datas[1], chunk_size=CHUNK, rf=RF, update=update))
        ok = [i for i in (0, 1) if acked(results[i])]
        errors = {("a", "b")[i]: describe(error_of(results[i])) for i in (0, 1) if i not in ok}
        if len(ok) == 2:
            tally.hit("both acknowledged", round_, single)
        if update:
            if errors:
                tally.hit("some put failed", round_, single, errors)
        else:
            exists = [i for i in (0, 1) if i not in ok and type(error_of(results[i])) is AlreadyExistsError]
            if not ok:
                tally.hit("both failed", round_, single, errors)
            elif len(ok) == 1 and exists:
                tally.hit("one acknowledged, other AlreadyExists", round_, single)
            if [i for i in (0, 1) if i not in ok and i not in exists]:
                tally.hit("some put failed otherwise", round_, single, errors)
        named = {f"{('a', 'b')[i]}'s write{'' if i in ok else ' (not acknowledged)'}": datas[i] for i in (0, 1)}
        got = [read(a, bucket, key), read(b, bucket, key)]
        seen = f"a read {show(got[0], named)}; b read {show(got[1], named)}"
        if not update and all(g[0] == "notfound" for g in got):
            tally.hit("nothing stored", round_, single, f"acknowledged: {[('a', 'b')[i] for i in ok]}; {seen}")
        # a get fails when it errs, or finds nothing although a write was acknowledged
        if any(g[0] == "error" or (g[0] == "notfound" and ok) for g in got):
            tally.hit("get failed", round_, single, seen)
        good = [datas[i] for i in ok]
        if any(g[0] == "ok" and g[1] not in good for g in got):
            tally.hit("bytes of no acknowledged write", round_, single, seen)
        if got[0][0] == "ok" and got[1][0] == "ok" and got[0][1] != got[1][1]:
            tally.hit("clients read different bytes", round_, single, seen)
        if len(ok) == 2 and got[0][0] == "ok":
            versions = [chunk0_version(cluster, 0), chunk0_version(cluster, 1)]
            if all(versions):  # only code with versions names them
                tally.hit("versions compared (both acknowledged)", round_, single)
                newer = 0 if versions[0] > versions[1] else 1
                if got[0][1] != datas[newer]:
                    tally.hit("older of two acknowledged writes read", round_, single,
                              f"versions a={versions[0]} b={versions[1]}; {seen}")
        states = chunk_states(cluster, bucket, key, 6)
        bad = disagreeing(states)
        if bad:
            tally.hit("replicas of a chunk disagree", round_, single,
                      {f"{key}_{i}": {p: c[:8] for p, c in states[i].items()} for i in bad})
        reference = next((g[1] for g in got if g[0] == "ok"), None)
        if reference is not None:
            wrong = misreplicated(states, reference)
            if wrong:
                tally.hit("chunks of the read object without rf=2 good copies", round_, single,
                          f"(chunk, copies) {wrong}")
    return tally


def delayed(seconds: float, call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        time.sleep(seconds)
        return call()
    return run


def scenario_delete(cluster: cs.Cluster, a: Any, b: Any, rounds: int, hang: float, bucket: str,
                    stagger: float = 0.025) -> Tally:
    counters = ["put won (data read)", "delete won (not found)", "put failed", "delete failed",
                "get error other than NotFound", "bytes of neither", "clients read differently",
                "NotFound but chunk balls remain on peers", "fresh put after NotFound failed"]
    tally = Tally("delete", f"3. delete racing a 16-chunk put(update=True), delete {stagger * 1000:.0f} ms x "
                            "(round % 6) later", counters, counters[2:])
    for round_ in range(rounds):
        key = f"del-{round_}"
        tally.rounds += 1
        data = os.urandom(16 * CHUNK)
        if round_ % 2:
            first = a.put(bucket, key, os.urandom(3 * CHUNK), chunk_size=CHUNK, rf=RF)
            if first.is_err:
                tally.hit("put failed", round_, detail=f"initial put: {describe(first.unwrap_err())}")
        # The delete starts 0, 1, ... 5 staggers after the put (a 16-chunk put takes ~150-250 ms
        # here, a delete ~5-15 ms): released together, it would always land before the put's
        # chunks; staggered, it lands at several points of the put.
        offset = (round_ % 6) * stagger
        when = f"delete +{offset * 1000:.0f} ms"
        results = race(hang, partial(a.put, bucket, key, data, chunk_size=CHUNK, rf=RF, update=True),
                       delayed(offset, partial(b.delete, ball_id=key, bucket_id=bucket)))
        if not acked(results[0]):
            tally.hit("put failed", round_, detail=f"{when}; {describe(error_of(results[0]))}")
        if not acked(results[1]):
            tally.hit("delete failed", round_, detail=f"{when}; {describe(error_of(results[1]))}")
        got = [read(b, bucket, key), read(a, bucket, key)]
        named = {"the put": data}
        seen = f"{when}; b read {show(got[0], named)}; a read {show(got[1], named)}"
        kind, value = got[0]
        if kind == "ok" and value == data:
            tally.hit("put won (data read)", round_)
        elif kind == "notfound":
            tally.hit("delete won (not found)", round_)
        if any(g[0] == "error" for g in got):
            tally.hit("get error other than NotFound", round_, detail=seen)
        if any(g[0] == "ok" and g[1] != data for g in got):
            tally.hit("bytes of neither", round_, detail=seen)
        if got[0][0] != got[1][0] or (got[0][0] == "ok" and got[0][1] != got[1][1]):
            tally.hit("clients read differently", round_, detail=seen)
        if kind == "notfound":
            states = chunk_states(cluster, bucket, key, 17)
            left = {f"{key}_{i}": sorted(s) for i, s in enumerate(states) if s}
            if left:
                tally.hit("NotFound but chunk balls remain on peers", round_,
                          detail=f"{when}; {len(left)} chunk balls: {dict(list(left.items())[:4])}")
            fresh = os.urandom(5 * CHUNK)
            put = b.put(bucket, key, fresh, chunk_size=CHUNK, rf=RF)
            if put.is_err:
                tally.hit("fresh put after NotFound failed", round_, detail=describe(put.unwrap_err()))
            else:
                after = read(a, bucket, key)
                if after != ("ok", fresh):
                    tally.hit("fresh put after NotFound failed", round_,
                              detail=f"acknowledged, then a read {show(after, {'the fresh put': fresh})}")
    return tally


def scenario_failed_put(cluster: cs.Cluster, a: Any, b: Any, rounds: int, hang: float, bucket: str) -> Tally:
    counters = ["b's put failed (the injected fault)", "fault applied", "a's put failed",
                "a's object unreadable afterwards", "replicas of a chunk disagree",
                "chunks of the read object without rf=2 good copies"]
    tally = Tally("failed_put", "4. failed put vs another writer's identical put", counters, counters[2:])
    faults = f"{cluster.routers[1].url}/_faults"
    for round_ in range(rounds):
        key = f"same-{round_}"
        tally.rounds += 1
        data = os.urandom(6 * CHUNK)
        # Router 1 fails b's fourth chunk upload (R7) and every one after it with 400: b's put
        # fails after it uploaded chunks, while a puts the same bytes through router 0.
        rule = [{"route": "R7", "action": "status", "status": 400, "code": 400, "skip": 3}]
        resp = requests.post(faults, json=rule, timeout=5)
        if resp.status_code != 200:
            raise RuntimeError(f"/_faults answered {resp.status_code}: {resp.text}")
        try:
            results = race(hang, partial(a.put, bucket, key, data, chunk_size=CHUNK, rf=RF),
                           partial(b.put, bucket, key, data, chunk_size=CHUNK, rf=RF))
            applied = requests.get(faults, timeout=5).json()["faults"][0].get("applied", 0)
        finally:
            requests.delete(faults, timeout=5)
        if applied:
            tally.hit("fault applied", round_)
        if not acked(results[1]):
            tally.hit("b's put failed (the injected fault)", round_)
        if not acked(results[0]):
            tally.hit("a's put failed", round_, detail=describe(error_of(results[0])))
        got = [read(a, bucket, key), read(b, bucket, key)]
        named = {"the put": data}
        if acked(results[0]) and any(g != ("ok", data) for g in got):
            tally.hit("a's object unreadable afterwards", round_,
                      detail=f"b's put: {'ok' if acked(results[1]) else describe(error_of(results[1]))}; "
                             f"a read {show(got[0], named)}; b read {show(got[1], named)}")
        states = chunk_states(cluster, bucket, key, 7)
        bad = disagreeing(states)
        if bad:
            tally.hit("replicas of a chunk disagree", round_,
                      detail={f"{key}_{i}": {p: c[:8] for p, c in states[i].items()} for i in bad})
        if acked(results[0]):
            wrong = misreplicated(states, data)
            if wrong:
                tally.hit("chunks of the read object without rf=2 good copies", round_,
                          detail=f"(chunk, copies) {wrong}")
    return tally


def scenario_peer_down(cluster: cs.Cluster, a: Any, b: Any, rounds: int, hang: float, bucket: str) -> Tally:
    counters = ["put failed", "read back failed"]
    tally = Tally("peer_down", "5. new-key puts with 1 of 3 peers stopped", counters, counters)
    down = cluster.peers[2].server_id
    cluster.stop_peer(down)
    try:
        for i in range(rounds):
            tally.rounds += 1
            data = os.urandom(1500 + i)
            writer, reader = (a, b) if i % 2 else (b, a)
            put = writer.put(bucket, f"k{i}", data, chunk_size=CHUNK, rf=RF)
            if put.is_err:
                tally.hit("put failed", i, detail=describe(put.unwrap_err()))
                continue
            got = read(reader, bucket, f"k{i}")
            if got != ("ok", data):
                tally.hit("read back failed", i, detail=show(got, {"the put": data}))
    finally:
        cluster.start_peer(down)
        cluster.wait_ready()
    return tally


def scenario_rechunk(cluster: cs.Cluster, a: Any, b: Any, rounds: int, hang: float, bucket: str) -> Tally:
    counters = ["first put failed", "re-put with chunk_size 2000 failed", "read afterwards failed"]
    tally = Tally("rechunk", "6. re-put of identical content, other chunk size", counters, counters)
    for round_ in range(rounds):
        key = f"same-{round_}"
        tally.rounds += 1
        data = os.urandom(5 * CHUNK)
        first = a.put(bucket, key, data, chunk_size=CHUNK, rf=RF)
        if first.is_err:
            tally.hit("first put failed", round_, detail=describe(first.unwrap_err()))
            continue
        again = b.put(bucket, key, data, chunk_size=2 * CHUNK, rf=RF)
        if again.is_err:
            tally.hit("re-put with chunk_size 2000 failed", round_, detail=describe(again.unwrap_err()))
        got = read(b, bucket, key)
        if got != ("ok", data):
            tally.hit("read afterwards failed", round_, detail=show(got, {"the put": data}))
    return tally


SCENARIOS: dict[str, Callable[..., Tally]] = {
    "updates": scenario_updates,
    "creates": partial(scenario_updates, update=False),
    "delete": scenario_delete,
    "failed_put": scenario_failed_put,
    "peer_down": scenario_peer_down,
    "rechunk": scenario_rechunk,
}


# --- output ---------------------------------------------------------------------------------------------
def table(tally: Tally, max_details: int = 6) -> str:
    split = tally.single_rounds > 0
    head = "| counter | rounds |" + (" of which single-chunk |" if split else "")
    rule = "|---|---:|" + ("---:|" if split else "")
    lines = [f"### {tally.title}", "", head, rule,
             f"| rounds run | {tally.rounds} |" + (f" {tally.single_rounds} |" if split else "")]
    for name, value in tally.counters.items():
        lines.append(f"| {name} | {value} |" + (f" {tally.single[name]} |" if split else ""))
    lines.append("")
    lines.append(f"({tally.seconds:.1f} s)")
    if tally.details:
        lines.append("")
        shown: dict[str, int] = {}
        for d in tally.details:
            shown[d["counter"]] = shown.get(d["counter"], 0) + 1
            if shown[d["counter"]] <= max_details:
                lines.append(f"- round {d['round']}: {d['counter']}: {d['detail']}")
        for counter, n in shown.items():
            if n > max_details:
                rounds = [d["round"] for d in tally.details if d["counter"] == counter]
                lines.append(f"- {counter}: {n - max_details} more, rounds {rounds[max_details:]}")
    return "\n".join(lines)


def source_revision() -> str:
    root = Path(mictlanx_sync.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--short", "--", "mictlanx_sync"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (mictlanx_sync/ modified)" if dirty else "")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.races", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="rounds of every scenario (default 50)")
    for name in SCENARIOS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, metavar="N",
                            help=f"rounds of {name} (default --rounds; peer-down: 2 x --rounds puts)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--delete-stagger", type=float, default=25.0, metavar="MS",
                        help="scenario delete: the delete starts (round %% 6) x MS after the put (default 25)")
    parser.add_argument("--details", type=int, default=6, metavar="N",
                        help="failure details printed per counter (the JSON has all)")
    parser.add_argument("--hang", type=float, default=60.0, help="seconds before a racing call counts as hung")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the counters and details as JSON")
    args = parser.parse_args(argv)

    revision = source_revision()
    print(f"mictlanx_sync from {mictlanx_sync.__file__} (git {revision})", flush=True)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores", flush=True)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")

    started = time.monotonic()
    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="mictlanx-races-") as tmp, RaceCluster(peers=3, routers=2) as cluster:
        tmp_path = Path(tmp)
        run_id = hashlib.sha256(os.urandom(8)).hexdigest()[:8]
        with cs.new_client(cluster.uri(0), tmp_path / "a", retry=RETRY, capacity_storage="0") as a, \
                cs.new_client(cluster.uri(1), tmp_path / "b", retry=RETRY, capacity_storage="0") as b:
            for name in chosen:
                rounds = getattr(args, name)
                if rounds is None:
                    rounds = 2 * args.rounds if name == "peer_down" else args.rounds
                t0 = time.monotonic()
                try:
                    extra = {"stagger": args.delete_stagger / 1000} if name == "delete" else {}
                    tally = SCENARIOS[name](cluster, a, b, rounds, args.hang, f"r{run_id}{name.replace('_', '')}",
                                            **extra)
                except Exception:
                    traceback.print_exc()
                    print(f"scenario {name} aborted", flush=True)
                    continue
                tally.seconds = time.monotonic() - t0
                tallies.append(tally)
                print("\n" + table(tally, args.details) + "\n", flush=True)
    total = time.monotonic() - started
    print(f"total {total:.0f} s", flush=True)
    if args.json:
        out = {"date": datetime.date.today().isoformat(), "mictlanx_sync": mictlanx_sync.__file__,
               "revision": revision, "cores": os.cpu_count(), "seconds": round(total, 1),
               "argv": sys.argv, "scenarios": {t.name: t.as_json() for t in tallies}}
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
