"""The HTTP transport of ``Peer`` and ``Router``: every ``requests`` call goes through here.

One :class:`Transport` per base URL owns one pooled ``requests.Session``:

- cookies off (a policy that rejects every cookie), ``trust_env=False`` (environment
  proxies and netrc ignored), adapter retries 0 (the only retry layer is the caller's);
- the pool never blocks forever: ``pool_block=True`` with a finite pool timeout (the
  connect timeout), so an exhausted pool becomes ``RequestTimeoutError``;
- finite ``(connect, read)`` timeouts on every request; ``verify`` on every request;
- uploads streamed in 1 MiB pieces (bytes-like, iterables of bytes, binary files, and
  multipart bodies framed by :func:`multipart_body`); downloads with ``stream=True``;
- safe to share between threads; after ``fork`` the child builds its own session.

Every call returns ``Result``: ``requests``/``urllib3`` exceptions are translated by
``errors.error_from_exception`` and non-2xx answers by ``errors.error_from_response``,
both in :meth:`Transport.request`.
"""

from __future__ import annotations

import http.cookiejar
import io
import json
import logging
import os
import secrets
import ssl
import threading
import time
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import (
    MictlanXError,
    ResponseFormatError,
    ValidationError,
    error_from_exception,
    error_from_response,
)
from .models import parse_as
from .result import Err, Ok, Result
from .uri import base_url as _base_url

__all__ = [
    "PIECE_SIZE", "DEFAULT_CONNECT_TIMEOUT", "Transport", "TimeoutArg", "Body", "resolve_timeout",
    "iter_pieces", "check_body", "body_length", "SizedBody", "stream_body", "multipart_body", "ssl_verify",
    "BoundedPoolAdapter",
    "copy_headers", "validated", "parse_body", "ServiceClient", "make_error",
    "ok_value", "format_error",
]

log = logging.getLogger(__name__)

PIECE_SIZE = 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 5.0
TimeoutArg = Union[float, int, Tuple[float, float], None]
Body = Union[bytes, bytearray, memoryview, Iterable[Union[bytes, bytearray, memoryview]], BinaryIO]


# --- timeouts --------------------------------------------------------------------------
def resolve_timeout(timeout: TimeoutArg, default: Tuple[float, float]) -> Tuple[float, float]:
    """``(connect, read)``: a number is the read timeout, connect comes from ``default``."""
    if timeout is None:
        return default
    if isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number or a (connect, read) pair, not {timeout!r}")
    if isinstance(timeout, (int, float)):
        if timeout <= 0:
            raise ValidationError(f"timeout must be > 0, got {timeout!r}")
        return (default[0], float(timeout))
    if isinstance(timeout, (tuple, list)) and len(timeout) == 2:
        connect, read = (float(t) for t in timeout)
        if connect <= 0 or read <= 0:
            raise ValidationError(f"timeouts must be > 0, got {timeout!r}")
        return (connect, read)
    raise TypeError(f"timeout must be a number or a (connect, read) pair, not {timeout!r}")


# --- upload bodies ---------------------------------------------------------------------
def _is_file(obj: Any) -> bool:
    return hasattr(obj, "read") and callable(obj.read)


def iter_pieces(body: Body, piece_size: int = PIECE_SIZE) -> Iterator[Union[bytes, memoryview]]:
    """The body as pieces of at most ``piece_size`` bytes, without copying bytes-like data.

    Bytes-like objects are sliced as ``memoryview``; a binary file is read ``piece_size``
    bytes at a time (requests' default 16 KiB block halves throughput); each item of an
    iterable is re-sliced when it is larger than a piece. Empty pieces are skipped.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body).cast("B")
        for start in range(0, view.nbytes, piece_size):
            yield view[start:start + piece_size]
        return
    if isinstance(body, str):
        raise TypeError("upload bodies must be bytes, not str")
    if _is_file(body):
        reader: Any = body
        while True:
            piece = reader.read(piece_size)
            if not piece:
                return
            if isinstance(piece, str):
                raise TypeError("file bodies must be opened in binary mode")
            yield piece
    for item in body:
        if isinstance(item, str):
            raise TypeError("upload pieces must be bytes, not str")
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(f"upload pieces must be bytes-like, not {type(item).__name__}")
        view = memoryview(item).cast("B")
        if view.nbytes <= piece_size:
            if view.nbytes:
                yield view
            continue
        for start in range(0, view.nbytes, piece_size):
            yield view[start:start + piece_size]


def check_body(body: object) -> None:
    """Raise ``TypeError`` unless ``body`` is bytes-like, a binary file or an iterable of bytes."""
    if isinstance(body, (bytes, bytearray, memoryview)) or _is_file(body):
        return
    if isinstance(body, str) or not hasattr(body, "__iter__"):
        raise TypeError(f"an upload body must be bytes, an iterable of bytes or a binary file, "
                        f"not {type(body).__name__}")


def body_length(body: Body) -> Optional[int]:
    """The number of bytes ``body`` will yield, when it can be known without reading it."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return memoryview(body).nbytes
    if _is_file(body):
        try:
            fileno = body.fileno()  # type: ignore[union-attr,attr-defined]
            size = os.fstat(fileno).st_size
            pos = body.tell()  # type: ignore[union-attr,attr-defined]
            return max(0, size - pos)
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass
        if isinstance(body, io.BytesIO):
            return len(body.getbuffer()) - body.tell()
        return None
    if isinstance(body, SizedBody):
        return len(body)
    return None


class SizedBody:
    """An iterable body of known length: ``requests`` sends it with ``Content-Length``
    (it reads ``len()``) instead of chunked encoding, piece by piece."""

    def __init__(self, pieces: Iterable[Union[bytes, memoryview]], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Union[bytes, memoryview]]:
        return iter(self._pieces)


class _CountedPieces:
    """Pieces that fail loudly if the body yields more or fewer bytes than declared."""

    def __init__(self, pieces: Iterable[Union[bytes, memoryview]], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __iter__(self) -> Iterator[Union[bytes, memoryview]]:
        sent = 0
        for piece in self._pieces:
            sent += len(piece)
            if sent > self._length:
                raise ValidationError(f"upload body longer than its declared length {self._length}")
            yield piece
        if sent != self._length:
            raise ValidationError(f"upload body shorter ({sent}) than its declared length {self._length}")


def stream_body(
    body: Body, length: Optional[int] = None,
) -> Union[bytes, SizedBody, Iterator[Union[bytes, memoryview]]]:
    """A ``requests`` ``data=`` value streaming ``body`` in 1 MiB pieces.

    With a known length (given, or :func:`body_length`) it is sent with ``Content-Length``,
    otherwise with chunked transfer encoding.
    """
    check_body(body)
    if length is None:
        length = body_length(body)
    pieces = iter_pieces(body)
    if length is None:
        return pieces
    if length == 0:  # requests would send an empty iterable with chunked encoding
        return b""
    return SizedBody(_CountedPieces(pieces, length), length)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def multipart_body(
    value: Body, *, field: str = "data", filename: str = "data",
    content_type: str = "application/octet-stream", boundary: Optional[str] = None,
    length: Optional[int] = None,
) -> Tuple[str, Union[SizedBody, Iterator[Union[bytes, memoryview]]]]:
    """A streamed ``multipart/form-data`` body with one file part; returns ``(content_type, data)``.

    The framing (boundary, part headers, closing boundary) is generated around the
    payload pieces; the payload is never joined in memory. With a known payload length
    the whole body has a ``Content-Length``.

    >>> ctype, data = multipart_body(b"xy", boundary="B")
    >>> ctype, b"".join(bytes(p) for p in data)
    ('multipart/form-data; boundary=B', b'--B\\r\\nContent-Disposition: form-data; name="data"; \
filename="data"\\r\\nContent-Type: application/octet-stream\\r\\n\\r\\nxy\\r\\n--B--\\r\\n')
    """
    check_body(value)
    boundary = boundary or f"mictlanx-{secrets.token_hex(16)}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{_quote(field)}"; filename="{_quote(filename)}"\r\n'
        f"Content-Type: {_quote(content_type)}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    if length is None:
        length = body_length(value)

    def pieces() -> Iterator[Union[bytes, memoryview]]:
        yield head
        if length is None:
            yield from iter_pieces(value)
        else:
            yield from _CountedPieces(iter_pieces(value), length)
        yield tail

    ctype = f"multipart/form-data; boundary={boundary}"
    if length is None:
        return ctype, pieces()
    return ctype, SizedBody(pieces(), len(head) + length + len(tail))


# --- session pieces ----------------------------------------------------------------------
class _RejectAllCookies(http.cookiejar.CookiePolicy):
    """Cookies are never stored nor sent."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def _bounded_pool(base: type, pool_timeout: float) -> type:
    """A urllib3 pool class whose ``_get_conn`` waits at most ``pool_timeout`` seconds."""

    def _get_conn(self: Any, timeout: Optional[float] = None) -> Any:
        return base._get_conn(self, timeout if timeout is not None else pool_timeout)  # type: ignore[attr-defined]

    return type(f"Bounded{base.__name__}", (base,), {"_get_conn": _get_conn})


class BoundedPoolAdapter(HTTPAdapter):
    """``HTTPAdapter`` with retries 0, ``pool_block=True`` and a finite pool wait.

    An exhausted pool raises urllib3's ``EmptyPoolError`` after ``pool_timeout`` seconds
    (translated to ``RequestTimeoutError``) instead of waiting forever. An optional
    ``ssl.SSLContext`` is used for every verified HTTPS request.
    """

    def __init__(self, pool_maxsize: int, pool_timeout: float, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self._pool_timeout = pool_timeout
        self._ssl_context = ssl_context
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0, pool_block=True)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = True, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block=True, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _bounded_pool(HTTPConnectionPool, self._pool_timeout),
            "https": _bounded_pool(HTTPSConnectionPool, self._pool_timeout),
        }

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if self._ssl_context is not None and verify is True:
            pool_kwargs["ssl_context"] = self._ssl_context
        return host_params, pool_kwargs


def ssl_verify(verify: Any) -> Tuple[Union[bool, str], Optional[ssl.SSLContext]]:
    """Split a constructor ``verify`` into the per-request value and an optional context."""
    if isinstance(verify, ssl.SSLContext):
        return True, verify
    if isinstance(verify, (bool, str)):
        return verify, None
    if isinstance(verify, os.PathLike):
        return os.fspath(verify), None  # type: ignore[return-value]
    raise TypeError(f"verify must be a bool, a CA bundle path or an ssl.SSLContext, not {type(verify).__name__}")


def _call_verify(verify: Any, default: Union[bool, str]) -> Union[bool, str]:
    if verify is None:
        return default
    if isinstance(verify, (bool, str)):
        return verify
    if isinstance(verify, os.PathLike):
        return os.fspath(verify)  # type: ignore[return-value]
    raise TypeError(f"verify must be a bool or a CA bundle path per call, not {type(verify).__name__}")


# --- the transport ---------------------------------------------------------------------
_FORK_LOCK = threading.Lock()


def _reset_fork_lock() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_fork_lock)


def _fork_lock() -> threading.Lock:
    return _FORK_LOCK


class Transport:
    """One base URL, one pooled session; thread-safe and fork-aware.

    ``request`` returns ``Ok(response)`` for a 2xx answer (the body already read unless
    ``stream=True``; then the caller closes it) and ``Err(MictlanXError)`` otherwise.
    """

    def __init__(
        self, base_url: str, *, timeout: TimeoutArg = (DEFAULT_CONNECT_TIMEOUT, 120.0),
        verify: Any = True, pool_maxsize: int = 16, token: Optional[str] = None,
    ) -> None:
        if not isinstance(pool_maxsize, int) or isinstance(pool_maxsize, bool) or pool_maxsize < 1:
            raise ValidationError(f"pool_maxsize must be a positive int, got {pool_maxsize!r}")
        if token is not None and (not isinstance(token, str) or not token or any(c in token for c in "\r\n")):
            raise ValidationError("token must be a non-empty str without line breaks")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = resolve_timeout(timeout, (DEFAULT_CONNECT_TIMEOUT, 120.0))
        self.verify, self.ssl_context = ssl_verify(verify)
        self.pool_maxsize = pool_maxsize
        self._lock = threading.Lock()
        self._session: Optional[requests.Session] = None
        self._pid = os.getpid()
        self._abandoned: list[requests.Session] = []

    # session lifecycle -------------------------------------------------------------------
    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.cookies.set_policy(_RejectAllCookies())
        session.verify = self.verify
        if self._token is not None:
            session.headers["Authorization"] = f"Bearer {self._token}"
        adapter = BoundedPoolAdapter(self.pool_maxsize, self.timeout[0], self.ssl_context)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def session(self) -> requests.Session:
        """The session of this process (rebuilt after ``fork``, created on first use)."""
        pid = os.getpid()
        if self._pid != pid:
            with _fork_lock():
                if self._pid != pid:
                    # A forked child must not share the parent's sockets, and the parent's lock
                    # may have been held at fork time: start over. The old session stays
                    # referenced, never closed here, so its sockets remain the parent's.
                    self._lock = threading.Lock()
                    if self._session is not None:
                        self._abandoned.append(self._session)
                    self._session = None
                    self._pid = pid
        session = self._session
        if session is not None:
            return session
        with self._lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def close(self) -> None:
        """Close the pooled connections; a later request opens a new session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ---------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def request(
        self, method: str, path: str, *, params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None, data: Any = None, json_body: Any = None,
        timeout: TimeoutArg = None, verify: Any = None, stream: bool = False,
        context: Optional[Mapping[str, Optional[str]]] = None,
    ) -> Result[requests.Response, MictlanXError]:
        """Send one request; see the class docstring for the result."""
        ctx = dict(context or {})
        try:
            connect_read = resolve_timeout(timeout, self.timeout)
            call_verify = _call_verify(verify, self.verify)
        except (TypeError, ValidationError) as exc:
            if isinstance(exc, TypeError):
                raise
            return Err(exc)
        send_headers = {str(k): str(v) for k, v in (headers or {}).items()}
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            send_headers.setdefault("Content-Type", "application/json")
        url = self.url(path)
        started = time.monotonic()
        response: Optional[requests.Response] = None
        try:
            response = self.session().request(
                method, url, params=params, headers=send_headers, data=data, timeout=connect_read,
                verify=call_verify, stream=True, allow_redirects=False,
            )
            if not 200 <= response.status_code < 300:
                error = error_from_response(response, **ctx)
                response.close()
                self._log(method, url, response.status_code, started)
                return Err(error)
            if not stream:
                _ = response.content  # read it all, inside the translation boundary
                response.close()
            self._log(method, url, response.status_code, started)
            return Ok(response)
        except Exception as exc:  # the one translation boundary of this layer
            if response is not None:
                response.close()
            error = error_from_exception(exc, **ctx)
            log.debug("%s %s failed after %.1f ms: %s", method, url, (time.monotonic() - started) * 1000, error)
            return Err(error)

    @staticmethod
    def _log(method: str, url: str, status: int, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %d %.1f ms", method, url, status, (time.monotonic() - started) * 1000)


def format_error(exc: BaseException, **context: Optional[str]) -> MictlanXError:
    """A ``ResponseFormatError`` carrying ``context`` (used by ``Peer``/``Router`` parsers)."""
    if isinstance(exc, ResponseFormatError):
        if exc.bucket_id is None and exc.key is None and exc.router is None:
            clone = ResponseFormatError(exc.message, exc.status_code, exc.code, exc.detail, **context)
            clone.__cause__ = exc.__cause__
            return clone
        return exc
    return error_from_exception(exc, **context)


# --- the shared base of Peer and Router --------------------------------------------------
def copy_headers(headers: Optional[Mapping[str, Any]], **extra: Optional[str]) -> dict[str, str]:
    """A new headers dict: the caller's (never mutated) plus ``extra`` values that are not None."""
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping, not {type(headers).__name__}")
    result = {str(k): str(v) for k, v in (headers or {}).items()}
    for name, value in extra.items():
        if value is not None:
            result[name.replace("_", "-")] = value
    return result


def validated(check: Callable[[], Any]) -> Optional[Err[Any, MictlanXError]]:
    """Run id checks; ``Err(ValidationError)`` if one fails, else ``None``."""
    try:
        check()
    except ValidationError as exc:
        return Err(exc)
    return None


def parse_body(response: requests.Response, tp: Any, **context: Optional[str]) -> Result[Any, MictlanXError]:
    """Parse a 2xx JSON body as ``tp`` (``ResponseFormatError`` with ``context`` on failure)."""
    try:
        return Ok(parse_as(tp, response.content))
    except ResponseFormatError as exc:
        return Err(format_error(exc, **context))


class ServiceClient:
    """What ``Peer`` and ``Router`` share: address, base URL, transport, equality."""

    def __init__(
        self, ip_addr: str, port: int, protocol: str = "http", api_version: int = 4, *,
        path_prefix: str = "", timeout: TimeoutArg = (DEFAULT_CONNECT_TIMEOUT, 120.0), verify: Any = True,
        pool_maxsize: int = 16, token: Optional[str] = None,
    ) -> None:
        if not isinstance(ip_addr, str):
            raise TypeError(f"ip_addr must be a str, not {type(ip_addr).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if protocol not in ("http", "https"):
            raise ValidationError(f"protocol must be http or https, not {protocol!r}")
        self.ip_addr = ip_addr
        self.port = port
        self.protocol = protocol
        self.api_version = api_version
        self.path_prefix = ("/" + path_prefix.strip("/")) if path_prefix and path_prefix.strip("/") else ""
        self.verify = verify
        self.pool_maxsize = pool_maxsize
        #: bearer token sent as ``Authorization: Bearer <token>`` on every request (never in repr)
        self.token = token
        self._transport = Transport(self.base_url(), timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                                    token=token)
        self.timeout = self._transport.timeout

    def base_url(self) -> str:
        """``{protocol}://{host}[:port]{path_prefix}`` (§P6.3)."""
        return _base_url(self.protocol, self.ip_addr, self.port, self.path_prefix)

    def get_addr(self) -> str:
        return f"{self.ip_addr}:{self.port}"

    def _api(self, path: str) -> str:
        return f"/api/v{self.api_version}{path}"

    def _error_context(self) -> dict[str, Optional[str]]:
        """Context every error of this client carries (``Router`` adds ``router``)."""
        return {}

    def _send(self, method: str, path: str, tp: Any = None, *, api: bool = True, raw: bool = False,
              **kwargs: Any) -> Result[Any, MictlanXError]:
        """One request; ``tp`` None → ``Ok(True)``, else the body parsed as ``tp``.

        With ``raw`` (or ``stream``) the ``requests.Response`` itself is the value.
        """
        context = {**self._error_context(), **kwargs.pop("context", {})}
        result = self._transport.request(method, self._api(path) if api else path, context=context, **kwargs)
        if isinstance(result, Err) or raw or kwargs.get("stream"):
            return result
        if tp is None:
            return Ok(True)
        return parse_body(ok_value(result), tp, **context)

    def _identity(self) -> tuple[str, str, int, str]:
        return (self.protocol, self.ip_addr, self.port, self.path_prefix)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._identity() == other._identity()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._identity()))

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self._transport.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_error(cls: type[MictlanXError], message: str, context: Mapping[str, Optional[str]]) -> MictlanXError:
    """``cls(message)`` carrying the ``bucket_id``/``key``/``router`` of ``context``."""
    return cls(message, bucket_id=context.get("bucket_id"), key=context.get("key"), router=context.get("router"))


def ok_value(result: Result[Any, Any]) -> Any:
    """The value of a result already known to be ``Ok``."""
    assert isinstance(result, Ok)
    return result.value
