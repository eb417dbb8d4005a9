"""``LocalVSS``: a local Virtual Storage Space, one or more routers over N peers (client-api §9).

>>> with LocalVSS(peers=2) as vss:          # doctest: +SKIP
...     client = Client(vss.uri)

``mode="thread"`` runs every server with uvicorn in a daemon thread of this process;
``mode="process"`` runs ``python -m mictlanx_sync peer|router --port 0 ...`` subprocesses
and reads the port from their ``listening on http://HOST:PORT`` line. Every server binds
port 0, so several instances can run at once.

``tls=True`` makes a self-signed certificate at start (``openssl``; docs/tls.md) and every
server speaks HTTPS with it; the routers verify the peers with it, and clients pass
``verify=vss.ca_file``:

>>> with LocalVSS(tls=True) as vss:         # doctest: +SKIP
...     client = Client(vss.uri, verify=vss.ca_file)
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..protocol.errors import ConnectFailedError
from ..protocol.peer import Peer
from ..protocol.router import Router
from ..protocol.uri import Endpoint, build
from .peer.config import PeerConfig
from .router.config import RouterConfig
from .router.peers import PeerEntry
from .tls import ServerTLS, make_self_signed

try:  # the server stack needs the server extra; without it, start() says what to install
    from .peer.app import create_app as create_peer_app
    from .router.app import create_app as create_router_app
    from .serving import ThreadedServer
    _MISSING_EXTRA: Optional[ModuleNotFoundError] = None
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.split(".")[0] == "mictlanx_sync":
        raise
    _MISSING_EXTRA = exc

__all__ = ["LocalVSS"]

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0
ROUTER_PREFIX = "mictlanx-router-"
PEER_PREFIX = "mictlanx-peer-"
_EXTRA_HINT = "LocalVSS needs the server extra: pip install 'mictlanx-sync[server]'"


def _require_server_extra() -> None:
    try:  # checked at each start: a process may lose them after this module was imported
        import httpx  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{_EXTRA_HINT} ({exc})") from exc
    if _MISSING_EXTRA is not None:
        raise ImportError(f"{_EXTRA_HINT} ({_MISSING_EXTRA})") from _MISSING_EXTRA


class _Server:
    """One peer or router, in a thread or a subprocess; restartable on the same port."""

    def __init__(self, kind: str, server_id: str, host: str, mode: str, data_dir: Path, log_level: str,
                 options: dict[str, Any]) -> None:
        self.kind = kind
        self.server_id = server_id
        self.host = host
        self.mode = mode
        self.data_dir = data_dir
        self.log_level = log_level
        self.options = options
        self.port = 0
        self._thread: Any = None
        self._proc: Optional[subprocess.Popen[str]] = None

    @property
    def running(self) -> bool:
        if self.mode == "thread":
            return self._thread is not None
        return self._proc is not None and self._proc.poll() is None

    @property
    def tls(self) -> Optional[ServerTLS]:
        """The certificate this server serves HTTPS with (None: plain HTTP)."""
        tls: Optional[ServerTLS] = self.options.get("tls")
        return tls

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{shown}:{self.port}"

    def start(self) -> None:
        if self.running:
            return
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()

    def _start_thread(self) -> None:
        app = self._build_app()
        try:
            server = ThreadedServer(app, self.host, self.port, log_level=self.log_level.lower(), tls=self.tls)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind {self.host}:{self.port} for {self.server_id}: "
                                     f"{exc.strerror or exc}") from None
        server.start(timeout=START_TIMEOUT)
        self.port = server.port
        self._thread = server

    def _build_app(self) -> Any:
        if self.kind == "peer":
            return create_peer_app(PeerConfig(
                peer_id=self.server_id, host=self.host, port=self.port, data_dir=self.data_dir,
                fsync=self.options.get("fsync", False), task_ttl=self.options.get("task_ttl", 600.0),
                log_level=self.log_level.lower(), token=self.options.get("token"), faults=self.options.get("faults"),
                ssl_certfile=self.tls.certfile if self.tls else None,
                ssl_keyfile=self.tls.keyfile if self.tls else None))
        peers = [PeerEntry(pid, host, port, self.scheme) for pid, host, port in self.options["peers"]]
        return create_router_app(RouterConfig(
            router_id=self.server_id, data_dir=self.data_dir, peers=peers,
            health_interval=self.options["health_interval"], task_ttl=self.options.get("task_ttl", 600.0),
            token=self.options.get("token"), peer_token=self.options.get("token"),
            faults=self.options.get("faults"), peer_ca_file=self.tls.certfile if self.tls else None))

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "mictlanx_sync", self.kind, "--host", self.host, "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--task-ttl", str(self.options.get("task_ttl", 600.0))]
        if self.tls is not None:
            cmd += ["--ssl-certfile", self.tls.certfile]
            if self.tls.keyfile is not None:
                cmd += ["--ssl-keyfile", self.tls.keyfile]
        if self.kind == "peer":
            cmd += ["--peer-id", self.server_id]
            if not self.options.get("fsync", False):
                cmd.append("--no-fsync")
        else:
            peers = [Endpoint(pid, host, port, protocol=self.scheme) for pid, host, port in self.options["peers"]]
            cmd += ["--router-id", self.server_id, "--health-interval", str(self.options["health_interval"]),
                    "--log-level", self.log_level]
            if peers:
                cmd += ["--peers", build(peers)]
            if self.tls is not None:
                cmd += ["--peer-ca-file", self.tls.certfile]
        return cmd

    def _start_process(self) -> None:
        env = dict(os.environ)
        for name in ("MICTLANX_PEER_TOKEN", "MICTLANX_ROUTER_TOKEN", "MICTLANX_FAULTS", "MICTLANX_PEER_SSL_CERTFILE",
                     "MICTLANX_PEER_SSL_KEYFILE", "MICTLANX_ROUTER_SSL_CERTFILE", "MICTLANX_ROUTER_SSL_KEYFILE",
                     "MICTLANX_ROUTER_PEER_CA_FILE"):
            env.pop(name, None)
        token = self.options.get("token")
        if token:  # through the environment: never on a command line other users can read
            env["MICTLANX_PEER_TOKEN"] = token
            env["MICTLANX_ROUTER_TOKEN"] = token
        if self.options.get("faults") is not None:
            env["MICTLANX_FAULTS"] = self.options["faults"]
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env, start_new_session=True)
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        try:
            line = proc.stdout.readline() if selector.select(START_TIMEOUT) else ""
        finally:
            selector.close()
        if not line.startswith("listening on "):
            _kill(proc)
            raise ConnectFailedError(f"{self.kind} {self.server_id} did not start (got {line.strip()!r})")
        self.port = int(line.strip().rsplit(":", 1)[1])
        self._proc = proc

    def signal_stop(self) -> None:
        """Ask a threaded server to exit without waiting (``stop()`` then joins it)."""
        if self.mode == "thread" and self._thread is not None:
            self._thread.server.should_exit = True

    def stop(self) -> None:
        if self.mode == "thread":
            server, self._thread = self._thread, None
            if server is not None:
                server.stop()
            return
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _kill(proc)
        _close_pipes(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()


def _get_json(url: str, timeout: float = 2.0, context: Optional[ssl.SSLContext] = None) -> Any:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 (loopback URL we built)
        return json.loads(response.read())


class LocalVSS:
    """Routers and peers on loopback for tests, notebooks and examples (client-api §9)."""

    def __init__(self, peers: int = 2, routers: int = 1, data_dir: Union[str, Path, None] = None,
                 host: str = "127.0.0.1", mode: str = "thread", health_interval: float = 0.5,
                 task_ttl: float = 600, log_level: str = "WARNING", *, fsync: bool = False,
                 peer_ports: Sequence[int] = (), router_ports: Sequence[int] = (), token: Optional[str] = None,
                 faults: Optional[str] = None, tls: bool = False) -> None:
        """See the class docstring; ``token`` protects every server (and goes into ``uri``),
        ``faults`` enables fault injection on every server (``server.faults``; ``"[]"``
        enables only the ``/_faults`` admin route); ``tls`` serves every server over HTTPS with a
        self-signed certificate made at start (``ca_file``; ``uri`` says ``protocol=https``)."""
        if peers < 0 or routers < 1:
            raise ValueError("LocalVSS needs peers >= 0 and routers >= 1")
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
        self.n_peers = peers
        self.n_routers = routers
        self.host = host
        self.mode = mode
        self.health_interval = health_interval
        self.task_ttl = task_ttl
        self.log_level = log_level
        self.fsync = fsync
        self.peer_ports = list(peer_ports)
        self.router_ports = list(router_ports)
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty str")
        self.token = token
        self.faults = faults
        self.tls = bool(tls)
        #: the self-signed certificate (PEM) clients must trust with ``tls=True``, set by ``start()``
        self.ca_file: Optional[str] = None
        self._server_tls: Optional[ServerTLS] = None
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Optional[Path] = self._given_dir
        self._peers: list[_Server] = []
        self._routers: list[_Server] = []
        self._objects: dict[tuple[str, str, int], Any] = {}
        self._started = False
        self._lock = threading.RLock()

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> LocalVSS:
        with self._lock:
            if self._started:
                return self
            _require_server_extra()
            if self._given_dir is None:
                self.data_dir = Path(tempfile.mkdtemp(prefix="mictlanx-vss-"))
            else:
                self._given_dir.mkdir(parents=True, exist_ok=True)
                self.data_dir = self._given_dir
            self._started = True
            try:
                if self.tls:
                    self._server_tls = make_self_signed(self.data_dir / "tls", ("127.0.0.1", "localhost", self.host))
                    self.ca_file = self._server_tls.certfile
                for index in range(self.n_peers):
                    peer = self._new_peer(f"{PEER_PREFIX}{index}")
                    if index < len(self.peer_ports):
                        peer.port = self.peer_ports[index]
                    peer.start()
                for index in range(self.n_routers):
                    router_id = f"{ROUTER_PREFIX}{index}"
                    router = _Server("router", router_id, self.host, self.mode, self.data_dir / router_id,
                                     self.log_level, {"peers": self._peer_specs(),
                                                      "health_interval": self.health_interval,
                                                      "task_ttl": float(self.task_ttl), "token": self.token,
                                                      "faults": self.faults, "tls": self._server_tls})
                    if index < len(self.router_ports):
                        router.port = self.router_ports[index]
                    self._routers.append(router)
                    router.start()
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
            return self

    def _new_peer(self, peer_id: str) -> _Server:
        assert self.data_dir is not None
        server = _Server("peer", peer_id, self.host, self.mode, self.data_dir / peer_id, self.log_level,
                         {"fsync": self.fsync, "task_ttl": float(self.task_ttl), "token": self.token,
                          "faults": self.faults, "tls": self._server_tls})
        self._peers.append(server)
        return server

    def _peer_specs(self) -> list[tuple[str, str, int]]:
        return [(p.server_id, self.host, p.port) for p in self._peers]

    @property
    def scheme(self) -> str:
        """``https`` with ``tls=True``, else ``http``."""
        return "https" if self.tls else "http"

    def _client_ssl_context(self) -> Optional[ssl.SSLContext]:
        """What this object's own requests (readiness, R15) verify the servers with."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file is not None else None

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Wait until every router reports every running peer available (R24), else ``ConnectFailedError``."""
        timeout = START_TIMEOUT if timeout is None else timeout
        expected = sum(1 for p in self._peers if p.running)
        deadline = time.monotonic() + timeout
        last: Any = None
        context = self._client_ssl_context()
        while True:
            try:
                counts = [_get_json(f"{r.url}/health", context=context)["available_peers"] for r in self._routers]
                if all(c == expected for c in counts):
                    return
                last = counts
            except (OSError, ValueError, KeyError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise ConnectFailedError(f"LocalVSS not ready after {timeout}s (routers report {last!r}, "
                                         f"expected {expected} available peers)")
            time.sleep(0.05)

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
            for obj in self._objects.values():
                try:
                    obj.close()
                except Exception:  # best effort
                    pass
            self._objects = {}
            for server in [*self._routers, *self._peers]:
                server.signal_stop()  # all at once: each uvicorn loop notices within 0.1 s
            for server in [*self._routers, *self._peers]:
                try:
                    server.stop()
                except Exception:  # keep stopping the others
                    log.exception("stopping %s failed", server.server_id)
            self._routers, self._peers = [], []
            self._server_tls = self.ca_file = None
            if self._given_dir is None and self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.data_dir = None

    def __enter__(self) -> LocalVSS:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- failure injection and growth -------------------------------------------------------
    def _peer(self, peer_id: str) -> _Server:
        for server in self._peers:
            if server.server_id == peer_id:
                return server
        raise KeyError(f"unknown peer: {peer_id}")

    def stop_peer(self, peer_id: str) -> None:
        """Stop one peer (its data and port are kept for ``start_peer``)."""
        self._peer(peer_id).stop()

    def start_peer(self, peer_id: str) -> None:
        """Restart a stopped peer on the same port with the same data."""
        self._peer(peer_id).start()

    def add_peer(self) -> Any:
        """Start one more peer and register it with every router (R15); returns its ``Peer``."""
        with self._lock:
            if not self._started:
                raise RuntimeError("LocalVSS is not started")
            server = self._new_peer(f"{PEER_PREFIX}{len(self._peers)}")
            server.start()
            body = json.dumps([{"peer_id": server.server_id, "hostname": self.host, "port": server.port,
                                "protocol": self.scheme}]).encode()
            context = self._client_ssl_context()
            for router in self._routers:
                headers = {"Content-Type": "application/json"}
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                request = urllib.request.Request(f"{router.url}/api/v4/xpeers", data=body, method="POST",
                                                 headers=headers)
                with urllib.request.urlopen(request, timeout=10, context=context):  # noqa: S310
                    pass
            return self._endpoint_object("peer", server)

    # --- attributes -----------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return build([Endpoint(r.server_id, self.host, r.port, protocol=self.scheme, token=self.token)
                      for r in self._routers])

    @property
    def router_urls(self) -> list[str]:
        return [r.url for r in self._routers]

    @property
    def peer_urls(self) -> dict[str, str]:
        return {p.server_id: p.url for p in self._peers}

    @property
    def routers(self) -> list[Any]:
        return [self._endpoint_object("router", r) for r in self._routers]

    @property
    def peers(self) -> list[Any]:
        return [self._endpoint_object("peer", p) for p in self._peers]

    def _endpoint_object(self, kind: str, server: _Server) -> Any:
        """The ``Peer``/``Router`` client object of ``server`` (one per server and port)."""
        cls: Any = Peer if kind == "peer" else Router
        cache_key = (kind, server.server_id, server.port)
        obj = self._objects.get(cache_key)
        if obj is None:
            obj = self._objects[cache_key] = cls(server.server_id, self.host, server.port, self.scheme,
                                                 token=self.token, verify=self.ca_file or True)
        return obj

    def __repr__(self) -> str:
        state = "started" if self._started else "stopped"
        count = len(self._peers) or self.n_peers
        tls = ", tls=True" if self.tls else ""
        return f"LocalVSS(peers={count}, routers={self.n_routers}, mode={self.mode!r}{tls}, {state})"
