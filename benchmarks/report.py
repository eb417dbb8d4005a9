"""Results: ``results/<date>.json``, a markdown report ``results/<date>.md`` and PNG plots."""

from __future__ import annotations

import json
import os
from typing import Any

from .common import MB

GB = 1e9


def cell(stat: dict[str, Any], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and met/missed."""
    targets: list[dict[str, Any]] = []
    large = results.get("large", [])
    ratios = {"put": [], "get": []}
    raw_ratios = {"put": [], "get": []}
    for row in large:
        for op in ("put", "get"):
            if "peer" in row[op]:
                ceiling = row[op]["peer"]["median"]
                ratios[op].append((row[op]["client"]["median"] / ceiling, row))
                if "router" in row[op]:
                    raw_ratios[op].append((row[op]["router"]["median"] / ceiling, row))
    for op in ("put", "get"):
        if ratios[op]:
            values = [r for r, _ in ratios[op]]
            met = sum(1 for v in values if v >= 0.6)
            raw = [r for r, _ in raw_ratios[op]]
            targets.append({
                "target": f"{op.upper()} via router (Client) >= 60% of direct-to-peer ceiling",
                "value": f"Client/P: {min(values):.0%}–{max(values):.0%} "
                         f"(median {sorted(values)[len(values) // 2]:.0%}), met in {met}/{len(values)} configs; "
                         f"raw R/P {min(raw):.0%}–{max(raw):.0%}"
                if raw else f"{min(values):.0%}–{max(values):.0%}",
                "met": met == len(values)})
    if large:
        best = max(large, key=lambda r: r["get"]["client"]["median"])
        value = best["get"]["client"]["median"] * MB / GB
        targets.append({"target": "verified GET (Client) >= 1.0 GB/s",
                        "value": f"{value:.2f} GB/s best ({best['size'] >> 20} MiB, chunk {best['chunk_mb']} MB, "
                                 f"rf {best['rf']})", "met": value >= 1.0})
    small = [r for r in results.get("small", []) if r["client"] == "pooled"]
    base = results.get("baseline", {}).get("small", [])
    for size in sorted({r["size"] for r in small}):
        rows = [r for r in small if r["size"] == size]
        brows = [r for r in base if r["size"] == size]
        for op, goal in (("get", 400), ("put", 200)):
            best = max(rows, key=lambda r: r[op]["median"])
            value = best[op]["median"]
            targets.append({"target": f"small {size} B {op.upper()} >= {goal}/s", "value":
                            f"{value:.0f}/s ({best['threads']} threads)", "met": value >= goal})
            if brows:
                bbest = max(r[op]["median"] for r in brows)
                targets.append({"target": f"small {size} B {op.upper()} >= 5x unpooled baseline", "value":
                                f"{value / bbest:.1f}x ({value:.0f} vs {bbest:.0f}/s)", "met": value / bbest >= 5})
    targets += _tls_targets(results.get("tls"))
    cache = results.get("cache")
    if cache:
        targets.append({"target": "cache hit >= 5x faster than a miss (64 MiB get)",
                        "value": f"{cache['speedup']:.1f}x", "met": cache["speedup"] >= 5})
    memory = results.get("memory")
    if memory:
        budget = memory["client_budget"] / MB
        for op in ("put_file", "get_to_file"):
            peak = memory[op]["client_peak"]["max"]
            targets.append({"target": f"client peak RSS {op} <= 100 MB + max_workers x chunk ({budget:.0f} MB)",
                            "value": f"{peak:.0f} MB (max of runs, {memory['size'] >> 20} MiB file)",
                            "met": peak <= budget})
            growth = memory[op]["router_growth"]["max"]
            targets.append({"target": f"router RSS growth {op} <= 150 MB", "value": f"{growth:.0f} MB", "met":
                            growth <= 150})
    moves_result = results.get("moves")
    if moves_result:
        targets += [{**t, "target": f"moves {t['target']}"} for t in moves_result["targets"]]
    return targets


def _best(rows: list[dict[str, Any]], client: str, size: int, op: str) -> dict[str, Any]:
    return max((r for r in rows if r["client"] == client and r["size"] == size), key=lambda r: r[op]["median"])


def _tls_targets(tls_result: Any) -> list[dict[str, Any]]:
    """pooled/unpooled over TLS >= 5x for 1 KiB GET: best pooled vs best unpooled (as the plain-HTTP
    target), with the same-threads ratios alongside."""
    if not tls_result:
        return []
    from .tls import ratios

    rows = tls_result["rows"]
    targets = []
    for size in sorted({r["size"] for r in rows} & {1024}):
        pooled, unpooled = _best(rows, "pooled", size, "get"), _best(rows, "unpooled", size, "get")
        ratio = pooled["get"]["median"] / unpooled["get"]["median"]
        same = ", ".join(f"{threads} thread{'s' if threads > 1 else ''} {value:.1f}x"
                         for threads, value in ratios(tls_result, size, "get").items())
        targets.append({"target": f"pooled/unpooled over TLS >= 5x for {size // 1024} KiB GET",
                        "value": f"{ratio:.1f}x best vs best ({pooled['get']['median']:.0f}/s at {pooled['threads']} "
                                 f"threads vs {unpooled['get']['median']:.0f}/s at {unpooled['threads']}); "
                                 f"same threads: {same}", "met": ratio >= 5})
    return targets


def _tls_markdown(tls_result: Any) -> list[str]:
    if not tls_result:
        return []
    from .tls import ratios

    rows = tls_result["rows"]
    handshake = tls_result["tls"]
    out = ["## Small objects over TLS (ops/s, one shared Client)", "",
           f"A process-mode `LocalVSS(tls=True)`: router and peers serve HTTPS ({handshake['version']}, "
           f"{handshake['cipher']}, a {tls_result['certificate']} certificate made with openssl), the router reaches "
           "the peers over "
           "TLS with its own pool. `pooled` = the Client as shipped; `unpooled` = a new `requests.Session` per "
           "request, so every request pays a TCP connect and a full TLS handshake (no session resumption), chunks "
           "one after another (`max_workers=1`). Runs alternate (pooled, unpooled, pooled, ...) so both see the same "
           "load. Ratio = pooled / unpooled median at the same thread count. "
           f"Load average before {tls_result['load_before']}, after {tls_result['load_after']}.", "",
           "| object | threads | PUT pooled | PUT unpooled | PUT ratio | GET pooled | GET unpooled | GET ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for size in sorted({r["size"] for r in rows}):
        put_ratios, get_ratios = ratios(tls_result, size, "put"), ratios(tls_result, size, "get")
        for threads in sorted(put_ratios):
            pooled = next(r for r in rows if r["client"] == "pooled" and r["size"] == size and r["threads"] == threads)
            unpooled = next(r for r in rows
                            if r["client"] == "unpooled" and r["size"] == size and r["threads"] == threads)
            out.append(f"| {size // 1024} KiB | {threads} | {cell(pooled['put'])} | {cell(unpooled['put'])} | "
                       f"{put_ratios[threads]:.1f}x | {cell(pooled['get'])} | {cell(unpooled['get'])} | "
                       f"{get_ratios[threads]:.1f}x |")
    raw = tls_result.get("raw_get")
    if raw:
        out += ["", f"Without the Client (plain `requests`, one thread, R11 GET of one 1 KiB ball, runs interleaved): "
                    f"one session {cell(raw['pooled'])}/s, a new session per request {cell(raw['unpooled'])}/s, "
                    f"ratio {raw['pooled']['median'] / raw['unpooled']['median']:.1f}x: what the TCP connect and "
                    "the handshake cost next to one request on this machine."]
    return [*out, ""]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [f"# mictlanx-sync benchmarks, {meta['date']}", "",
           f"`{meta['command']}` on {meta['machine']}; load average at start {meta['load_start']}, "
           f"at end {meta['load_end']}; {meta['seconds']:.0f} s. Every figure is the median of "
           f"{meta['reps']} runs with (min–max). MB = 10^6 bytes.", ""]
    large = results.get("large", [])
    if large:
        out += ["## Large objects (MB/s)", "",
                "Client = `Client.put`/`Client.get` (verified) through the router; R = raw `requests` "
                "R5+R7 / R11 through the router; P = raw `requests` P1+P3 / P5 straight to the peers "
                "(the ceiling). Same hashing and parallelism (10 chunks in flight) everywhere.", "",
                "| object | chunk | rf | PUT Client | PUT R | PUT P | Client/P "
                "| GET Client | GET R | GET P | Client/P |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in large:
            cells = [f"{row['size'] >> 20} MiB", f"{row['chunk_mb']} MB", str(row["rf"])]
            for op in ("put", "get"):
                for m in ("client", "router", "peer"):
                    cells.append(cell(row[op][m]) if m in row[op] else "–")
                cells.append(f"{row[op]['client']['median'] / row[op]['peer']['median']:.0%}"
                             if "peer" in row[op] else "–")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    small = results.get("small", [])
    base = results.get("baseline", {})
    if small:
        out += ["## Small objects (ops/s, one shared Client)", "",
                "| object | threads | client | PUT/s | GET/s |", "|---|---|---|---|---|"]
        for row in small + base.get("small", []):
            out.append(f"| {row['size'] // 1024} KiB | {row['threads']} | {row['client']} | {cell(row['put'])} | "
                       f"{cell(row['get'])} |")
        out.append("")
        out.append("`unpooled` = a new `requests.Session` (new TCP connection) per request and chunks one after "
                   "another (`max_workers=1`).")
        out.append("")
    if base.get("large"):
        lg = base["large"]
        out += [f"Unpooled baseline, {lg['size'] >> 20} MiB object, chunk {lg['chunk_mb']} MB, rf 1, chunks one at "
                f"a time: PUT {cell(lg['put'])} MB/s, GET {cell(lg['get'])} MB/s.", ""]
    out += _tls_markdown(results.get("tls"))
    cache = results.get("cache")
    if cache:
        out += ["## Chunk cache (64 MiB get, MB/s)", "", "| miss | hit | no cache | hit speed-up |",
                "|---|---|---|---|",
                f"| {cell(cache['miss'])} | {cell(cache['hit'])} | {cell(cache['nocache'])} | "
                f"{cache['speedup']:.1f}x |", ""]
    budget = results.get("budget", [])
    if budget:
        first = budget[0]
        out += [f"## CPU budget of a GET ({first['size'] >> 20} MiB, chunk {first['chunk_mb']} MB, rf 1, "
                "cache off)", "",
                "CPU seconds per GB moved, per process; *bound* = cores / total, the throughput the "
                "processes could reach sharing this machine's cores with perfect overlap.", "",
                "| verify_full | MB/s | client | router | peers | total | bound (MB/s) |",
                "|---|---|---|---|---|---|---|"]
        for row in budget:
            out.append(f"| {row['verify_full']} | {cell(row['mb_s'])} | {cell(row['client'], '{:.2f}')} | "
                       f"{cell(row['router'], '{:.2f}')} | {cell(row['peers'], '{:.2f}')} | "
                       f"{cell(row['total'], '{:.2f}')} | {row['bound_mb_s']:.0f} ({row['cores']} cores) |")
        out.append("")
    memory = results.get("memory")
    if memory:
        out += [f"## Memory ({memory['size'] >> 20} MiB file, chunk {memory['chunk_mb']} MB, max_workers "
                f"{memory['max_workers']}; MB)", "",
                "| operation | client peak RSS | client RSS before | budget | router RSS growth | peers growth "
                "| MB/s |",
                "|---|---|---|---|---|---|---|"]
        for op in ("put_file", "get_to_file"):
            m = memory[op]
            peers = ", ".join(f"{cell(v)}" for v in m["peers_growth"].values())
            out.append(f"| {op} | {cell(m['client_peak'])} | {cell(m['client_rss_before'])} | "
                       f"{memory['client_budget'] / MB:.0f} | {cell(m['router_growth'])} | {peers} | "
                       f"{cell(m['throughput'])} |")
        if memory.get("note"):
            out += ["", memory["note"]]
        out.append("")
    malloc = results.get("malloc", [])
    if malloc:
        first = malloc[0]
        out += [f"## Server malloc settings ({first['size'] >> 20} MiB, chunk {first['chunk_mb']} MB, "
                f"rf {first['rf']})", "",
                "Throughput in MB/s; server faults = minor page faults of router + peers per GB moved; "
                "server CPU = their CPU seconds per GB.", "",
                "| variant | Client PUT | Client GET | raw R PUT | raw R GET | server faults/GB PUT | GET | "
                "server CPU s/GB PUT | GET |", "|---|---|---|---|---|---|---|---|---|"]
        for row in malloc:
            c, r = row["client"], row["router"]
            out.append(f"| {row['variant']} | {cell(c['put'])} | {cell(c['get'])} | {cell(r['put'])} | "
                       f"{cell(r['get'])} | {c['put']['minflt_per_gb']:.0f} | {c['get']['minflt_per_gb']:.0f} | "
                       f"{c['put']['cpu_s_per_gb']:.2f} | {c['get']['cpu_s_per_gb']:.2f} |")
        out.append("")
    moves_result = results.get("moves")
    if moves_result:
        from . import moves

        out += moves.section(moves_result)
    targets = results.get("targets", [])
    if targets:
        out += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
        for t in targets:
            out.append(f"| {t['target']} | {t['value']} | {'met' if t['met'] else '**missed**'} |")
        out.append("")
    plots = results.get("plots", [])
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def plots(results: dict[str, Any], directory: str, stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    large = results.get("large", [])
    styles = {"client": "-", "router": "--", "peer": ":"}
    labels = {"client": "Client", "router": "raw R7/R11", "peer": "raw P3/P5 (ceiling)"}
    for size in sorted({r["size"] for r in large}):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
        for ax, op in zip(axes, ("put", "get"), strict=True):
            for rf in sorted({r["rf"] for r in large}):
                rows = sorted((r for r in large if r["size"] == size and r["rf"] == rf), key=lambda r: r["chunk_mb"])
                for method in ("client", "router", "peer"):
                    pts = [r for r in rows if method in r[op]]
                    if not pts:
                        continue
                    xs = [r["chunk_mb"] for r in pts]
                    med = [r[op][method]["median"] for r in pts]
                    err = [[m - r[op][method]["min"] for m, r in zip(med, pts, strict=True)],
                           [r[op][method]["max"] - m for m, r in zip(med, pts, strict=True)]]
                    ax.errorbar(xs, med, yerr=err, linestyle=styles[method], marker="o", capsize=3,
                                color="C0" if rf == 1 else "C1", label=f"{labels[method]} rf {rf}")
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 4, 8, 16])
            ax.set_xticklabels(["1", "4", "8", "16"])
            ax.set_xlabel("chunk size (MB)")
            ax.set_ylabel("MB/s (median, min–max)")
            ax.set_title(f"{op.upper()} {size >> 20} MiB")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        name = f"{stem}-throughput-{size >> 20}MiB.png"
        fig.savefig(os.path.join(directory, name), dpi=110)
        plt.close(fig)
        made.append(name)
    small = results.get("small", [])
    base = results.get("baseline", {}).get("small", [])
    if small:
        sizes = sorted({r["size"] for r in small})
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            for op, color in (("put", "C0"), ("get", "C1")):
                for rows, style, label in ((small, "-", "pooled Client"), (base, ":", "unpooled")):
                    pts = sorted((r for r in rows if r["size"] == size), key=lambda r: r["threads"])
                    if not pts:
                        continue
                    med = [r[op]["median"] for r in pts]
                    err = [[m - r[op]["min"] for m, r in zip(med, pts, strict=True)],
                           [r[op]["max"] - m for m, r in zip(med, pts, strict=True)]]
                    ax.errorbar([r["threads"] for r in pts], med, yerr=err, linestyle=style, marker="o", capsize=3,
                                color=color, label=f"{op.upper()} {label}")
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 4, 16])
            ax.set_xticklabels(["1", "4", "16"])
            ax.set_xlabel("threads sharing one Client")
            ax.set_ylabel("ops/s (median, min–max)")
            ax.set_title(f"{size // 1024} KiB objects")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{stem}-ops-vs-threads.png"
        fig.savefig(os.path.join(directory, name), dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def write(results: dict[str, Any], directory: str, stem: str) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    results["targets"] = evaluate(results)
    results["plots"] = plots(results, directory, stem)
    json_path = os.path.join(directory, f"{stem}.json")
    md_path = os.path.join(directory, f"{stem}.md")
    with open(json_path, "w") as handle:
        json.dump(results, handle, indent=1)
    with open(md_path, "w") as handle:
        handle.write(markdown(results))
    return json_path, md_path
