"""Helpers for the ``Client`` acceptance tests: an in-process cluster with counted requests.

``Cluster`` runs N peers and M routers as uvicorn servers in daemon threads of this
process (as ``LocalVSS(mode="thread")`` does), each ASGI app wrapped in a
:class:`CountingMiddleware`, so a test can count exactly which requests every server saw.
Routers and peers can be stopped and started again **on the same port** (failure tests).
Every port is chosen by the OS at start (port 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.protocol.uri import Endpoint, build

HOST = "127.0.0.1"


def sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    """One request a server saw: who, method, path, headers (lower-case), status.

    Recorded when the request arrives (so a client that has its answer always finds it
    here); ``status`` is 0 until the response starts.
    """

    server: str
    method: str
    path: str
    headers: dict[str, str]
    status: int


class RequestLog:
    """Thread-safe list of :class:`Seen` requests, shared by every server of a cluster."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def add(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def all(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def select(self, server: Optional[str] = None, method: Optional[str] = None, path: Optional[str] = None,
               where: Optional[Callable[[Seen], bool]] = None) -> list[Seen]:
        """Requests matching every given filter; ``path`` is a regular expression (fullmatch)."""
        pattern = re.compile(path) if path is not None else None
        return [s for s in self.all()
                if (server is None or s.server == server or s.server.startswith(server))
                and (method is None or s.method == method)
                and (pattern is None or pattern.fullmatch(s.path))
                and (where is None or where(s))]

    def count(self, **filters: Any) -> int:
        return len(self.select(**filters))


class CountingMiddleware:
    """ASGI middleware recording every HTTP request as it arrives (and its status once answered)."""

    def __init__(self, app: Any, server_id: str, log: RequestLog,
                 delay: Optional[Callable[[str, str], float]] = None,
                 strip: Optional[Callable[[], set[bytes]]] = None) -> None:
        self.app = app
        self.server_id = server_id
        self.log = log
        self.delay = delay
        self.strip = strip  # response header names (lower-case) to remove, e.g. {b"etag"}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        seen = Seen(self.server_id, scope["method"], scope["path"], headers, 0)
        self.log.add(seen)

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
                removed = self.strip() if self.strip is not None else set()
                if removed:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in removed]
                    message = {**message, "headers": headers}
            await send(message)

        pause = self.delay(scope["method"], scope["path"]) if self.delay is not None else 0.0
        if pause > 0:
            await asyncio.sleep(pause)
        await self.app(scope, receive, send_wrapper)


# Paths of the requests the tests count (protocol §P3.3, §P4.5).
R5_PUT_METADATA = r"/api/v4/buckets/[^/]+/metadata"
R7_PUT_DATA = r"/api/v4/buckets/data/[^/]+/chunked"
P5_GET_DATA = r"/api/v4/buckets/(?!data/)[^/]+/(?!metadata$)[^/]+"
R11_GET_DATA = P5_GET_DATA


def _threaded_server(app: Any, port: int) -> Any:
    """``ThreadedServer`` on a uvloop loop of its own (no process-wide policy change).

    The stock ``ThreadedServer`` (``LocalVSS`` thread mode) runs plain asyncio, which costs
    ~40 ms per request on loopback here; uvloop, as the server subprocesses use, ~1 ms.
    """
    from mictlanx_sync.server.serving import ThreadedServer

    class UvloopThreadedServer(ThreadedServer):
        def _run(self) -> None:
            try:
                self.sock.listen(2048)
                try:
                    import uvloop
                except ImportError:  # uvicorn[standard] brings it; plain asyncio still works
                    asyncio.run(self.server.serve(sockets=[self.sock]))
                else:
                    uvloop.run(self.server.serve(sockets=[self.sock]))
            except BaseException as exc:  # surfaced by start()
                self._error = exc

    return UvloopThreadedServer(app, HOST, port)


class _Node:
    """One server (peer or router) of a :class:`Cluster`; restartable on its port."""

    def __init__(self, kind: str, server_id: str, data_dir: Path, make_app: Callable[[], Any]) -> None:
        self.kind = kind
        self.server_id = server_id
        self.data_dir = data_dir
        self.make_app = make_app
        self.port = 0
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.server is not None

    def start(self) -> None:
        if self.server is not None:
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _threaded_server(self.make_app(), self.port)
                break
            except OSError:  # the old socket of this port is still closing
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.start(timeout=15)
        self.port = server.port
        self.server = server

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()


class Cluster:
    """``peers`` storage peers and ``routers`` routers in threads of this process, counted.

    ``log`` records every request every server saw. ``stop_router(i)`` / ``start_router(i)``
    and ``stop_peer(id)`` / ``start_peer(id)`` keep ports and data.
    """

    def __init__(self, peers: int = 3, routers: int = 2, *, health_interval: float = 0.3,
                 data_dir: Optional[Path] = None, router_task_ttl: float = 600.0,
                 router_faults: Optional[str] = None) -> None:
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mictlanx-client-tests-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.health_interval = health_interval
        self.router_task_ttl = router_task_ttl
        #: fault-injection spec for every router (``"[]"`` installs it with no rule; rules
        #: are then set at run time through ``/_faults``)
        self.router_faults = router_faults
        #: Optional ``(method, path) -> seconds`` a router waits before handling a request.
        self.router_delay: Optional[Callable[[str, str], float]] = None
        #: Response headers the routers drop (e.g. ``{b"etag"}``: an upstream-like router).
        self.router_strip_headers: set[bytes] = set()
        #: Wraps each router's ASGI app when it starts (e.g. to hide an extension).
        self.router_wrap: Optional[Callable[[Any], Any]] = None
        #: Wraps each peer's ASGI app when it starts, likewise.
        self.peer_wrap: Optional[Callable[[Any], Any]] = None
        self.log = RequestLog()
        #: Seconds each peer waits before serving a data request (P3 upload, P5 read): slows
        #: transfers down so a test can act in the middle of one.
        self.data_delay = 0.0
        self.peers = [self._peer_node(f"mictlanx-peer-{i}") for i in range(peers)]
        self.routers = [self._router_node(f"mictlanx-router-{i}") for i in range(routers)]

    def _peer_node(self, peer_id: str) -> _Node:
        from mictlanx_sync.server.peer.app import create_app
        from mictlanx_sync.server.peer.config import PeerConfig

        data_dir = self.data_dir / peer_id

        def make_app() -> Any:
            config = PeerConfig(peer_id=peer_id, host=HOST, port=node.port, data_dir=data_dir, fsync=False)
            app = create_app(config)
            if self.peer_wrap is not None:
                app = self.peer_wrap(app)
            return CountingMiddleware(app, peer_id, self.log, self._peer_delay)

        node = _Node("peer", peer_id, data_dir, make_app)
        return node

    def _peer_delay(self, method: str, path: str) -> float:
        if self.data_delay <= 0:
            return 0.0
        if (method == "POST" and re.fullmatch(R7_PUT_DATA, path)) or (
                method == "GET" and re.fullmatch(P5_GET_DATA, path)):
            return self.data_delay
        return 0.0

    def _router_delay(self, method: str, path: str) -> float:
        return self.router_delay(method, path) if self.router_delay is not None else 0.0

    def _router_node(self, router_id: str) -> _Node:
        from mictlanx_sync.server.router.app import create_app
        from mictlanx_sync.server.router.config import RouterConfig
        from mictlanx_sync.server.router.peers import PeerEntry

        data_dir = self.data_dir / router_id

        def make_app() -> Any:
            peers = [PeerEntry(p.server_id, HOST, p.port) for p in self.peers]
            config = RouterConfig(router_id=router_id, data_dir=data_dir, peers=peers,
                                  health_interval=self.health_interval, task_ttl=self.router_task_ttl,
                                  faults=self.router_faults)
            app = create_app(config)
            if self.router_wrap is not None:
                app = self.router_wrap(app)
            return CountingMiddleware(app, router_id, self.log, self._router_delay,
                                      lambda: self.router_strip_headers)

        return _Node("router", router_id, data_dir, make_app)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> Cluster:
        try:
            for node in [*self.peers, *self.routers]:
                node.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in [*self.routers, *self.peers]:
            node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Every running router sees every running peer available (R24)."""
        expected = sum(1 for p in self.peers if p.running)
        deadline = time.monotonic() + timeout
        while True:
            counts = []
            for router in self.routers:
                if not router.running:
                    continue
                try:
                    counts.append(requests.get(f"{router.url}/health", timeout=2).json()["available_peers"])
                except (requests.RequestException, ValueError, KeyError):
                    counts.append(-1)
            if all(c == expected for c in counts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready: routers see {counts}, expected {expected}")
            time.sleep(0.05)

    # --- failure injection ---------------------------------------------------------------
    def router(self, index: int) -> _Node:
        return self.routers[index]

    def stop_router(self, index: int) -> None:
        self.routers[index].stop()

    def start_router(self, index: int) -> None:
        self.routers[index].start()

    def peer(self, peer_id: str) -> _Node:
        return next(p for p in self.peers if p.server_id == peer_id)

    def stop_peer(self, peer_id: str) -> None:
        self.peer(peer_id).stop()

    def start_peer(self, peer_id: str) -> None:
        self.peer(peer_id).start()

    # --- addresses ------------------------------------------------------------------------
    def uri(self, *indexes: int) -> str:
        """The MictlanX URI of the routers ``indexes`` (all by default), in that order."""
        chosen = [self.routers[i] for i in (indexes or range(len(self.routers)))]
        return build([Endpoint(r.server_id, HOST, r.port, protocol="http") for r in chosen])

    def holders(self, bucket_id: str, key: str) -> list[str]:
        """Peers holding ``bucket_id/key`` (P4 straight on each running peer)."""
        found = []
        for peer in self.peers:
            if not peer.running:
                continue
            resp = requests.get(f"{peer.url}/api/v4/buckets/{bucket_id}/metadata/{key}", timeout=10)
            if resp.status_code == 200:
                found.append(peer.server_id)
        return found

    def remove_everywhere(self, bucket_id: str, key: str) -> int:
        """P8 without version headers on every running peer: the ball is gone at once, with
        no tombstone and no grace for pinned reads (a hole no client could make through a
        router, which always deletes with a tombstone). Returns how many copies went."""
        removed = 0
        for peer in self.peers:
            if peer.running:
                resp = requests.delete(f"{peer.url}/api/v4/buckets/{bucket_id}/{key}", timeout=10)
                assert resp.status_code in (200, 404), resp.text
                removed += resp.status_code == 200
        return removed

    def version_files(self, peer_id: str, bucket_id: str, key: str) -> list[Path]:
        """The committed version files of ``bucket_id@key`` on one peer (protocol §3.1 layout);
        a version small enough to be kept in the index has none (``inline_versions``)."""
        digest = sha256(f"{bucket_id}@{key}".encode())
        return sorted((self.peer(peer_id).data_dir / "balls").glob(f"{digest}.*"))

    def inline_versions(self, peer_id: str, bucket_id: str, key: str) -> list[int]:
        """The ``blobs`` row ids of the versions of ``bucket_id@key`` kept in one peer's index (docs/storage.md)."""
        db = sqlite3.connect(self.peer(peer_id).data_dir / "index.sqlite3", timeout=10)
        try:
            rows = db.execute("SELECT file FROM balls WHERE bucket_id = ? AND key = ? UNION "
                              "SELECT file FROM versions WHERE bucket_id = ? AND key = ?",
                              (bucket_id, key, bucket_id, key)).fetchall()
        finally:
            db.close()
        return sorted(int(name[len("inline:"):]) for (name,) in rows if name.startswith("inline:"))

    def stored_versions(self, peer_id: str, bucket_id: str, key: str) -> int:
        """How many versions of ``bucket_id@key`` one peer stores: files and inline blobs."""
        return len(self.version_files(peer_id, bucket_id, key)) + len(self.inline_versions(peer_id, bucket_id, key))

    def corrupt_versions(self, peer_id: str, bucket_id: str, key: str, offset: int = 0, count: int = 1) -> int:
        """``flip_bytes`` on every stored version of ``bucket_id@key`` on one peer, files and
        inline blobs alike (a blob is rewritten in the peer's index); how many were changed."""
        files = self.version_files(peer_id, bucket_id, key)
        for path in files:
            flip_bytes(path, offset, count)
        blobs = self.inline_versions(peer_id, bucket_id, key)
        db = sqlite3.connect(self.peer(peer_id).data_dir / "index.sqlite3", timeout=10, isolation_level=None)
        try:
            for blob in blobs:
                data = bytearray(db.execute("SELECT data FROM blobs WHERE id = ?", (blob,)).fetchone()[0])
                data[offset:offset + count] = bytes(b ^ 0xFF for b in data[offset:offset + count])
                db.execute("UPDATE blobs SET data = ? WHERE id = ?", (bytes(data), blob))
        finally:
            db.close()
        return len(files) + len(blobs)


def flip_bytes(path: Path, offset: int = 0, count: int = 1) -> None:
    """Invert ``count`` bytes of a file in place (same size: only the checksum can tell)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        data = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in data))


def reserve_port() -> int:
    """A port the OS just handed out and released (start a server on it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class StallingServer:
    """A TCP server that accepts connections and never answers (read timeouts)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    @property
    def uri(self) -> str:
        return f"mictlanx://stall@{HOST}:{self.port}/?protocol=http"

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()

    def __enter__(self) -> StallingServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FailFirst:
    """ASGI middleware for a peer: requests of ``method`` whose path ends with ``suffix`` answer
    503 (their body read) while ``budget[0] > 0``, each taking one from it. One list shared by
    several peers makes one budget for all; a peer that crashed or froze mid-request, as its
    router sees it, without being marked down."""

    def __init__(self, app: Any, method: str, suffix: str, budget: list[int]) -> None:
        self.app, self.method, self.suffix, self.budget = app, method, suffix, budget

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (scope["type"] == "http" and self.budget[0] > 0 and scope["method"] == self.method
                and scope["path"].endswith(self.suffix)):
            self.budget[0] -= 1
            while (await receive()).get("more_body"):
                pass
            await send_error(send, 503, "injected: the peer could not answer")
            return
        await self.app(scope, receive, send)


async def send_error(send: Callable, status: int, msg: str) -> None:
    """Answer an ASGI request with a protocol error body ``{"detail": {"code", "msg"}}``."""
    body = json.dumps({"detail": {"code": status, "msg": msg}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def new_client(uri: str, cache_dir: Path, **kwargs: Any) -> Client:
    """A ``Client`` whose cache lives under the test's ``tmp_path`` (never the user's)."""
    kwargs.setdefault("progress", False)
    return Client(uri, cache_path=str(cache_dir / "cache"), **kwargs)


# --- fixtures (import them into a test module to use them) ------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """2 routers over 3 peers, in-process and counted; shared by one test module."""
    with Cluster(peers=3, routers=2) as instance:
        yield instance


@pytest.fixture()
def client(cluster: Cluster, tmp_path: Path) -> Iterator[Client]:
    with new_client(cluster.uri(), tmp_path) as instance:
        yield instance
