"""What the peer and the router servers share: error bodies (§P2.6), header and query
parsing (§P2.5), raw-path id checks (§P2.2), request logging and the uvicorn bootstrap
that prints ``listening on http://HOST:PORT`` (``https://`` when serving TLS) once bound (§P7).

Imports only the pure protocol modules.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Mapping, Optional
from urllib.parse import unquote

from ..protocol.errors import ValidationError
from ..protocol.ids import is_valid_task_id, validate_id, validate_key, validate_task_id
from ..protocol.inline import INLINE_CAP, INLINE_FIELD, decode_inline
from ..protocol.sizes import clamp, parse_size
from .tls import ServerTLS, TLSSetupError

log = logging.getLogger("mictlanx_sync.server")

MAX_JSON_BODY = 1024 * 1024
KIB = 1024
MIB = 1024 * 1024
#: most a server reads to drain a phase-2 body it rejected at once (Content-Length check);
#: beyond that it answers with ``Connection: close`` instead of reading on (§P3.2)
DRAIN_CAP = 8 * MIB
MULTIPART_SLACK = 64 * KIB
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_IF_MATCH = re.compile(r'"([0-9a-fA-F]{64})"')


class HTTPError(Exception):
    """An error answer ``{"detail": {"code", "msg", ...extra}}`` with an HTTP status."""

    def __init__(self, status: int, code: int, msg: str, headers: Optional[Mapping[str, str]] = None,
                 **extra: Any) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": {"code": self.code, "msg": self.msg, **self.extra}}

    def to_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def declared_length(value: Optional[str]) -> Optional[int]:
    """A ``Content-Length`` header value as an int (None when absent or malformed)."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def length_mismatch(declared: Optional[int], size: int, checksum: str, multipart: bool) -> Optional[HTTPError]:
    """The phase-2 "fail at once" rule (§P3.2) as applied by our servers.

    A body whose ``Content-Length`` exceeds the phase-1 ``size`` (raw: P3, R7) or ``size``
    + 64 KiB of framing (multipart: P2, R6) is answered **400/501** at once: nothing is
    stored or forwarded. The caller drains at most ``min(declared, size + slack,
    DRAIN_CAP)`` bytes and closes the connection if more remain. A *shorter* body is read
    (it is at most ``size``) and verified, so its error reports the received checksum.
    Chunked bodies (no ``Content-Length``) are checked as they arrive.
    """
    if declared is None:
        return None
    if declared > size + (MULTIPART_SLACK if multipart else 0):
        return HTTPError(400, 501, f"Content-Length {declared} does not match the size {size} declared at phase 1",
                         expected_size=size, received_size=declared, expected_checksum=checksum,
                         received_checksum="")
    return None


def inline_write(body: Any, size: int, checksum: str) -> Optional[bytes]:
    """The bytes of a one-request write (``data_base64`` in a P1/R5 body, docs/protocol-extensions.md),
    or None when the body has none. Checked before anything is reserved or stored: not base64
    is 422, above ``INLINE_CAP`` 413, other bytes than ``size``/``checksum`` declare 400/501
    (the integrity error of phase 2)."""
    if not isinstance(body, dict) or INLINE_FIELD not in body:
        return None
    raw = body[INLINE_FIELD]
    if not isinstance(raw, str):
        raise unprocessable(f"{INLINE_FIELD} must be a base64 string", ["body", INLINE_FIELD], "string_type")
    too_large = HTTPError(413, 400, f"inline data above {INLINE_CAP} bytes: use the two-phase write")
    if len(raw) > 4 * -(-INLINE_CAP // 3):  # longer than any encoding of INLINE_CAP bytes: not decoded
        raise too_large
    data = decode_inline(body)
    if data is None:
        raise unprocessable(f"{INLINE_FIELD} is not valid base64", ["body", INLINE_FIELD])
    if len(data) > INLINE_CAP:
        raise too_large
    received = hashlib.sha256(data).hexdigest()
    if len(data) != size or received != checksum:
        raise HTTPError(400, 501, f"integrity check failed: expected {size} bytes with SHA-256 {checksum}, "
                        f"received {len(data)} bytes with SHA-256 {received}", expected_size=size,
                        received_size=len(data), expected_checksum=checksum, received_checksum=received)
    return data


def bad_request(msg: str, **extra: Any) -> HTTPError:
    return HTTPError(400, 400, msg, **extra)


def unprocessable(msg: str, loc: list[Any], kind: str = "value_error") -> HTTPError:
    """422/400 with the ``errors`` list of §P2.6."""
    return HTTPError(422, 400, msg, errors=[{"loc": loc, "msg": msg, "type": kind}])


def not_found(msg: str, **extra: Any) -> HTTPError:
    return HTTPError(404, 404, msg, **extra)


# --- ids -----------------------------------------------------------------------------
def path_id(value: str, field: str, *, key: bool = False) -> str:
    """Validate an id taken from the path or a header (400/400 when invalid)."""
    try:
        return validate_key(value, field) if key else validate_id(value, field)
    except ValidationError as exc:
        raise bad_request(exc.message) from None


def path_task_id(value: str, field: str = "task_id") -> str:
    try:
        return validate_task_id(value, field)
    except ValidationError as exc:
        raise bad_request(exc.message) from None


def raw_path_segments(scope: Mapping[str, Any]) -> list[str]:
    """The request path split on ``/`` **before** percent-decoding, each segment then decoded.

    uvicorn decodes ``%2F`` into ``/`` in ``scope["path"]``; splitting the raw path first
    means an encoded slash stays inside one segment, where id validation rejects it.
    """
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    return [unquote(segment, errors="strict") for segment in text.split("/")]


def check_raw_path(scope: Mapping[str, Any], root_path: str = "") -> Optional[HTTPError]:
    """400/400 if the raw path holds an encoded slash, backslash, NUL or control character."""
    raw = (scope.get("raw_path") or b"").lower()
    if b"%2f" in raw or b"%5c" in raw or b"%00" in raw or b"\\" in raw:
        return bad_request("invalid path: encoded '/', '\\' or NUL in an identifier")
    try:
        segments = raw_path_segments(scope)
    except UnicodeDecodeError:
        return bad_request("invalid path encoding")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for segment in segments for ch in segment):
        return bad_request("invalid path: control character")
    if any(segment in ("..", ".") for segment in segments):
        return bad_request("invalid path: dot segment")
    return None


def header_task_id(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not is_valid_task_id(value):
        raise bad_request(f"invalid Task-Id header: {value!r}")
    return value


# --- header and query values -------------------------------------------------------------
def parse_bool(value: Optional[str], name: str, default: bool = False) -> bool:
    """``0/1/true/false`` (any case) or 400/400."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_request(f"invalid boolean for {name}: {value!r} (use 0, 1, true or false)")


#: Paging values beyond this mean "to the end": SQLite integers are 64-bit, and a larger
#: offset or limit could only select nothing or everything anyway.
MAX_QUERY_INT = 2**62
_INT = re.compile(r"[+-]?[0-9]{1,40}")


def parse_int_query(value: Optional[str], name: str, default: int, *, minimum: Optional[int] = None) -> int:
    """A decimal integer query value (400/400 when malformed), clamped to +-2**62."""
    if value is None or value == "":
        return default
    if _INT.fullmatch(value.strip()) is None:
        raise bad_request(f"invalid integer for {name}: {value[:64]!r}")
    number = max(-MAX_QUERY_INT, min(MAX_QUERY_INT, int(value.strip(), 10)))
    if minimum is not None and number < minimum:
        raise bad_request(f"{name} must be >= {minimum}")
    return number


def parse_chunk_size(value: Optional[str], default: int = MIB) -> int:
    """The ``Chunk-Size`` header as a relay piece size, clamped to [4 KiB, 8 MiB]."""
    if value is None:
        return default
    try:
        size = parse_size(value)
    except ValidationError:
        raise bad_request(f"invalid Chunk-Size: {value!r}") from None
    return clamp(size, 4 * KIB, 8 * MIB)


def parse_if_match(value: Optional[str]) -> Optional[str]:
    """One quoted checksum, returned lowercase; anything else is 400/400."""
    if value is None:
        return None
    match = _IF_MATCH.fullmatch(value.strip())
    if match is None:
        raise bad_request(f'invalid If-Match: {value!r} (expected "<64 hex>")')
    return match.group(1).lower()


def parse_range(value: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """The inclusive ``(first, last)`` byte range, or ``None`` to send the whole body.

    Multi-range or malformed headers are ignored (``None``); unsatisfiable ranges raise
    416 with ``Content-Range: bytes */size`` (§P2.5).
    """
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None or (match.group(1) == "" and match.group(2) == ""):
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> HTTPError:
    return HTTPError(416, 400, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})


async def read_json_body(receive_body: Callable[[], Awaitable[bytes]]) -> Any:
    """Parse a JSON body of at most 1 MiB: 413/400 when larger, 422/400 when not JSON."""
    body = await receive_body()
    if len(body) > MAX_JSON_BODY:
        raise HTTPError(413, 400, "JSON body too large (limit 1 MiB)")
    try:
        return json.loads(body)
    except ValueError:
        raise unprocessable("body is not valid JSON", ["body"], "json_invalid") from None


# --- process set-up and the uvicorn bootstrap -----------------------------------------------
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
    import uvicorn

    from .guarded_protocol import GuardedHttpToolsProtocol
    from .limits import HttpLimits

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
    import uvicorn

    if config.ssl_certfile is None:
        return uvicorn.Server(config)
    from .tls_accept import TLSServer

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
    try:
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


# --- request logging --------------------------------------------------------------------------
class AccessLogMiddleware:
    """One INFO line per request: method, path, status, duration (§P7)."""

    def __init__(self, app: Any, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.logger.info("%s %s %s %.1fms", scope["method"], scope["path"], status[0], elapsed_ms)


def configure_logging(level: str) -> None:
    """stderr logging for a server process (never called on import)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
