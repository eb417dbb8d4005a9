"""Bad input against the real peer and router: requests generated from their ``/openapi.json``.

Why not schemathesis: both documents (protocol §2.1) describe only paths and path parameters
(no query, header or body schemas), so a schema-driven generator would fuzz path segments
only. This harness reads the same document and builds every operation with hypothesis:
fuzzed path ids (valid, reserved, traversal, encoded, unicode, over-long), random query
parameters, the protocol's headers with valid and invalid values (booleans, Range, If-Match,
Task-Id, Chunk-Size, Peer-Id), and bodies (mutated metadata, peer and node registrations,
arbitrary JSON, raw bytes, multipart), plus phase-2 uploads on fresh tasks/groups.

Checked on every answer (protocol §2.6): no 500; any other 5xx only with a status/code
pair of the table (a peer-side failure, e.g. a replication to a dead node); every 4xx and
5xx carries ``{"detail": {"code": int, "msg": str, ...}}``; no request hangs. Afterwards the
server process is alive and healthy. Every failure class is collected (not only the first)
and reported with a reproducible request.

Fuzzed registrations (R15, R17, P19) only ever name 127.0.0.1 and a bound, non-listening
port, so the servers never contact anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.support.servers import ServerProcess, start_peer, start_router

from .conftest import is_error_body, pick

pytestmark = pytest.mark.timeout(pick(300, 1800))

CASES = pick(2000, 20000)
TIME_BUDGET = pick(100.0, 900.0)  # seconds of requests per server (CI: < 2 min)
PEER_ID = "mictlanx-peer-0"
BUCKET = "fz"
ALLOWED_5XX = {502: {502, 503, 504}, 503: {666, 500}, 507: {502}}

NASTY = ["..", ".", "...", "a..b", "../x", "..%2f..%2fetc", "%2e%2e", "%2E%2E%2Fx", "a%2Fb", "a%5cb", "..%5c",
         "a%00b", "%00", "metadata", "bid", "data", "chunked", "size", "a" * 255, "a" * 256, "b" * 2000,
         "-a", "_a", ".a", "a b", "a@b", "a|b", "é", "٣", "Ａ", "\u202e", "%", "%zz", "%ff%fe", "~", "*",
         "/etc/passwd", "C:\\x", "a\\..\\b", "a;b", "a?b=c", "a#b", "%252e%252e", "\x7f"]
INTS = ["0", "1", "-1", "2", "100", "-0", "+5", " 7", "1e3", "1.5", "0x10", "٣", "", "9" * 30, "-" + "9" * 30,
        "9" * 400, "9" * 5000, "NaN", "inf", "true"]
BOOLS = ["0", "1", "true", "false", "TRUE", "False", "yes", "no", "", " 1", "2", "tru"]
SIZES = ["1", "256kb", "1MiB", "0", "8MiB", "9GB", "1.5mb", ".5k", "-1", "abc", "1 xb", "9" * 400 + ".5",
         "9" * 5000, "1" * 4301 + "kb", "1e9", "", " ", "4KiB"]
RANGES = ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=5-2", "bytes=0-1,2-3", "bytes=99999999-",
          "bytes=" + "9" * 400 + "-", "bytes=-" + "9" * 400, "items=0-1", "bytes=a-b", "", "bytes="]


def _header_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Values that ``requests`` can send: printable latin-1, no leading blank."""
    alphabet = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f")
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size)


valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s)
ints = st.one_of(st.sampled_from(INTS), st.integers(-10**30, 10**30).map(str))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                         st.text(max_size=20))
any_json = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner,
                                                                              max_size=4)), max_leaves=12)


@dataclass
class Op:
    op_id: str
    method: str
    template: str
    params: list[str]


@dataclass
class Case:
    op: Op
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Optional[bytes] = None
    setup: list[str] = field(default_factory=list)

    def describe(self) -> str:
        shown = self.body[:200] if self.body is not None else None
        query = {k: _short(v) for k, v in self.query.items()}
        headers = {k: _short(v) for k, v in self.headers.items()}
        return (f"{self.op.op_id}: {self.method} {_short(self.path, 200)} query={query} headers={headers} "
                f"body={shown!r} setup={self.setup}")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...(len {len(text)})"


class Target:
    """One server under fuzz: its process, base URL, operations, fixtures it knows."""

    def __init__(self, kind: str, server: ServerProcess, dead_port: int, known: dict[str, list[str]]) -> None:
        self.kind = kind
        self.server = server
        self.url = server.url
        self.dead_port = dead_port
        self.known = known
        self.session = requests.Session()
        self.session.trust_env = False
        doc = self.session.get(f"{self.url}/openapi.json", timeout=10).json()
        self.ops = [Op(spec.get("operationId", f"{method} {path}"), method.upper(), path,
                       [p["name"] for p in spec.get("parameters", []) if p.get("in") == "path"])
                    for path, methods in sorted(doc["paths"].items()) for method, spec in sorted(methods.items())]

    def close(self) -> None:
        self.session.close()


# --- value strategies --------------------------------------------------------------------------
def id_values(target: Target, name: str) -> st.SearchStrategy[str]:
    known = target.known.get(name, []) + target.known.get("*", [])
    base = st.one_of(st.sampled_from(known or ["x"]), valid_ids, st.sampled_from(NASTY), st.text(max_size=24))
    if name == "peer_id":  # never deregister the real peer
        base = base.filter(lambda s: s != PEER_ID)
    return base


def encode_segment(draw: st.DrawFn, value: str) -> str:
    """Percent-encode ``value`` more or less strictly (``%`` kept raw sometimes: pre-encoded input)."""
    safe = draw(st.sampled_from(["", "%", "%:@", "%.~-_"]))
    return quote(value, safe=safe)


def metadata_body(draw: st.DrawFn, target: Target) -> Any:
    data = draw(st.binary(max_size=64))
    body: dict[str, Any] = {
        "key": draw(id_values(target, "key")), "size": len(data), "checksum": hashlib.sha256(data).hexdigest(),
        "tags": draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)),
        "content_type": "application/octet-stream", "producer_id": "fz", "ball_id": draw(id_values(target, "key")),
        "bucket_id": BUCKET, "is_disabled": False, "replication_factor": 1,
    }
    mutations = {
        "size": st.one_of(st.integers(-5, 2**64), st.sampled_from([10**30, -(10**30), 2**63, 2**63 - 1]),
                          any_json),
        "checksum": st.one_of(st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True), st.text(max_size=70), any_json),
        "tags": st.one_of(any_json, st.dictionaries(st.text(max_size=4), any_json, max_size=3),
                          st.just({"k": "v" * 70000})),
        "content_type": st.one_of(st.sampled_from(["text/plain", "bad", "a/b;c=d", "é/x", "x" * 300, ""]), any_json),
        "producer_id": st.one_of(st.text(max_size=300), any_json), "key": st.one_of(id_values(target, "key"), any_json),
        "ball_id": any_json, "bucket_id": st.one_of(id_values(target, "bucket_id"), any_json),
        "is_disabled": any_json, "is_disable": any_json,
        "replication_factor": st.one_of(st.integers(-3, 5), st.just(10**30), any_json),
    }
    for name in draw(st.lists(st.sampled_from(sorted(mutations)), max_size=3, unique=True)):
        body[name] = draw(mutations[name])
    for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        body.pop(name, None)
    return body


def peer_entry(draw: st.DrawFn, target: Target) -> Any:
    entry: dict[str, Any] = {
        "peer_id": draw(id_values(target, "peer_id")),
        "hostname": draw(st.sampled_from(["127.0.0.1", "", None, 5, "a b", "x/y", "h@x", "127.0.0.1 "])),
        "port": draw(st.sampled_from([target.dead_port, 0, -1, 70000, str(target.dead_port), None, 2**70, 1.5])),
        "protocol": draw(st.sampled_from(["http", "https", "ftp", None, 1, "HTTP"])),
    }
    for name in draw(st.lists(st.sampled_from(sorted(entry)), max_size=2, unique=True)):
        entry.pop(name)
    return entry


def node_body(draw: st.DrawFn, target: Target) -> Any:
    node: dict[str, Any] = {
        "id": draw(id_values(target, "peer_id")), "disk": draw(st.integers(-1, 2**70)),
        "memory": draw(st.integers(-1, 10)), "ip_addr": draw(st.sampled_from(["127.0.0.1", "", None, 7, "a b"])),
        "port": draw(st.sampled_from([target.dead_port, 0, -1, 70000, None, "x"])),
        "weight": draw(st.one_of(st.floats(allow_nan=False), st.text(max_size=3))),
        "used_disk": draw(st.integers(-1, 10)), "used_memory": draw(st.integers(-1, 10)),
        "protocol": draw(st.sampled_from(["http", "https", "gopher", None])),
    }
    for name in draw(st.lists(st.sampled_from(sorted(node)), max_size=2, unique=True)):
        node.pop(name)
    return node


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def multipart(draw: st.DrawFn, payload: bytes) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["xYz123", "b", "-" * 70]))
    name = draw(st.sampled_from(["data", "data", "file", "DATA", ""]))
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + payload + b"\r\n"]
    closing = draw(st.sampled_from([f"--{boundary}--\r\n".encode(), b"", f"--{boundary}".encode()]))
    ctype = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                  "text/plain", f"multipart/mixed; boundary={boundary}"]))
    return b"".join(parts) + closing, ctype


# --- one case ----------------------------------------------------------------------------------
@st.composite
def cases(draw: st.DrawFn, target: Target) -> Case:
    op = draw(st.sampled_from(target.ops))
    fresh_task = op.method == "POST" and op.template.startswith("/api/v4/buckets/data/") and draw(st.booleans())
    segments = []
    values: dict[str, str] = {}
    for part in op.template.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            value = "@fresh" if (fresh_task and name == "task_id") else draw(id_values(target, name))
            values[name] = value
            segments.append(value if value == "@fresh" else encode_segment(draw, value))
        else:
            segments.append(part)
    path = "/".join(segments)
    query_names = ["start", "end", "after", "include_disabled", "to", "peers", "content_type", "filename",
                   "attachment", draw(st.text(alphabet="abcxyz_", min_size=1, max_size=6))]
    query: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(query_names), max_size=4, unique=True)):
        if name in ("start", "end"):
            query[name] = draw(ints)
        elif name in ("include_disabled", "attachment"):
            query[name] = draw(st.sampled_from(BOOLS))
        elif name in ("after", "to", "peers"):
            query[name] = draw(id_values(target, "peer_id" if name != "after" else "key"))
        else:
            query[name] = draw(st.text(max_size=20))
    header_values: dict[str, st.SearchStrategy[str]] = {
        "Update": st.sampled_from(BOOLS[:-3] + ["2"]), "Force": st.sampled_from(BOOLS),
        "Force-Get": st.sampled_from(BOOLS), "Range": st.one_of(st.sampled_from(RANGES), _header_text()),
        "If-Match": st.one_of(st.from_regex(r'"[0-9a-f]{64}"', fullmatch=True),
                              st.sampled_from(['"abc"', "*", '"' + "g" * 64 + '"', "W/\"x\""]), _header_text()),
        "Task-Id": st.one_of(valid_ids, st.sampled_from(["metadata", "a" * 129, "a.b"]), _header_text()),
        "Chunk-Size": st.one_of(st.sampled_from(SIZES).filter(lambda s: s.strip() == s and s), _header_text()),
        "Peer-Id": st.one_of(st.sampled_from([PEER_ID, "nope"]), id_values(target, "x").filter(
            lambda s: s.isprintable() and s.strip() == s and s.isascii() and s != "")),
        "Consistency-Model": _header_text(10), "Local-Peer-Id": _header_text(10),
        "Accept-Encoding": st.sampled_from(["gzip", "identity", "br, *"]),
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                         "multipart/form-data", "application/json; charset=latin-1"]),
    }
    headers = {name: draw(header_values[name])
               for name in draw(st.lists(st.sampled_from(sorted(header_values)), max_size=4, unique=True))}
    case = Case(op, op.method, path, query, headers)
    if op.method == "POST":
        case.body = draw_body(draw, target, op, case)
    return case


def draw_body(draw: st.DrawFn, target: Target, op: Op, case: Case) -> Optional[bytes]:
    t = op.template
    kind = draw(st.sampled_from(["typed", "typed", "typed", "json", "bytes", "none"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=3000))
    if kind == "json":
        return json_bytes(draw(any_json))
    if t.endswith("/metadata") or t.startswith("/api/v4/u/"):
        return json_bytes(metadata_body(draw, target))
    if t in ("/api/v4/xpeers",):
        return json_bytes([peer_entry(draw, target) for _ in range(draw(st.integers(0, 3)))])
    if t == "/api/v4/peers":
        return json_bytes(peer_entry(draw, target))
    if t == "/api/v4/nodes":
        return json_bytes(node_body(draw, target))
    if t.startswith("/api/v4/buckets/data/"):
        payload = draw(st.binary(max_size=2048))
        if "{task_id}" in t and t.endswith("{task_id}"):  # P2 / R6: multipart
            body, ctype = multipart(draw, payload)
            case.headers["Content-Type"] = ctype
            return body
        return payload
    return json_bytes(draw(any_json))


# --- running ---------------------------------------------------------------------------------
@dataclass
class Stats:
    cases: int = 0
    setup_requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: dict[tuple[Any, ...], str] = field(default_factory=dict)
    skipped_for_time: int = 0
    edge_cases: int = 0


def fresh_task(target: Target, case: Case, stats: Stats) -> tuple[str, bytes]:
    """A real phase-1 task (peer P1) or group (router R5) for a phase-2 case; its payload."""
    payload = os.urandom(len(case.body or b"") if case.body is not None else 16)
    if case.op.template.endswith("{task_id}") and case.body is not None:
        payload = case.body  # multipart: the declared size covers the whole body
    body = {"key": f"fresh{stats.cases}", "size": len(payload), "checksum": hashlib.sha256(payload).hexdigest(),
            "replication_factor": 1}
    resp = target.session.post(f"{target.url}/api/v4/buckets/{BUCKET}/metadata", json=body, timeout=15)
    stats.setup_requests += 1
    record(target, case, resp, stats, setup=True)
    if resp.status_code // 100 != 2:
        return "no-task", payload
    answer = resp.json()
    return (answer["tasks_ids"][0] if target.kind == "router" else answer["task_id"]), payload


def record(target: Target, case: Case, resp: requests.Response, stats: Stats, *, setup: bool = False) -> None:
    status = resp.status_code
    if not setup:
        stats.by_status[status] = stats.by_status.get(status, 0) + 1
    problem = None
    if status == 500:
        problem = "500 internal server error"
    elif status >= 500:
        code = resp.json().get("detail", {}).get("code") if is_error_body(resp) else None
        if code not in ALLOWED_5XX.get(status, set()):
            problem = f"{status} with code {code!r}: not a §2.6 peer-side failure"
    if problem is None and status >= 400 and not is_error_body(resp):
        problem = f"{status} without a valid error body: {resp.text[:120]!r}"
    if problem is not None:
        detail = resp.text[:160]
        key = (case.op.op_id, status, problem[:40], detail[:50])
        stats.failures.setdefault(key, f"{problem}\n    request: {case.describe()}\n    answer: {detail}")


def send(target: Target, case: Case, stats: Stats) -> None:
    path = case.path
    if "@fresh" in path:
        task_id, payload = fresh_task(target, case, stats)
        path = path.replace("@fresh", task_id)
        case.setup.append(f"fresh task {task_id}")
        if not case.op.template.endswith("{task_id}"):
            case.body = case.body if case.body and len(case.body) % 3 else payload  # valid or not
    try:
        resp = target.session.request(case.method, f"{target.url}{path}", params=case.query, headers=case.headers,
                                      data=case.body, timeout=(5, 30))
    except requests.exceptions.InvalidHeader:
        return  # not sendable by requests: not a case
    except requests.RequestException as exc:
        key = (case.op.op_id, "transport", type(exc).__name__)
        stats.failures.setdefault(key, f"no answer ({exc!r})\n    request: {case.describe()}")
        stats.cases += 1
        return
    stats.cases += 1
    record(target, case, resp, stats)


def edge_cases(target: Target) -> Iterator[Case]:
    """Deterministic: every operation with each edge value of each query parameter and header.

    Valid known ids fill the path, so the value under test is what the server trips on.
    """
    fill = {"bucket_id": BUCKET, "key": "k1", "ball_id": "obj", "task_id": "nosuchtask", "peer_id": "ghost"}
    edges: list[tuple[str, str, str]] = [("query", name, v) for name in ("start", "end") for v in INTS]
    edges += [("query", name, v) for name in ("include_disabled", "attachment") for v in BOOLS]
    edges += [("query", "after", v) for v in ("k0", "a@b", "..", "")]
    edges += [("header", "Chunk-Size", v) for v in SIZES if v.strip() == v and v]
    edges += [("header", "Range", v) for v in RANGES if v]
    edges += [("header", name, v) for name in ("Update", "Force", "Force-Get") for v in BOOLS if v.strip() == v and v]
    edges += [("header", "If-Match", v) for v in ('"' + "0" * 64 + '"', '"abc"', "*")]
    edges += [("header", "Task-Id", v) for v in ("metadata", "a" * 129, "a.b", "ok-id")]
    edges += [("header", "Peer-Id", v) for v in (PEER_ID, "nope", "a..b")]
    for op in target.ops:
        path = "/".join(fill.get(part[1:-1], "x") if part.startswith("{") else part for part in op.template.split("/"))
        for where, name, value in edges:
            case = Case(op, op.method, path, {}, {})
            (case.query if where == "query" else case.headers)[name] = value
            if op.method == "POST":
                case.body = b"{}"
            yield case
        if op.method == "POST":  # JSON bodies above 1 MiB (§2.6: 413/400 on metadata endpoints)
            big = Case(op, op.method, path, {}, {"Content-Type": "application/json"})
            big.body = json_bytes({"key": "k9", "size": 1, "checksum": "0" * 64, "tags": {"t": "x" * 1_200_000}})
            yield big


def fuzz(target: Target, run: int) -> Stats:
    stats = Stats()
    started = time.monotonic()
    for case in edge_cases(target):
        send(target, case, stats)
    edge_count = stats.edge_cases = stats.cases

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(run)
    @given(cases(target))
    def one(case: Case) -> None:
        if time.monotonic() - started > TIME_BUDGET:
            stats.skipped_for_time += 1
            return
        send(target, case, stats)
        if stats.cases % 100 == 0:
            assert target.server.proc is not None and target.server.proc.poll() is None, "server died"

    one()
    stats.by_status = dict(sorted(stats.by_status.items()))
    print(f"\n[{target.kind}] seed={run} cases={stats.cases} ({edge_count} edge, {stats.cases - edge_count} "
          f"generated; +{stats.setup_requests} phase-1 set-ups) "
          f"in {time.monotonic() - started:.1f}s; statuses={stats.by_status}; "
          f"failure classes={len(stats.failures)}")
    return stats


def assert_fuzz_ok(target: Target, stats: Stats) -> None:
    proc = target.server.proc
    assert proc is not None and proc.poll() is None, f"{target.kind} process died (exit {proc and proc.returncode})"
    health = target.session.get(f"{target.url}/health", timeout=10)
    assert health.status_code == 200 and health.json().get("status") == "ok", health.text
    if stats.failures:
        failures = "\n".join(f"  - {text}" for text in list(stats.failures.values())[:15])
        pytest.fail(f"{len(stats.failures)} failure classes against the {target.kind}:\n{failures}")
    assert stats.cases >= 500 + stats.edge_cases, f"only {stats.cases} cases in the time budget"


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_port_module() -> Iterator[int]:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    peer = start_peer(root / "peer", PEER_ID)
    try:
        router = start_router(root / "router", [(PEER_ID, peer.url)], "--health-interval", "0.5")
    except BaseException:
        peer.kill()
        raise
    try:
        with requests.Session() as s:  # a few real objects, so valid ids also hit data
            for i in range(3):
                data = os.urandom(100 * i)
                body = {"key": f"k{i}", "size": len(data), "checksum": hashlib.sha256(data).hexdigest(),
                        "ball_id": "obj", "tags": {"index": str(i)}}
                group = s.post(f"{router.url}/api/v4/buckets/{BUCKET}/metadata", json=body, timeout=10)
                assert group.status_code == 200, group.text
                put = s.post(f"{router.url}/api/v4/buckets/data/{group.json()['tasks_ids'][0]}/chunked",
                              data=data, timeout=10)
                assert put.status_code == 200, put.text
        yield peer, router
    finally:
        router.kill()
        peer.kill()


KNOWN = {"bucket_id": [BUCKET, "nobucket"], "key": ["k0", "k1", "k2", "nokey"], "ball_id": ["obj", "nob"],
         "task_id": ["nosuchtask"], "peer_id": ["ghost"]}


def test_fuzz_peer(cluster: tuple[ServerProcess, ServerProcess], dead_port_module: int, seed: int) -> None:
    peer, _ = cluster
    target = Target("peer", peer, dead_port_module, KNOWN)
    try:
        stats = fuzz(target, seed)
        assert_fuzz_ok(target, stats)
    finally:
        target.close()


def test_fuzz_router(cluster: tuple[ServerProcess, ServerProcess], dead_port_module: int, seed: int) -> None:
    _, router = cluster
    target = Target("router", router, dead_port_module, KNOWN)
    try:
        stats = fuzz(target, seed)
        assert_fuzz_ok(target, stats)
    finally:
        target.close()
