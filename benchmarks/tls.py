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

**Across a round trip**: ``python -m benchmarks.tls --rtt-ms direct,0,1,5 [--certs ecdsa,rsa]
[--bundles own,certifi]`` (without ``--rtt-ms``: the suite's ``tls`` section above). For each
certificate kind (``ecdsa``: P-256 as ``LocalVSS`` makes it; ``rsa``: RSA 2048), each CA file the
clients verify with (``own``: the certificate alone; ``certifi``: certifi's bundle plus it, what a
client trusting the public CAs loads) and each round-trip time, the client reaches
the router through ``benchmarks/netdelay.py`` (a relay process delaying every byte by RTT/2 each
way, and the client's first bytes by one more RTT for the TCP handshake; ``direct``: no relay),
and measures 1 KiB GET and PUT ops/s with 1 and 16 threads: ``pooled`` (the Client as shipped)
against ``unpooled`` = the same Client options with every ``Transport`` session patched so that
each request opens a new TCP connection and does a full TLS handshake (``UNPOOLED_RTT``), and
nothing else is rebuilt. Also the raw ``requests`` comparison (one thread): pooled, a new
connection per request (as the Client's), the same with one shared ``SSLContext`` (no context
built per connection), a new session per request, and TLS 1.2 pooled and per connection (two
handshake round trips instead of one); with the client's and the router's CPU ms per GET. The
relay's counts (connections per run: the check that unpooled really connects per request) and
the load average around each RTT go into ``results/tls-rtt-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit

from . import small
from .common import BUCKET, loadavg, local_vss, log, proc_stat, router_pid, router_session, self_stat, summarize


def negotiated(url: str, ca_file: str) -> dict[str, Any]:
    """The TLS version and cipher one connection to ``url`` negotiates (for the report)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cipher = tls.cipher()
        return {"version": tls.version(), "cipher": cipher[0] if cipher else None}


def raw_gets(router_url: str, ca_file: str, ops: int, reps: int,
             variants: Optional[dict[str, Callable[[str], bytes]]] = None,
             router_pid: Optional[int] = None) -> dict[str, Any]:
    """R11 GETs/s of one 1 KiB ball with plain ``requests``, one thread: one pooled session
    (``pooled``) against a new session, hence a new TLS connection, per request (``unpooled``);
    or ``variants``, ``{label: get(url) -> body}``. With ``router_pid``, also the CPU
    milliseconds per GET of this process and of the router, per variant (``cpu_ms``)."""
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

    def pooled_get(url: str) -> bytes:
        return bytes(session.get(url, timeout=30).content)

    def fresh_get(url: str) -> bytes:
        with requests.Session() as one_shot:
            one_shot.trust_env = False
            return bytes(one_shot.get(url, timeout=30, verify=ca_file).content)

    if variants is None:
        variants = {"pooled": pooled_get, "unpooled": fresh_get}
    runs: dict[str, list[float]] = {label: [] for label in variants}
    cpu: dict[str, dict[str, float]] = {label: {"client": 0.0, "router": 0.0} for label in variants}
    for _ in range(reps):  # interleaved, so all see the same load
        for label, get in variants.items():
            before = (self_stat()["cpu"], proc_stat(router_pid)["cpu"] if router_pid else 0.0)
            started = time.perf_counter()
            for _ in range(ops):
                assert get(url) == data
            runs[label].append(ops / (time.perf_counter() - started))
            cpu[label]["client"] += self_stat()["cpu"] - before[0]
            cpu[label]["router"] += (proc_stat(router_pid)["cpu"] - before[1]) if router_pid else 0.0
    session.delete(url, timeout=30)
    session.close()
    result: dict[str, Any] = {label: summarize(values) for label, values in runs.items()}
    if router_pid:
        result["cpu_ms"] = {label: {k: round(1000 * v / (ops * reps), 3) for k, v in use.items()}
                            for label, use in cpu.items()}
    log("raw R11 1 KiB GET x1: " + ", ".join(f"{label} {result[label]['median']:.0f}/s" for label in variants))
    return result


def interleaved(pooled: Any, unpooled: Any, sizes: list[int], threads_list: list[int], ops: int,
                reps: int, unpooling: Callable[[], Any] = small.unpooled,
                between: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
    """``small.measure`` rows of both clients, their runs alternating: one run of every
    configuration with ``pooled``, then one with ``unpooled`` (under ``unpooling()``, by default
    ``small.unpooled()``), and so on; ``between(label)`` after each run."""
    runs: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for rep in range(reps):
        for label, client in (("pooled", pooled), ("unpooled", unpooled)):
            with unpooling() if label == "unpooled" else contextlib.nullcontext():
                rows = small.measure(client, sizes, threads_list, ops, 1, f"{label}{rep}")
            if between is not None:
                between(label)
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


# --- across an emulated round trip (python -m benchmarks.tls --rtt-ms ...) ---------------------
#: the RTT mode's unpooled client: a new connection per request, nothing else new
UNPOOLED_RTT = ("a new TCP connection and a full TLS handshake for every request (urllib3 builds the "
                "connection's SSLContext and loads the CA file, as it does for every new connection with "
                "verify=<path>), through the same session: nothing else is rebuilt")


@functools.cache
def _closing(pool_class: type) -> type:
    """``pool_class`` whose connections are closed when a request releases them, never reused."""

    class Closing(pool_class):  # type: ignore[valid-type, misc]
        def _put_conn(self, conn: Any) -> None:
            if conn is not None:
                conn.close()
            super()._put_conn(None)  # the slot goes back: the pool's size and blocking are unchanged

    Closing.__name__ = f"Closing{pool_class.__name__}"
    return Closing


def never_reuse(session: Any) -> Any:
    """Make ``session`` open a new connection (TCP connect, full TLS handshake) for every request."""
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        manager = adapter.poolmanager
        manager.clear()
        manager.pool_classes_by_scheme = {scheme: _closing(cls)
                                          for scheme, cls in manager.pool_classes_by_scheme.items()}
    return session


@contextlib.contextmanager
def new_connection_per_request() -> Iterator[None]:
    """Every ``Transport`` uses one session of its own (made once) that never reuses a connection."""
    from mictlanx_sync.protocol import transport

    original = transport.Transport.session
    lock = threading.Lock()

    def closing_session(self: Any) -> Any:
        session = self.__dict__.get("_bench_never_reuse")
        if session is None:
            with lock:
                session = self.__dict__.get("_bench_never_reuse")
                if session is None:
                    session = self.__dict__["_bench_never_reuse"] = never_reuse(self._new_session())
        return session

    transport.Transport.session = closing_session  # type: ignore[method-assign]
    try:
        yield
    finally:
        transport.Transport.session = original  # type: ignore[method-assign]


def client_context(ca_file: str, maximum: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if maximum is not None:
        context.maximum_version = maximum
    return context


def context_session(context: ssl.SSLContext) -> Any:
    """A ``requests.Session`` whose HTTPS connections all use ``context`` (verification included:
    no CA bundle is loaded per connection)."""
    import requests
    from requests.adapters import HTTPAdapter

    class ContextAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, ssl_context=context, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None

    session = requests.Session()
    session.trust_env = False
    session.mount("https://", ContextAdapter(max_retries=0))
    return session


def handshake_facts(url: str, ca_file: str) -> dict[str, Any]:
    """Version and cipher negotiated by default and with TLS 1.2 at most, and whether a second
    connection with the same context resumes a session (it does not: no ticket is offered)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    facts: dict[str, Any] = {}
    for label, maximum in (("default", None), ("tls1.2", ssl.TLSVersion.TLSv1_2)):
        context = client_context(ca_file, maximum)
        reused = []
        for _ in range(2):
            with socket.create_connection((host, port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                cipher = tls.cipher()
                facts[label] = {"version": tls.version(), "cipher": cipher[0] if cipher else None}
                reused.append(tls.session_reused)
        facts[label]["second_connection_resumed"] = reused[1]
    return facts


def certificate_info(cert_file: str) -> str:
    """``ECDSA P-256 (prime256v1), ecdsa-with-SHA256`` or ``RSA 2048 bit, sha256WithRSAEncryption``."""
    text = subprocess.run(["openssl", "x509", "-in", cert_file, "-noout", "-text"], capture_output=True,
                          text=True, timeout=30, check=True).stdout
    key = re.search(r"Public-Key: \((\d+) bit\)", text)
    curve = re.search(r"NIST CURVE: (\S+)|ASN1 OID: (\S+)", text)
    signature = re.search(r"Signature Algorithm: (\S+)", text)
    kind = "ECDSA" if "id-ecPublicKey" in text else "RSA" if "rsaEncryption" in text else "?"
    detail = (curve.group(1) or curve.group(2)) if curve and kind == "ECDSA" else f"{key.group(1) if key else '?'} bit"
    return f"{kind} {detail}, {signature.group(1) if signature else '?'}"


def rsa_self_signed(directory: Path, hosts: Any = ("127.0.0.1", "localhost"), **_: Any) -> Any:
    """As ``make_self_signed``, with an RSA 2048 key (the other common default) instead of ECDSA P-256."""
    from mictlanx_sync.server.tls import ServerTLS, _subject_alt_names

    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(keyfile), "-out",
                    str(certfile), "-days", "2", "-subj", "/CN=MictlanX benchmark RSA", "-addext",
                    f"subjectAltName={_subject_alt_names(hosts)}"], capture_output=True, timeout=60, check=True)
    keyfile.chmod(0o600)
    return ServerTLS(str(certfile), str(keyfile))


@contextlib.contextmanager
def certificate(kind: str) -> Iterator[None]:
    """``LocalVSS(tls=True)`` started inside makes an ``ecdsa`` (as shipped) or ``rsa`` certificate."""
    if kind == "ecdsa":
        yield
        return
    if kind != "rsa":
        raise ValueError(f"certificate kind must be ecdsa or rsa, not {kind!r}")
    from unittest import mock

    with mock.patch("mictlanx_sync.server.local.make_self_signed", rsa_self_signed):
        yield


class RelayProcess:
    """``python -m benchmarks.netdelay`` to ``target``, a process of its own; ``stats()`` asks it."""

    def __init__(self, target: tuple[str, int], rtt_ms: float) -> None:
        command = [sys.executable, "-m", "benchmarks.netdelay", "--target", f"{target[0]}:{target[1]}",
                   "--delay-ms", repr(rtt_ms / 2), "--realtime"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("listening "):
            self.proc.kill()
            raise RuntimeError(f"netdelay did not start: {line!r}")
        host, port = line.split()[1].rsplit(":", 1)
        self.address = (host, int(port))

    def stats(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGUSR1)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        return dict(json.loads(line.removeprefix("stats ")))

    def close(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return dict(json.loads(out.strip().splitlines()[-1].removeprefix("stats ")))


def raw_variants(ca_file: str) -> tuple[dict[str, Callable[[str], bytes]], Callable[[], None]]:
    """The raw comparison's clients (one thread): ``{label: get(url)}`` and a closer."""
    import requests

    def getter(session: Any, verify: Any = None) -> Callable[[str], bytes]:
        if verify is not None:
            session.verify = verify
        return lambda url: bytes(session.get(url, timeout=30).content)

    def new_session(url: str) -> bytes:
        with requests.Session() as one_shot:
            one_shot.trust_env = False
            return bytes(one_shot.get(url, timeout=30, verify=ca_file).content)

    shared13, shared12 = client_context(ca_file), client_context(ca_file, ssl.TLSVersion.TLSv1_2)
    sessions = [router_session(), never_reuse(router_session()), never_reuse(context_session(shared13)),
                context_session(shared12), never_reuse(context_session(shared12))]
    for session in sessions[:2]:
        session.mount("https://", session.get_adapter("http://"))
    variants = {
        "pooled": getter(sessions[0], ca_file),
        "new connection": getter(sessions[1], ca_file),
        "new connection, shared SSLContext": getter(sessions[2]),
        "new session": new_session,
        "pooled, TLS 1.2": getter(sessions[3]),
        "new connection, TLS 1.2, shared SSLContext": getter(sessions[4]),
    }

    def close() -> None:
        for session in sessions:
            session.close()

    return variants, close


def measure_rtt(vss: Any, rtt: Optional[float], sizes: list[int], threads_list: list[int], ops: int,
                reps: int, ca_file: str) -> dict[str, Any]:
    """One RTT (``None``: no relay, straight to the router): the raw comparison, then the Client
    rows (pooled against a new connection per request), with the relay's counts; clients verify
    with ``ca_file``."""
    from mictlanx_sync import Client

    router_url = vss.router_urls[0]
    router = urlsplit(router_url)
    relay = RelayProcess((router.hostname or "127.0.0.1", router.port or 443), rtt) if rtt is not None else None
    load_before = loadavg()
    try:
        if relay is not None:
            url = f"https://{relay.address[0]}:{relay.address[1]}"
            uri = vss.uri.replace(f":{router.port}/", f":{relay.address[1]}/")
        else:
            url, uri = router_url, vss.uri
        log(f"RTT {'direct' if rtt is None else f'{rtt:g} ms'}: {uri}")
        variants, close = raw_variants(ca_file)
        try:
            raw = raw_gets(url, ca_file, ops, reps, variants, router_pid(vss))
        finally:
            close()
        connections: dict[str, list[int]] = {"pooled": [], "unpooled": []}
        last = [relay.stats()["connections"] if relay else 0]

        def count(label: str) -> None:
            if relay is not None:
                now = relay.stats()["connections"]
                connections[label].append(now - last[0])
                last[0] = now

        # The same options for both: a 1 KiB object is one chunk, and max_workers=1 (the suite's
        # unpooled client) would make 16 threads' PUTs wait for one upload worker.
        with Client(uri, verify=ca_file, capacity_storage="0", progress=False) as pooled, \
                Client(uri, verify=ca_file, capacity_storage="0", progress=False) as unpooled:
            rows = interleaved(pooled, unpooled, sizes, threads_list, ops, reps, new_connection_per_request, count)
    finally:
        relay_stats = relay.close() if relay is not None else None
    for row in rows:
        log(f"RTT {rtt} {row['client']} {row['size']} B x{row['threads']}: put {row['put']['median']:.0f}/s "
            f"get {row['get']['median']:.0f}/s")
    return {"rtt_ms": rtt, "rows": rows, "raw_get": raw, "relay": relay_stats,
            "connections_per_run": connections if relay is not None else None,
            "load_before": load_before, "load_after": loadavg()}


def ca_bundle(vss: Any, kind: str) -> tuple[str, str]:
    """The CA file clients verify with, and its description: ``own`` = the self-signed certificate
    alone (as ``vss.ca_file``); ``certifi`` = certifi's bundle with it appended (what a client that
    trusts the public CAs and its own, e.g. ``verify=True`` against a public certificate, loads)."""
    if kind == "own":
        return vss.ca_file, "the certificate alone (1 CA)"
    if kind != "certifi":
        raise ValueError(f"CA bundle must be own or certifi, not {kind!r}")
    import certifi

    path = Path(vss.ca_file).with_name("certifi-plus-own.pem")
    path.write_text(Path(certifi.where()).read_text() + "\n" + Path(vss.ca_file).read_text())
    count = ssl.create_default_context(cafile=str(path)).cert_store_stats()["x509_ca"]
    return str(path), f"certifi's bundle and the certificate ({count} CAs)"


def run_rtt(rtts: list[Optional[float]], certs: list[str], bundles: list[str], sizes: list[int],
            threads_list: list[int], ops: int, reps: int) -> dict[str, Any]:
    """Every certificate kind and CA bundle, every RTT: ``measure_rtt`` results with the TLS facts."""
    results: dict[str, Any] = {"unpooled": UNPOOLED_RTT, "certificates": []}
    for kind in certs:
        with certificate(kind), local_vss(tls=True) as vss:
            info = certificate_info(vss.ca_file)
            facts = handshake_facts(vss.router_urls[0], vss.ca_file)
            log(f"TLS LocalVSS up ({info}): {facts}")
            for bundle in bundles:
                ca_file, described = ca_bundle(vss, bundle)
                per_rtt = [measure_rtt(vss, rtt, sizes, threads_list, ops, reps, ca_file) for rtt in rtts]
                results["certificates"].append({"kind": kind, "certificate": info, "bundle": bundle,
                                                "ca_bundle": described, "tls": facts, "rtts": per_rtt})
    return results


def _rtt_label(rtt: Optional[float]) -> str:
    return "direct" if rtt is None else f"{rtt:g} ms"


#: round trips of a 1 KiB operation: (requests, round trips per request on a new TLS 1.3 connection)
ROUND_TRIPS = {"get": 1, "put": 2}
#: a new connection: TCP handshake 1, TLS handshake 1 (TLS 1.3; 2 with TLS 1.2), the request 1
NEW_CONNECTION_RTTS = {"TLS 1.3": 3, "TLS 1.2": 4}


def model_ops(direct: dict[str, Any], client: str, op: str, threads: int, rtt_ms: float,
              tls: str = "TLS 1.3") -> float:
    """Modelled ops/s at ``rtt_ms`` from the direct (loopback) run: each of ``threads`` waits its
    operation's CPU time (1 / direct ops/s with one thread) plus its round trips, and no client
    goes faster than its direct 16-thread rate (the CPU the machine has for it)."""
    rows = {r["threads"]: r[op]["median"] for r in direct["rows"] if r["client"] == client}
    per_request = 1 if client == "pooled" else NEW_CONNECTION_RTTS[tls]
    latency = 1 / rows[1] + ROUND_TRIPS[op] * per_request * rtt_ms / 1000
    return min(threads / latency, max(rows.values()))


def model_ratio(direct: dict[str, Any], op: str, threads: int, rtt_ms: float, tls: str = "TLS 1.3") -> float:
    return (model_ops(direct, "pooled", op, threads, rtt_ms, tls)
            / model_ops(direct, "unpooled", op, threads, rtt_ms, tls))


def _late(stats: dict[str, Any]) -> str:
    late = stats.get("late_ms")
    if not late or late.get("median") is None:
        return "?"
    return f"{late['median']:.2f} ms median, {late['p99']:.2f} ms p99"


def rtt_markdown(result: dict[str, Any]) -> str:
    """The RTT mode's report: per certificate, per RTT, the Client table and the raw comparison."""
    from .report import cell

    meta = result["meta"]
    out = [f"# Pooled vs unpooled over TLS across a round trip, {meta['date']}", "",
           f"`{meta['command']}` on {meta['machine']}; load average at start {meta['load_start']}, at end "
           f"{meta['load_end']}; {meta['seconds']:.0f} s. Every figure is the median of {meta['reps']} runs "
           f"({meta['ops']} operations each) with (min–max); pooled and unpooled runs alternate.", "",
           "A process-mode `LocalVSS(tls=True)` (1 router, 2 peers; the router reaches the peers over TLS, "
           "pooled). The client reaches the router through `benchmarks/netdelay.py`, a relay in a process of its "
           "own that delays every byte by RTT/2 each way and the client's first bytes by one RTT more (the TCP "
           "handshake); `direct` = no relay. `pooled` = the Client as shipped (keep-alive); `unpooled` = "
           f"{result['unpooled']}. Ratio = pooled / unpooled at the same thread count. (model) = `model_ratio`: "
           "from the direct run, each operation waits its loopback time plus its round trips (GET 1 pooled, 3 "
           "unpooled; PUT 2 and 6: TCP handshake, TLS 1.3 handshake, request), and no client beats its direct "
           "16-thread rate; the relay's own cost is not in it.", ""]
    for cert in result["certificates"]:
        facts = cert["tls"]
        out += [f"## Certificate: {cert['certificate']}; clients verify with "
                f"{cert.get('ca_bundle', 'the certificate alone (1 CA)')}", "",
                f"Negotiated: {facts['default']['version']} {facts['default']['cipher']} (TLS 1.2 at most: "
                f"{facts['tls1.2']['version']} {facts['tls1.2']['cipher']}); a second connection with the same "
                f"SSLContext resumed a session: {facts['default']['second_connection_resumed']}.", "",
                "| RTT | threads | GET pooled | GET unpooled | GET ratio (model) | PUT pooled | PUT unpooled "
                "| PUT ratio (model) | load before → after |", "|---|---|---|---|---|---|---|---|---|"]
        direct = next((m for m in cert["rtts"] if m["rtt_ms"] is None), None)
        for measured in cert["rtts"]:
            rows = measured["rows"]
            get_ratios, put_ratios = ratios(measured, 1024, "get"), ratios(measured, 1024, "put")
            for threads in sorted(get_ratios):
                pooled = next(r for r in rows if r["client"] == "pooled" and r["threads"] == threads)
                unpooled = next(r for r in rows if r["client"] == "unpooled" and r["threads"] == threads)
                model = {op: f" ({model_ratio(direct, op, threads, measured['rtt_ms']):.1f}x)"
                         if direct is not None and measured["rtt_ms"] is not None else "" for op in ("get", "put")}
                out.append(f"| {_rtt_label(measured['rtt_ms'])} | {threads} | {cell(pooled['get'])} | "
                           f"{cell(unpooled['get'])} | {get_ratios[threads]:.1f}x{model['get']} | "
                           f"{cell(pooled['put'])} | {cell(unpooled['put'])} | "
                           f"{put_ratios[threads]:.1f}x{model['put']} | {measured['load_before'][0]} → "
                           f"{measured['load_after'][0]} |")
        out += ["", "Without the Client (plain `requests`, one thread, R11 GET of one 1 KiB ball; ops/s, and the "
                    "CPU ms per GET of this process and of the router):", "",
                ]
        labels = [k for k in cert["rtts"][0]["raw_get"] if k != "cpu_ms"]
        out.append("| RTT | " + " | ".join(labels) + " |")
        out.append("|---|" + "---|" * len(labels))
        for measured in cert["rtts"]:
            raw = measured["raw_get"]
            cpu = raw.get("cpu_ms", {})
            out.append(f"| {_rtt_label(measured['rtt_ms'])} | " + " | ".join(
                f"{cell(raw[k])}" + (f"; CPU {cpu[k]['client']:.2f} + {cpu[k]['router']:.2f} ms" if k in cpu else "")
                for k in labels) + " |")
        out += ["", "Relay (`netdelay`): " + "; ".join(
            f"{_rtt_label(m['rtt_ms'])}: {m['relay']['connections']} connections, {m['relay']['cpu_s']:.1f} CPU s "
            f"in {m['relay']['seconds']:.0f} s ({m['relay'].get('scheduling', 'normal')}), deliveries late by "
            f"{_late(m['relay'])}, new connections per unpooled run (put+get+delete of {meta['ops']} objects per "
            f"thread count) {m['connections_per_run']['unpooled']}, per pooled run "
            f"{m['connections_per_run']['pooled']}" for m in cert["rtts"] if m["relay"]) + ".", ""]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m benchmarks.tls``: without ``--rtt-ms``, the suite's ``tls`` section as
    ``python -m benchmarks --only tls`` runs it; with it, the RTT mode (module docstring)."""
    import argparse
    import datetime
    import platform

    parser = argparse.ArgumentParser(prog="python -m benchmarks.tls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", default=None,
                        help="comma-separated round-trip times in ms, 'direct' for no relay (e.g. direct,0,1,5); "
                             "without it: the suite's tls section, unchanged")
    parser.add_argument("--certs", default="ecdsa", help="comma-separated certificate kinds: ecdsa, rsa")
    parser.add_argument("--bundles", default="own",
                        help="comma-separated CA files the clients verify with: own (the certificate alone), "
                             "certifi (certifi's bundle plus the certificate)")
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--ops", type=int, default=40, help="operations per run and thread count")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="without --rtt-ms: the suite's --quick profile")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--stem", default=None, help="output file name stem (default tls-rtt-<date>)")
    args = parser.parse_args(argv)
    if args.rtt_ms is None:
        from .__main__ import main as suite

        return suite(["--only", "tls", "--out", args.out, *(["--quick"] if args.quick else []),
                      *(["--stem", args.stem] if args.stem else [])])
    rtts = [None if v.strip() == "direct" else float(v) for v in args.rtt_ms.split(",") if v.strip()]
    certs = [c.strip() for c in args.certs.split(",") if c.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    now = datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    meta = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "command": "python -m benchmarks.tls " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                       f"{platform.platform()}", "reps": args.reps, "ops": args.ops, "load_start": loadavg()}
    bundles = [b.strip() for b in args.bundles.split(",") if b.strip()]
    result = run_rtt(rtts, certs, bundles, [1024], threads, args.ops, args.reps)
    result["meta"] = {**meta, "load_end": loadavg(), "seconds": time.monotonic() - started}
    stem = args.stem or f"tls-rtt-{now.strftime('%Y-%m-%d')}"
    os.makedirs(args.out, exist_ok=True)
    json_path, md_path = Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(rtt_markdown(result))
    log(f"done in {result['meta']['seconds']:.0f} s: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
