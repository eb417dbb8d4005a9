"""Running an ASGI app with uvicorn: process set-up, binding, the foreground server that prints
``listening on http://HOST:PORT`` (``https://`` with TLS) once bound (protocol §7), and the
threaded server of ``LocalVSS``. Needs the server extra (uvicorn): the command-line entry
points import it when they run, never to build their ``--help``."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import socket
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Optional

import uvicorn

from .guarded_protocol import GuardedHttpToolsProtocol
from .limits import HttpLimits
from .tls import ServerTLS, TLSSetupError
from .tls_accept import TLSServer
from .units import KIB, MIB


def tune_malloc() -> None:
    """Keep large transfer buffers off glibc's mmap/trim path (see benchmarks/README).

    Equivalent to ``MALLOC_MMAP_THRESHOLD_=134217728 MALLOC_TRIM_THRESHOLD_=1073741824``:
    without it every large piece is mmapped and page-faulted afresh.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 128 * MIB)
        libc.mallopt(m_trim_threshold, 1024 * MIB)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind (no listen yet) so the real port is known with ``port=0``; raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; without it every small answer waits ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def display_url(host: str, port: int, scheme: str = "http") -> str:
    """``scheme://host:port`` with an IPv6 host in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def uvicorn_config(app: Any, log_level: str = "warning", root_path: str = "", limits: Any = None,
                   tls: Optional[ServerTLS] = None) -> Any:
    """uvicorn settings shared by both servers; ``limits`` is an :class:`~.limits.HttpLimits`
    (default: from the ``MICTLANX_*`` environment), enforced by the guarded protocol;
    ``tls`` (a :class:`~.tls.ServerTLS`) makes the server speak HTTPS only."""
    config = uvicorn.Config(
        app, loop="uvloop", http=GuardedHttpToolsProtocol, lifespan="on", log_level=log_level.lower(),
        access_log=False, timeout_graceful_shutdown=5, root_path=root_path, server_header=False,
        date_header=False, h11_max_incomplete_event_size=64 * KIB,
        ssl_certfile=tls.certfile if tls is not None else None, ssl_keyfile=tls.keyfile if tls is not None else None,
    )
    config.mictlanx_limits = limits if limits is not None else HttpLimits.from_env()  # type: ignore[attr-defined]
    return config


def make_server(config: Any) -> Any:
    """The ``uvicorn.Server`` of ``config``: with a certificate, a :class:`~.tls_accept.TLSServer`,
    whose handshakes are bounded by ``--ssl-handshake-timeout`` and count against
    ``--max-connections``."""
    if config.ssl_certfile is None:
        return uvicorn.Server(config)
    return TLSServer(config)


def serve_forever(app: Any, host: str, port: int, *, log_level: str = "warning", limits: Any = None,
                  tls: Optional[ServerTLS] = None) -> int:
    """Run ``app`` in the foreground until SIGTERM/SIGINT; prints the ``listening on`` line.
    ``limits``: the connection limits (:class:`~.limits.HttpLimits`; default from the environment);
    ``tls``: serve HTTPS with this certificate and key (default: plain HTTP)."""
    if tls is not None:
        try:
            tls.check()
        except TLSSetupError as exc:
            print(f"mictlanx-sync: {exc}", file=sys.stderr)
            return 1
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        print(f"mictlanx-sync: cannot bind {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound_port = sock.getsockname()[1]
    server = make_server(uvicorn_config(app, log_level, limits=limits, tls=tls))

    async def _main() -> None:
        sock.listen(2048)
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        if server.should_exit:
            raise SystemExit(1)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Our own handlers: uvicorn's capture_signals re-raises SIGTERM after shutdown,
            # which would turn a clean stop into exit status -15.
            loop.add_signal_handler(signum, _request_exit, server)
        print(f"listening on {display_url(host, bound_port, 'https' if tls is not None else 'http')}", flush=True)
        await server.main_loop()
        await server.shutdown(sockets=[sock])

    _run_uvloop(_main)
    return 0


def _request_exit(server: Any) -> None:
    if server.should_exit:
        server.force_exit = True
    server.should_exit = True


def _run_uvloop(main: Callable[[], Awaitable[None]]) -> None:
    try:  # optional: uvicorn[standard] brings it, plain uvicorn does not
        import uvloop
    except ImportError:
        asyncio.run(main())  # type: ignore[arg-type]
        return
    uvloop.run(main())  # type: ignore[arg-type]


class ThreadedServer:
    """A uvicorn server in a daemon thread on an already bound port (``LocalVSS`` thread mode);
    ``tls`` makes it serve HTTPS."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 tls: Optional[ServerTLS] = None) -> None:

        self.host = host
        self.scheme = "https" if tls is not None else "http"
        self.sock = bind_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn_config(app, log_level, tls=tls)
        config.loop = "asyncio"  # uvloop's policy is process-wide; threads get their own loops
        self.server = make_server(config)
        self.thread = threading.Thread(target=self._run, name=f"mictlanx-server-{self.port}", daemon=True)
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        return display_url(self.host, self.port, self.scheme)

    def _run(self) -> None:
        try:
            self.sock.listen(2048)
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._error is not None or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start in {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        try:
            self.sock.close()
        except OSError:
            pass


def configure_logging(level: str) -> None:
    """stderr logging for a server process (never called on import)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
