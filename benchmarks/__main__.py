"""``python -m benchmarks [--quick] [--out DIR] [--only SECTIONS]``: run the suite, write the results.

Starts its own process-mode LocalVSS (1 router, 2 peers) on loopback, measures, and writes
``<out>/<date>.json`` (``<date>-quick`` with ``--quick``), ``<out>/<date>.md`` and PNG plots.
Opt-in sections (``OPT_IN``, run only when ``--only`` names them) start their own VSS:
``moves`` is ``benchmarks/moves.py`` (16 -> 17 -> 15 peers under load).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from typing import Any

from .common import MiB, loadavg, local_vss, log

SECTIONS = ("large", "small", "baseline", "tls", "cache", "budget", "memory", "malloc")
#: valid in --only but not run by default: minutes of their own VSS each
OPT_IN = ("moves",)

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "reps": 5,
        # (object size, chunk sizes in MB, replication factors); ceilings for every config
        "large": [(64 * MiB, [1, 4, 16], [1]), (64 * MiB, [4, 16], [2])],
        "small": {"sizes": [1024, 64 * 1024], "threads": [1, 4, 16], "ops": 40},
        "baseline": {"threads": [1], "ops": 40, "large_size": 32 * MiB, "large_chunk": 4},
        "tls": {"sizes": [1024], "threads": [1, 16], "ops": 40},
        "cache": {"size": 64 * MiB, "chunk": 4},
        "budget": {"size": 64 * MiB, "chunk": 16},
        "memory": {"size": 256 * MiB, "chunk": 8},
        "malloc": {"variants": ["glibc-default", "mallopt", "env"], "size": 64 * MiB, "chunk": 8, "rf": 2},
        "moves": {"objects": 500},
    },
    "full": {
        "reps": 5,
        "large": [(64 * MiB, [1, 4, 8, 16], [1, 2]), (256 * MiB, [1, 4, 8, 16], [1, 2])],
        "small": {"sizes": [1024, 64 * 1024], "threads": [1, 4, 16], "ops": 150},
        "baseline": {"threads": [1, 16], "ops": 100, "large_size": 64 * MiB, "large_chunk": 4},
        "tls": {"sizes": [1024], "threads": [1, 16], "ops": 150},
        "cache": {"size": 64 * MiB, "chunk": 4},
        "budget": {"size": 256 * MiB, "chunk": 16},
        "memory": {"size": 1024 * MiB, "chunk": 8},
        "malloc": {"variants": ["glibc-default", "mallopt", "env", "env+mallopt"], "size": 64 * MiB, "chunk": 8,
                   "rf": 2},
        "moves": {"objects": 2000},
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the < 3 minute profile (64 MiB objects, fewer configs)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                        help="output directory (default benchmarks/results)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all of them), or the "
                             f"opt-in {','.join(OPT_IN)}")
    parser.add_argument("--stem", default=None, help="output file name stem (default: the date)")
    args = parser.parse_args(argv)
    profile_name = "quick" if args.quick else "full"
    profile = PROFILES[profile_name]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS) - set(OPT_IN)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    reps = profile["reps"]
    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    stem = args.stem or (now.strftime("%Y-%m-%d") + ("-quick" if args.quick else ""))
    results: dict[str, Any] = {"meta": {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"), "profile": profile_name, "reps": reps,
        "command": "python -m benchmarks" + (" --quick" if args.quick else "")
                   + ("" if args.only == ",".join(SECTIONS) else f" --only {args.only}"),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"{platform.platform()}",
        "load_start": loadavg(), "profile_settings": profile}}
    log(f"profile {profile_name}, sections {only}, load {loadavg()}")
    from . import budget, cache, large, malloc, memory, small, tls

    if any(s in only for s in ("large", "small", "baseline", "cache", "budget")):
        with local_vss() as vss:
            log(f"LocalVSS up: {vss.uri}")
            if "large" in only:
                results["large"] = []
                for size, chunks, rfs in profile["large"]:
                    results["large"] += large.run(vss, [size], chunks, rfs, reps)
            if "small" in only:
                p = profile["small"]
                results["small"] = small.run(vss.uri, p["sizes"], p["threads"], p["ops"], reps)
            if "baseline" in only:
                p, s = profile["baseline"], profile["small"]
                results["baseline"] = small.run_baseline(vss.uri, s["sizes"], p["threads"], p["ops"], reps,
                                                         p["large_size"], p["large_chunk"])
            if "cache" in only:
                p = profile["cache"]
                results["cache"] = cache.run(vss.uri, p["size"], p["chunk"], reps)
            if "budget" in only:
                p = profile["budget"]
                results["budget"] = budget.run(vss, p["size"], p["chunk"], reps)
    if "tls" in only:  # its own LocalVSS: HTTPS everywhere
        p = profile["tls"]
        results["tls"] = tls.run(p["sizes"], p["threads"], p["ops"], reps)
    if "memory" in only:
        p = profile["memory"]
        with local_vss() as vss:
            results["memory"] = memory.run(vss, p["size"], p["chunk"], reps)
        if p["size"] < 1024 * MiB:
            results["memory"]["note"] = (f"--quick measures a {p['size'] >> 20} MiB file instead of 1 GiB; the "
                                         "full run uses 1 GiB.")
    if "malloc" in only:
        p = profile["malloc"]
        results["malloc"] = malloc.run(p["variants"], p["size"], p["chunk"], p["rf"], reps)
    if "moves" in only:  # its own VSS: 1 router, 16 peers, then 17, then 15
        from . import moves

        results["moves"] = moves.run(moves.options(["--objects", str(profile["moves"]["objects"])]))
    results["meta"]["load_end"] = loadavg()
    results["meta"]["seconds"] = time.monotonic() - started
    from . import report

    json_path, md_path = report.write(results, args.out, stem)
    log(f"done in {results['meta']['seconds']:.0f} s: {json_path}, {md_path}")
    for target in results["targets"]:
        log(f"{'met   ' if target['met'] else 'MISSED'} {target['target']}: {target['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
