"""Small objects over TLS: pooled vs unpooled put and get ops/s through a TLS LocalVSS.

The same measurement as ``small.py`` (one shared ``Client``, 1 and 16 threads), against a
process-mode ``LocalVSS(tls=True)``: router and peers serve HTTPS with the self-signed
ECDSA P-256 certificate made at start, the router reaches the peers over TLS with its own
pool. *pooled* is the Client as shipped (keep-alive connections, one TLS handshake per
connection); *unpooled* is ``small.unpooled()``: a new ``requests.Session`` per request,
so every client request pays a TCP connect and a full TLS handshake (a new session has no
TLS session to resume), with chunks one after another (``max_workers=1``). The router's
own connections to the peers stay pooled in both: only the client's pooling differs.
The two alternate run by run (pooled, unpooled, pooled, ...), so both see the same load.

The same comparison without the Client (one thread, plain ``requests`` R11 GETs of one
1 KiB ball: one ``Session`` against a new one per request) shows what the handshake alone
costs next to one request, the most pooling can gain per request on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from . import small
from .common import BUCKET, loadavg, local_vss, log, router_session, summarize


def negotiated(url: str, ca_file: str) -> dict[str, Any]:
    """The TLS version and cipher one connection to ``url`` negotiates (for the report)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cipher = tls.cipher()
        return {"version": tls.version(), "cipher": cipher[0] if cipher else None}


def raw_gets(router_url: str, ca_file: str, ops: int, reps: int) -> dict[str, Any]:
    """R11 GETs/s of one 1 KiB ball with plain ``requests``, one thread: one pooled session
    (``pooled``) against a new session, hence a new TLS connection, per request (``unpooled``)."""
    import requests

    data = os.urandom(1024)
    key = "tls-raw-get"
    session = router_session()
    session.mount("https://", session.get_adapter("http://"))
    session.verify = ca_file
    meta = {"key": key, "size": len(data), "checksum": hashlib.sha256(data).hexdigest(), "replication_factor": 1}
    answer = session.post(f"{router_url}/api/v4/buckets/{BUCKET}/metadata", json=meta, timeout=30)
    answer.raise_for_status()
    task = answer.json()["tasks_ids"][0]
    session.post(f"{router_url}/api/v4/buckets/data/{task}/chunked", data=data, timeout=30).raise_for_status()
    url = f"{router_url}/api/v4/buckets/{BUCKET}/{key}"

    def pooled_get() -> bytes:
        return bytes(session.get(url, timeout=30).content)

    def fresh_get() -> bytes:
        with requests.Session() as one_shot:
            one_shot.trust_env = False
            return bytes(one_shot.get(url, timeout=30, verify=ca_file).content)

    runs: dict[str, list[float]] = {"pooled": [], "unpooled": []}
    for _ in range(reps):  # interleaved, so both see the same load
        for label, get in (("pooled", pooled_get), ("unpooled", fresh_get)):
            started = time.perf_counter()
            for _ in range(ops):
                assert get() == data
            runs[label].append(ops / (time.perf_counter() - started))
    session.delete(url, timeout=30)
    session.close()
    result = {label: summarize(values) for label, values in runs.items()}
    log(f"raw R11 1 KiB GET x1: pooled {result['pooled']['median']:.0f}/s "
        f"unpooled {result['unpooled']['median']:.0f}/s")
    return result


def interleaved(pooled: Any, unpooled: Any, sizes: list[int], threads_list: list[int], ops: int,
                reps: int) -> list[dict[str, Any]]:
    """``small.measure`` rows of both clients, their runs alternating: one run of every
    configuration with ``pooled``, then one with ``unpooled`` (under ``small.unpooled()``), and so on."""
    runs: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for rep in range(reps):
        for label, client in (("pooled", pooled), ("unpooled", unpooled)):
            with small.unpooled() if label == "unpooled" else contextlib.nullcontext():
                rows = small.measure(client, sizes, threads_list, ops, 1, f"{label}{rep}")
            for row in rows:
                slot = runs.setdefault((label, row["size"], row["threads"]), {"put": [], "get": []})
                for op in ("put", "get"):
                    slot[op] += row[op]["runs"]
    return [{"client": label, "size": size, "threads": threads, "ops_per_rep": ops, "put": summarize(values["put"]),
             "get": summarize(values["get"])} for (label, size, threads), values in runs.items()]


def run(sizes: list[int], threads_list: list[int], ops: int, reps: int) -> dict[str, Any]:
    """Pooled and unpooled rows (``small.measure`` rows labelled ``pooled``/``unpooled``), the
    negotiated TLS parameters and the load average around the measurement."""
    from mictlanx_sync import Client

    load_before = loadavg()
    with local_vss(tls=True) as vss:
        log(f"TLS LocalVSS up: {vss.uri} (CA {vss.ca_file})")
        handshake = negotiated(vss.router_urls[0], vss.ca_file)
        log(f"TLS: {handshake['version']} {handshake['cipher']}")
        raw = raw_gets(vss.router_urls[0], vss.ca_file, ops, reps)
        with Client(vss.uri, verify=vss.ca_file, capacity_storage="0", progress=False) as pooled, \
                Client(vss.uri, verify=vss.ca_file, capacity_storage="0", progress=False, max_workers=1,
                       max_bulk_workers=1) as unpooled:
            rows = interleaved(pooled, unpooled, sizes, threads_list, ops, reps)
    for row in rows:
        log(f"TLS {row['client']} {row['size']} B x{row['threads']}: put {row['put']['median']:.0f}/s "
            f"get {row['get']['median']:.0f}/s (median of {row['get']['n']})")
    return {"rows": rows, "raw_get": raw, "tls": handshake, "certificate": "self-signed ECDSA P-256",
            "load_before": load_before, "load_after": loadavg()}


def ratios(result: dict[str, Any], size: int, op: str) -> dict[int, float]:
    """pooled / unpooled median ops/s per thread count, for one object size and operation."""
    rows = [r for r in result["rows"] if r["size"] == size]
    pooled = {r["threads"]: r[op]["median"] for r in rows if r["client"] == "pooled"}
    unpooled = {r["threads"]: r[op]["median"] for r in rows if r["client"] == "unpooled"}
    return {t: pooled[t] / unpooled[t] for t in sorted(pooled) if unpooled.get(t)}
