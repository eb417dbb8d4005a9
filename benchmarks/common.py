"""Helpers shared by the benchmark modules: statistics, timing, process stats, LocalVSS."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

MB = 1_000_000
MiB = 1024 * 1024
HERE = Path(__file__).resolve().parent
NOMALLOC_DIR = HERE / "_nomalloc"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "134217728", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
BUCKET = "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the raw runs of one measurement."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "runs": [round(v, 6) for v in values]}


def throughput(size: int, seconds: list[float]) -> dict[str, Any]:
    """MB/s (10^6 bytes per second) from per-run durations."""
    return summarize([size / s / MB for s in seconds])


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def random_bytes(size: int) -> bytes:
    """Incompressible bytes (every chunk distinct)."""
    return os.urandom(size)


# --- /proc ---------------------------------------------------------------------------------
def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM) in bytes; 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def proc_stat(pid: int) -> dict[str, float]:
    """Minor/major faults and CPU seconds of a process from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return {"minflt": 0, "majflt": 0, "cpu": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    # fields[0] is field 3 (state): minflt is field 10, majflt 12, utime 14, stime 15
    return {"minflt": int(fields[7]), "majflt": int(fields[9]), "cpu": (int(fields[11]) + int(fields[12])) / tick}


def self_stat() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"minflt": usage.ru_minflt, "majflt": usage.ru_majflt, "cpu": usage.ru_utime + usage.ru_stime}


class RssSampler:
    """Samples VmRSS of some pids every ``interval`` seconds in a thread; peak per pid."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.start_rss = {name: proc_status(pid, "VmRSS") for name, pid in pids.items()}
        self.peak = dict(self.start_rss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], proc_status(pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak[name], proc_status(pid, "VmRSS"))


# --- LocalVSS ---------------------------------------------------------------------------------
@contextlib.contextmanager
def patched_env(extra: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the subprocesses started inside the block only."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def malloc_env(variant: str) -> dict[str, str]:
    """Server environment of a malloc variant (see ``malloc.py``)."""
    no_tune = {"MICTLANX_BENCH_NO_TUNE_MALLOC": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(NOMALLOC_DIR), os.environ.get("PYTHONPATH", "")) if p)}
    if variant == "mallopt":  # what the servers do by default: tune_malloc() at start
        return {}
    if variant == "glibc-default":
        return no_tune
    if variant == "env":
        return {**no_tune, **MALLOC_ENV}
    if variant == "env+mallopt":
        return dict(MALLOC_ENV)
    raise ValueError(variant)


@contextlib.contextmanager
def local_vss(peers: int = 2, variant: str = "mallopt", *, tls: bool = False) -> Iterator[Any]:
    """A process-mode LocalVSS (1 router) whose servers get the environment of ``variant``;
    ``tls``: HTTPS everywhere with a self-signed certificate (``vss.ca_file``)."""
    from mictlanx_sync import LocalVSS

    vss = LocalVSS(peers=peers, routers=1, mode="process", log_level="WARNING", tls=tls)
    with patched_env(malloc_env(variant)):
        vss.start()
    try:
        yield vss
    finally:
        vss.stop()


def server_pids(vss: Any) -> dict[str, int]:
    """``{server_id: pid}`` of a process-mode LocalVSS."""
    pids: dict[str, int] = {}
    for server in [*getattr(vss, "_routers", []), *getattr(vss, "_peers", [])]:
        proc = getattr(server, "_proc", None)
        if proc is not None:
            pids[server.server_id] = proc.pid
    return pids


def router_pid(vss: Any) -> Optional[int]:
    return next((pid for name, pid in server_pids(vss).items() if "router" in name), None)


def server_stats(vss: Any) -> dict[str, dict[str, float]]:
    return {name: proc_stat(pid) for name, pid in server_pids(vss).items()}


def stats_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, float]:
    """Summed minor faults and CPU seconds of every server between two snapshots."""
    minflt = sum(after[k]["minflt"] - before[k]["minflt"] for k in after if k in before)
    cpu = sum(after[k]["cpu"] - before[k]["cpu"] for k in after if k in before)
    return {"minflt": minflt, "cpu": cpu}


def router_session(pool: int = 32) -> Any:
    """A plain pooled ``requests.Session`` (no env proxies) for the raw ceilings."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    return session
