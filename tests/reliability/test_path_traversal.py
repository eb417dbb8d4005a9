"""Path traversal in every id position never touches a file outside ``data_dir`` (protocol §2.2).

A peer and a router run as subprocesses with their data dirs under one temporary root, next
to a sentinel directory. Traversal strings (raw ``../``, ``%2e%2e``, ``%2F``, ``..%5c``,
absolute paths, NUL, double encoding) go into the bucket, key, ball_id, task id and peer id
positions: path segments (sent byte for byte over a raw socket: no client-side
normalization), JSON bodies, headers and queries, through reads, writes, deletes, disables,
replications and registrations. The whole tree under the root is snapshotted before and
after (path, type, size, mtime, SHA-256): nothing outside the two data dirs may be created,
modified or removed. Every answer is a 4xx (never 2xx, never 5xx); ids that are one
percent-encoded path segment are answered with 400/400, as §2.2 requires.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import quote

import pytest

from tests.support.servers import ServerProcess, start_peer, start_router

PEER_ID = "mictlanx-peer-0"
DATA = os.urandom(64)
CHECKSUM = hashlib.sha256(DATA).hexdigest()


# --- a raw HTTP/1.1 client: the request target goes on the wire exactly as given ---------------
def raw_request(port: int, method: str, target: bytes, headers: Optional[dict[str, str]] = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        chunks = []
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            chunks.append(piece)
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    got = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if got.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return int(status_line.split()[1]), got, payload


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        data = rest[size + 2:]
    return b"".join(out)


# --- the file-system snapshot ------------------------------------------------------------------
def snapshot(root: Path, allowed: list[Path]) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root`` except inside ``allowed`` dirs: type, size, mtime and SHA-256."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in allowed]
        for name in dirnames + filenames:
            path = here / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess, ServerProcess, int]]:
    root = tmp_path_factory.mktemp("traversal")
    sentinel = root / "sentinel"
    (sentinel / "sub").mkdir(parents=True)
    (sentinel / "secret.txt").write_text("do not touch\n")
    (sentinel / "sub" / "nested.bin").write_bytes(os.urandom(128))
    (root / "beside-data.txt").write_text("sibling of the data dirs\n")
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))  # P19/R17 registrations point at a port that refuses connections
    peer = start_peer(root / "data", PEER_ID)
    router = None
    try:
        router = start_router(root / "router-data", [(PEER_ID, peer.url)], "--health-interval", "0.5")
        yield root, peer, router, dead.getsockname()[1]
    finally:
        if router is not None:
            router.kill()
        peer.kill()
        dead.close()


def path_values(root: Path) -> list[tuple[bytes, bool]]:
    """``(raw segment, is_one_encoded_segment)``: the second is §2.2's must-be-400/400 set."""
    absolute = str(root / "sentinel" / "owned")
    return [
        (b"..", False), (b"../..", False), (b"../../sentinel/owned", False), (b"..%2f..%2fsentinel%2fowned", True),
        (b"%2e%2e", True), (b"%2E%2E", True), (b"%2e%2e%2f%2e%2e%2fsentinel", True), (b".%2e", True),
        (b"..%5c..%5csentinel", True), (b"..\\..\\sentinel", False), (b"%2Fetc%2Fpasswd", True),
        (b"/etc/passwd", False), (absolute.encode(), False), (quote(absolute, safe="").encode(), True),
        (b"a%00b", True), (b"%00", True), (b"a\x00b", False), (b"....//....//sentinel", False),
        (b"%252e%252e%252fsentinel", True), (b"..%c0%afsentinel", True), (b"%u002e%u002e", True),
    ]


def body_values(root: Path) -> list[str]:
    absolute = str(root / "sentinel" / "owned")
    return ["..", "../../sentinel/owned", "..\\..\\sentinel\\owned", absolute, "/etc/passwd", "a\x00b", "%2e%2e",
            "..%2fsentinel", "sentinel/../../owned", ".", "./owned"]


def requests_for(kind: str, raw: bytes, dead_port: int) -> list[tuple[str, str, bytes, dict[str, str], bytes]]:
    """``(position, method, target, headers, body)`` with ``raw`` in every path id position."""
    meta = json.dumps({"key": "k", "size": len(DATA), "checksum": CHECKSUM}).encode()
    v = b"/api/v4"
    out = [
        ("bucket", "POST", v + b"/buckets/" + raw + b"/metadata", {"Content-Type": "application/json"}, meta),
        ("bucket", "GET", v + b"/buckets/" + raw + b"/metadata", {}, b""),
        ("bucket", "GET", v + b"/buckets/" + raw + b"/metadata/k", {}, b""),
        ("bucket", "GET", v + b"/buckets/" + raw + b"/k", {}, b""),
        ("bucket", "DELETE", v + b"/buckets/" + raw + b"/k", {}, b""),
        ("bucket", "POST", v + b"/buckets/" + raw + b"/k/disable", {}, b""),
        ("bucket", "GET", v + b"/buckets/" + raw + b"/k/size", {}, b""),
        ("bucket", "DELETE", v + b"/buckets/" + raw + b"/bid/k", {}, b""),
        ("key", "GET", v + b"/buckets/b/metadata/" + raw, {}, b""),
        ("key", "GET", v + b"/buckets/b/" + raw, {}, b""),
        ("key", "DELETE", v + b"/buckets/b/" + raw, {}, b""),
        ("key", "POST", v + b"/buckets/b/" + raw + b"/disable", {}, b""),
        ("key", "GET", v + b"/buckets/b/" + raw + b"/size", {}, b""),
        ("ball_id", "GET", v + b"/buckets/b/metadata/" + raw + b"/chunks", {}, b""),
        ("ball_id", "DELETE", v + b"/buckets/b/bid/" + raw, {}, b""),
        ("task_id", "POST", v + b"/buckets/data/" + raw, {"Content-Type": "multipart/form-data; boundary=x"},
         b"--x\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n" + DATA + b"\r\n--x--\r\n"),
        ("task_id", "POST", v + b"/buckets/data/" + raw + b"/chunked", {}, DATA),
    ]
    if kind == "peer":
        out += [
            ("key", "POST", v + b"/buckets/b/" + raw + b"/replicate", {}, b""),
            ("bucket", "POST", v + b"/buckets/" + raw + b"/k/replicate", {}, b""),
            ("ball_id", "GET", v + b"/buckets/b/metadata/" + raw + b"/group", {}, b""),
            ("task_id", "DELETE", v + b"/tasks/" + raw, {}, b""),
        ]
    else:
        out += [
            ("key", "POST", v + b"/u/buckets/b/" + raw, {"Content-Type": "application/json"}, b"{}"),
            ("bucket", "POST", v + b"/u/buckets/" + raw + b"/k", {"Content-Type": "application/json"}, b"{}"),
            ("ball_id", "GET", v + b"/buckets/b/" + raw + b"/merge", {}, b""),
            ("task_id", "POST", v + b"/buckets/data/" + raw + b"/chunkedv1", {}, DATA),
            ("peer_id", "DELETE", v + b"/peers/" + raw, {}, b""),
        ]
    return out


def body_requests(kind: str, value: str, dead_port: int) -> list[tuple[str, str, bytes, dict[str, str], bytes]]:
    """The same value in JSON bodies, headers and queries."""
    js = {"Content-Type": "application/json"}
    meta = {"key": "k", "size": len(DATA), "checksum": CHECKSUM}
    q = quote(value, safe="").encode()
    out = [
        ("body key", "POST", b"/api/v4/buckets/b/metadata", js, json.dumps({**meta, "key": value}).encode()),
        ("body ball_id", "POST", b"/api/v4/buckets/b/metadata", js, json.dumps({**meta, "ball_id": value}).encode()),
        ("body bucket_id", "POST", b"/api/v4/buckets/b/metadata", js,
         json.dumps({**meta, "bucket_id": value}).encode()),
        ("query after", "GET", b"/api/v4/buckets/b/metadata?after=" + q, {}, b""),
    ]
    if "\x00" not in value:  # headers: Task-Id (P1, P8, R13 preconditions), Peer-Id (R11 pinning)
        out.append(("header Task-Id", "DELETE", b"/api/v4/buckets/b/k", {"Task-Id": value}, b""))
        if kind == "peer":
            out.append(("header Task-Id", "POST", b"/api/v4/buckets/b/metadata", {**js, "Task-Id": value},
                        json.dumps(meta).encode()))
        else:
            out.append(("header Peer-Id", "GET", b"/api/v4/buckets/b/k", {"Peer-Id": value}, b""))
    if kind == "peer":
        node = {"id": value, "disk": 1, "memory": 1, "ip_addr": "127.0.0.1", "port": dead_port, "weight": 1.0,
                "used_disk": 0, "used_memory": 0}
        out += [("body node id", "POST", b"/api/v4/nodes", js, json.dumps(node).encode()),
                ("query to", "POST", b"/api/v4/buckets/b/k/replicate?to=" + q, {}, b""),
                ("query after", "GET", b"/api/v4/xballs?after=b@" + q, {}, b"")]
    else:
        entry = {"peer_id": value, "hostname": "127.0.0.1", "port": dead_port, "protocol": "http"}
        out += [("body peer_id", "POST", b"/api/v4/peers", js, json.dumps(entry).encode()),
                ("body peer_id", "POST", b"/api/v4/xpeers", js, json.dumps([entry]).encode())]
    return out


def _code(body: bytes) -> object:
    try:
        return json.loads(body)["detail"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _error_body_ok(body: bytes) -> bool:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return False
    return isinstance(detail, dict) and isinstance(detail.get("code"), int) and isinstance(detail.get("msg"), str)


@pytest.mark.parametrize("kind", ["peer", "router"])
def test_traversal_never_leaves_data_dir(layout: tuple[Path, ServerProcess, ServerProcess, int], kind: str) -> None:
    root, peer, router, dead_port = layout
    server = peer if kind == "peer" else router
    assert server.port is not None
    allowed = [root / "data", root / "router-data"]
    before = snapshot(root, allowed)
    assert "sentinel/secret.txt" in before
    problems: list[str] = []
    attempts = 0
    for raw, one_segment in path_values(root):
        for position, method, target, headers, body in requests_for(kind, raw, dead_port):
            status, _, payload = raw_request(server.port, method, target, headers, body)
            attempts += 1
            where = f"{kind} {position}: {method} {target!r}"
            if b"root:x:0:0" in payload or b"do not touch" in payload:
                problems.append(f"{where} -> {status}: served a file outside data_dir")
            if not 400 <= status < 500:
                problems.append(f"{where} -> {status} {payload[:120]!r}")
            elif b"\x00" not in raw and not _error_body_ok(payload):
                problems.append(f"{where} -> {status} without a §2.6 error body: {payload[:120]!r}")
            if one_segment and (status != 400 or _code(payload) != 400):
                problems.append(f"{where} -> {status} {payload[:120]!r}: an encoded id must be 400/400 (§2.2)")
    for value in body_values(root):
        for position, method, target, headers, body in body_requests(kind, value, dead_port):
            status, _, payload = raw_request(server.port, method, target, headers, body)
            attempts += 1
            if not 400 <= status < 500 or not _error_body_ok(payload):
                problems.append(f"{kind} {position}={value!r}: {method} {target!r} -> {status} {payload[:120]!r}")
    assert peer.proc is not None and peer.proc.poll() is None and router.proc is not None and \
        router.proc.poll() is None, "a server died"
    after = snapshot(root, allowed)
    changed = sorted(set(before) ^ set(after)) + sorted(k for k in before if k in after and before[k] != after[k])
    print(f"\n[{kind}] {attempts} traversal attempts; {len(before)} entries outside data_dir unchanged")
    assert not changed, f"files outside data_dir created/modified/removed: {changed}"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
