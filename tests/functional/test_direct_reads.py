"""Issue 13's router bypass (docs/protocol-extensions.md §3): large chunks read from the peer.

The router answers an R11 with ``Mictlanx-Direct: 1`` with a 307 to the peer holding the
version; the client reads the bytes there, verified as always, and falls back to the proxied
R11 when the peer cannot be reached. A token-protected peer admits the router's read grant
(one path, one version, a minute) instead of the token, which the client never has.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mictlanx_sync import Client
from mictlanx_sync.protocol.direct import DIRECT_HEADER, GRANT_PARAM, VERSION_PARAM
from mictlanx_sync.server.grants import grant_query
from mictlanx_sync.server.local import LocalVSS

from ..support.servers import ServerProcess, start_peer, start_router
from .client_support import P5_GET_DATA, Cluster, new_client, reserve_port

pytestmark = pytest.mark.timeout(120)
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(peers=2, routers=1) as instance:
        yield instance


def _r11(cluster: Cluster) -> list[int]:
    """Statuses of the router's R11 answers in the log."""
    return [s.status for s in cluster.log.select(server="mictlanx-router", method="GET", path=P5_GET_DATA)]


def _p5(cluster: Cluster) -> int:
    return cluster.log.count(server="mictlanx-peer", method="GET", path=P5_GET_DATA)


def test_large_chunks_are_read_straight_from_the_peer(cluster: Cluster, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        assert client.put("direct", "big", data, chunk_size=MIB).unwrap()
        cluster.log.clear()
        assert client.get("direct", "big").unwrap().data.tobytes() == data
        assert _r11(cluster) == [307] * 4  # the router named the peer for every chunk, streamed none
        assert _p5(cluster) == 4  # the client's own reads; the router only looked up (P4)
        cluster.log.clear()
        out = client.get_to_file("direct", "big", str(tmp_path / "out"), fullname="big.bin").unwrap()
        assert Path(out).read_bytes() == data and _r11(cluster) == [307] * 4
        cluster.log.clear()
        chunks = b"".join(v.tobytes() for _, v in client.get_chunks("direct", "big", order=True))
        assert chunks == data and _r11(cluster) == [307] * 4


def test_small_chunks_upstream_clients_and_direct_reads_off_stay_proxied(cluster: Cluster, tmp_path: Path) -> None:
    small = os.urandom(4 * 200_000)
    big = os.urandom(2 * MIB)
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        assert client.put("direct", "small-chunks", small, chunk_size=200_000).unwrap()
        assert client.put("direct", "big2", big, chunk_size=MIB).unwrap()
        cluster.log.clear()
        assert client.get("direct", "small-chunks").unwrap().data.tobytes() == small
        assert _r11(cluster) == [200] * 4  # below DIRECT_READ_MIN a redirect costs more than it saves
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", direct_reads=False) as client:
        cluster.log.clear()
        assert client.get("direct", "big2").unwrap().data.tobytes() == big
        assert _r11(cluster) == [200] * 2
    # An upstream client never sends the header: it gets the bytes from the router.
    resp = requests.get(f"{cluster.routers[0].url}/api/v4/buckets/direct/big2_0", timeout=10)
    assert resp.status_code == 200 and resp.content == big[:MIB]
    # Asked for, but an attachment, a range or another content type: streamed as before.
    for extra in ({"params": {"attachment": "1"}}, {"headers": {"Range": "bytes=0-9"}}):
        headers = {DIRECT_HEADER: "1", **extra.get("headers", {})}
        resp = requests.get(f"{cluster.routers[0].url}/api/v4/buckets/direct/big2_0", headers=headers,
                            params=extra.get("params"), allow_redirects=False, timeout=10)
        assert resp.status_code in (200, 206), extra


class _AdvertiseElsewhere:
    """ASGI middleware: the peer advertises a URL nothing listens on (a peer behind NAT)."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != "/health":
            await self.app(scope, receive, send)
            return
        started: dict = {}

        async def rewrite(message: dict) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                return
            body = json.loads(message["body"])
            body["advertise_url"] = self.url
            raw = json.dumps(body).encode()
            headers = [(k, v) for k, v in started["headers"] if k != b"content-length"]
            await send({**started, "headers": [*headers, (b"content-length", str(len(raw)).encode())]})
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, rewrite)


def test_a_peer_the_client_cannot_reach_is_read_through_the_router(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{reserve_port()}"
    cluster = Cluster(peers=1, routers=1)
    cluster.peer_wrap = lambda app: _AdvertiseElsewhere(app, nowhere)
    data = os.urandom(2 * MIB + 1)
    with cluster, new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        resp = requests.get(f"{cluster.routers[0].url}/api/v4/peers", timeout=10)
        assert resp.status_code == 200
        assert client.put("direct", "natted", data, chunk_size=MIB).unwrap()
        cluster.log.clear()
        started = time.monotonic()
        assert client.get("direct", "natted").unwrap().data.tobytes() == data
        assert time.monotonic() - started < 10
        statuses = _r11(cluster)
        assert statuses.count(200) == 3  # every chunk fell back to the proxied read
        # Once refused, the address is not tried again for a while: the next read asks the
        # router for the redirect, sees the address it could not reach, and reads proxied.
        assert client.routers[0].unreachable_peers.__contains__(urlsplit(nowhere).netloc)
        assert client.get("direct", "natted").unwrap().data.tobytes() == data


def test_token_protected_peers_admit_the_routers_grant_only(tmp_path: Path) -> None:
    with LocalVSS(peers=2, token="s3cret-token", data_dir=tmp_path / "vss") as vss:
        data = os.urandom(2 * MIB)
        with Client(vss.uri, capacity_storage="0", progress=False, cache_path=str(tmp_path / "c")) as client:
            assert client.put("granted", "obj", data, chunk_size=MIB).unwrap()
            assert client.get("granted", "obj").unwrap().data.tobytes() == data
            version = client.routers[0].get_metadata("granted", "obj_0").unwrap().version
        router = vss.router_urls[0]
        auth = {"Authorization": "Bearer s3cret-token"}
        redirect = requests.get(f"{router}/api/v4/buckets/granted/obj_0", headers={**auth, DIRECT_HEADER: "1"},
                                allow_redirects=False, timeout=10)
        assert redirect.status_code == 307
        location = redirect.headers["Location"]
        query = parse_qs(urlsplit(location).query)
        assert query[VERSION_PARAM] == [version] and len(query[GRANT_PARAM][0]) == 64
        # The grant opens exactly that read, without the token...
        assert requests.get(location, timeout=10).content == data[:MIB]
        peer = location.split("/api/v4/")[0]
        # ...and nothing else: another key, a tampered grant, a write, or no grant at all.
        other = location.replace("/obj_0?", "/obj_1?")
        tampered = location[:-1] + ("0" if location[-1] != "0" else "1")
        assert requests.get(other, timeout=10).status_code == 401
        assert requests.get(tampered, timeout=10).status_code == 401
        assert requests.delete(location, timeout=10).status_code == 401
        assert requests.get(f"{peer}/api/v4/buckets/granted/obj_0", timeout=10).status_code == 401
        # An expired grant, correctly signed, is refused.
        stale = grant_query("s3cret-token", "/api/v4/buckets/granted/obj_0", version, now=time.time() - 3600)
        assert requests.get(f"{peer}/api/v4/buckets/granted/obj_0?{stale}", timeout=10).status_code == 401
        # The grant pins the version: a request naming another one still gets the granted one.
        pinned = requests.get(location, headers={"Mictlanx-Version": "0000000000000001-other"}, timeout=10)
        assert pinned.status_code == 200 and pinned.headers["Mictlanx-Version"] == version


class _FreezingRelays:
    """TCP relays that peers advertise as their address: the first connection a client makes to
    any of them SIGSTOPs that relay's peer before a byte is forwarded.

    The router probes the peer (pinned P4, to its own address) before it answers the 307, so
    the peer freezes exactly between the router's probe and the client's read.
    """

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.frozen: list[int] = []  # pids stopped, to resume in a finally
        self.listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        self.sockets: list[socket.socket] = list(self.listeners)  # every socket, closed at the end
        self.threads: list[threading.Thread] = []
        self.targets: list[tuple[int, int]] = []  # (peer pid, peer port) per relay

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.listeners[index].getsockname()[1]}"

    def start(self, targets: list[tuple[int, int]]) -> None:
        self.targets = targets
        for index, listener in enumerate(self.listeners):
            self._thread(self._accept, index, listener)

    def _thread(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self, index: int, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed at the end of the test
            pid, port = self.targets[index]
            with self.lock:
                self.sockets.append(client)
                if not self.frozen:
                    os.kill(pid, signal.SIGSTOP)
                    self.frozen.append(pid)
                upstream = socket.create_connection(("127.0.0.1", port))
                self.sockets.append(upstream)
            self._thread(self._pipe, client, upstream)
            self._thread(self._pipe, upstream, client)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while piece := source.recv(65536):
                sink.sendall(piece)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def resume_and_close(self) -> None:
        with self.lock:
            for pid in self.frozen:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept or recv
                except OSError:
                    pass
        for thread in self.threads:
            thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_a_peer_frozen_after_the_routers_probe_costs_seconds_not_the_read_timeout(tmp_path: Path) -> None:
    """Issue 13: the direct hop waits ``direct_timeout`` for the peer's first byte (not the
    120 s read timeout), then reads through the router, which fails over to the other copy."""
    relays = _FreezingRelays(2)
    peers: list[ServerProcess] = []
    router = None
    try:
        for index in range(2):
            peers.append(start_peer(tmp_path / f"p{index}", f"p{index}", "--advertise-url", relays.url(index)))
        relays.start([(peer.pid, int(peer.port or 0)) for peer in peers])
        router = start_router(tmp_path / "r", [(f"p{i}", peer.url) for i, peer in enumerate(peers)],
                              "--health-interval", "0.3")
        deadline = time.monotonic() + 15
        while requests.get(f"{router.url}/health", timeout=5).json()["available_peers"] != 2:
            assert time.monotonic() < deadline, "the router never saw both peers"
            time.sleep(0.1)
        data = os.urandom(2 * MIB)
        with Client(f"mictlanx://r0@127.0.0.1:{router.port}/?protocol=http", capacity_storage="0", progress=False,
                    cache_path=str(tmp_path / "cache"), timeout=(5.0, 120.0), direct_timeout=2.0) as client:
            assert client.put("frozen", "obj", data, chunk_size=MIB, rf=2).unwrap()
            started = time.monotonic()
            got = client.get("frozen", "obj").unwrap().data.tobytes()
            elapsed = time.monotonic() - started
        assert relays.frozen, "no direct read reached a peer: nothing was frozen"
        assert got == data
        # 2 s for the direct hop, then the proxied read (the router's own first-byte deadline
        # to the frozen peer is 2 s): far below the 120 s read timeout it used to wait.
        assert elapsed < 30, elapsed
    finally:
        relays.resume_and_close()
        for server in (router, *peers):
            if server is not None:
                server.stop()
