"""The HTTP transport of ``Peer`` and ``Router``: every ``requests`` call goes through here.

One :class:`Transport` per base URL owns one pooled ``requests.Session``:

- cookies off (a policy that rejects every cookie), ``trust_env=False`` (environment
  proxies and netrc ignored), adapter retries 0 (the only retry layer is the caller's);
- the pool never blocks forever: ``pool_block=True`` with a finite pool timeout (the
  connect timeout), so an exhausted pool becomes ``RequestTimeoutError``;
- finite ``(connect, read)`` timeouts on every request; ``verify`` on every request;
- uploads streamed in pieces (:mod:`.bodies`); data answers opened as a
  :class:`~.stream.DataStream` (:meth:`Transport.open_stream`), read straight into the
  caller's memory;
- safe to share between threads; after ``fork`` the child builds its own session;
- sent through :func:`.quick_send.send`: what ``Session.request`` would send, without its
  per-call merging of settings none of these sessions uses (issue 13).

Every call returns ``Result``: ``requests``/``urllib3`` exceptions are translated by
``errors.error_from_exception`` and non-2xx answers by ``errors.error_from_response``,
both in :meth:`Transport.request`, so no ``requests`` exception leaves this layer. The
connection pool's private hooks live in :mod:`.urllib3_seam`.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import ssl
import threading
import time
from typing import Any, Mapping, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import quick_send
from .errors import MictlanXError, ValidationError, error_from_exception, error_from_response
from .result import Err, Ok, Result
from .stream import DataStream
from .timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg, resolve_timeout
from .urllib3_seam import scoped_pool_class

__all__ = ["Transport", "ssl_verify", "BoundedPoolAdapter", "ca_bundle_context"]

log = logging.getLogger("mictlanx_sync.protocol.transport")


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


class BoundedPoolAdapter(HTTPAdapter):
    """``HTTPAdapter`` with retries 0, ``pool_block=True`` and a finite pool wait.

    An exhausted pool raises urllib3's ``EmptyPoolError`` after ``pool_timeout`` seconds
    (translated to ``RequestTimeoutError``) instead of waiting forever, and the connection
    of every request belongs to the current call scope (both through
    :func:`~.urllib3_seam.scoped_pool_class`).

    **One TLS context, loaded once.** ``requests`` hands urllib3 a CA bundle *path* for every
    verified HTTPS pool (``verify=True``: certifi's), and urllib3 then builds a context and
    parses that bundle for every new connection: ~36 ms of CPU with certifi's 118 CAs on the
    2-core VM (docs/tls.md), more than the handshake itself. Worse, given a caller's
    ``ssl.SSLContext``, urllib3 loaded certifi's CAs *into that context*, so a context made to
    trust one private CA trusted every public CA too. Here the transport's ``verify`` becomes
    one context (the caller's own, or one built on first use from the same bundle ``requests``
    would use), and the pools get that context with no bundle path: the trust is exactly what
    ``verify`` says, parsed once. Another per-call ``verify`` keeps ``requests``' own way.
    """

    def __init__(self, pool_maxsize: int, pool_timeout: float, ssl_context: Optional[ssl.SSLContext] = None,
                 verify: Union[bool, str] = True) -> None:
        self._pool_timeout = pool_timeout
        self._ssl_context = ssl_context
        self._verify = verify
        self._context_lock = threading.Lock()
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0, pool_block=True)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = True, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block=True, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": scoped_pool_class(HTTPConnectionPool, self._pool_timeout),
            "https": scoped_pool_class(HTTPSConnectionPool, self._pool_timeout),
        }

    def context_for(self, verify: Any) -> Optional[ssl.SSLContext]:
        """The one context verifying as ``verify`` does, for the transport's own ``verify``
        (built on first use: an http-only client never parses a bundle); else ``None``."""
        if verify is False or verify != self._verify:
            return None
        if self._ssl_context is None:
            with self._context_lock:
                if self._ssl_context is None:
                    self._ssl_context = _context_from(verify)
        return self._ssl_context

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        """``HTTPAdapter.build_response`` without copying the answer's cookies into a jar: the
        sessions reject every cookie, and the jar's parsing is a cost on every small call."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            context = self.context_for(verify)
            if context is not None:
                pool_kwargs["ssl_context"] = context
                pool_kwargs.pop("ca_certs", None)
                pool_kwargs.pop("ca_cert_dir", None)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # (its missing-bundle error stays)
        if url.lower().startswith("https") and self.context_for(verify) is not None:
            conn.ca_certs = None  # the context holds the trust: nothing to load per connection
            conn.ca_cert_dir = None


def ca_bundle_context(location: str) -> ssl.SSLContext:
    """A verifying context trusting exactly the CA file or directory at ``location``, loaded
    now: a bundle that is missing or unreadable is a ``ValidationError`` naming it, at once."""
    try:
        return _context_from(location)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(f"verify={location!r}: cannot load this CA bundle: {exc}") from exc


def _context_from(verify: Union[bool, str]) -> ssl.SSLContext:
    """A verifying context trusting what ``requests`` would for ``verify``: certifi's bundle
    for ``True``, else the CA file or directory at that path."""
    location = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
    # CERT_REQUIRED, hostname checked, and given a location no system CAs (as urllib3's own)
    if os.path.isdir(location):
        return ssl.create_default_context(capath=location)
    return ssl.create_default_context(cafile=location)


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
        if isinstance(self.verify, str) and self.ssl_context is None:  # a CA file or directory
            self.ssl_context = ca_bundle_context(self.verify)
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
        adapter = BoundedPoolAdapter(self.pool_maxsize, self.timeout[0], self.ssl_context, self.verify)
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
        context: Optional[Mapping[str, Optional[str]]] = None, absolute_url: Optional[str] = None,
        anonymous: bool = False, redirect_ok: bool = False,
    ) -> Result[requests.Response, MictlanXError]:
        """Send one request; see the class docstring for the result.

        ``absolute_url`` sends it there instead of ``base_url + path`` (a direct read's
        ``Location``, through this transport's pooled session); ``anonymous`` leaves the token
        out (a URL someone else handed us never gets it); ``redirect_ok`` returns a 3xx answer
        as ``Ok`` (closed: its headers are the value) instead of an error.
        """
        ctx = dict(context or {})
        try:
            connect_read = resolve_timeout(timeout, self.timeout)
            call_verify = _call_verify(verify, self.verify)
        except (TypeError, ValidationError) as exc:
            if isinstance(exc, TypeError):
                raise
            return Err(exc)
        send_headers: dict[str, Optional[str]] = {str(k): str(v) for k, v in (headers or {}).items()}
        if anonymous:
            send_headers["Authorization"] = None  # requests drops a session header set to None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            send_headers.setdefault("Content-Type", "application/json")
        url = absolute_url if absolute_url is not None else self.url(path)
        started = time.monotonic()
        response: Optional[requests.Response] = None
        try:
            response = quick_send.send(self.session(), method, url, params=params, headers=send_headers, data=data,
                                       timeout=connect_read, verify=call_verify)
            if redirect_ok and 300 <= response.status_code < 400:
                response.close()
                self._log(method, url, response.status_code, started)
                return Ok(response)
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

    def open_stream(
        self, method: str, path: str, *, params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None, timeout: TimeoutArg = None, verify: Any = None,
        context: Optional[Mapping[str, Optional[str]]] = None, absolute_url: Optional[str] = None,
        anonymous: bool = False, redirect_ok: bool = False,
    ) -> Result[DataStream, MictlanXError]:
        """:meth:`request` for a data answer: ``Ok(DataStream)`` with its body not yet read (close
        it), or the ``Err``. With ``redirect_ok`` a 3xx answer is a closed ``DataStream`` whose
        status and headers (``Location``) the caller reads."""
        opened = self.request(method, path, params=params, headers=headers, timeout=timeout, verify=verify,
                              stream=True, context=context, absolute_url=absolute_url, anonymous=anonymous,
                              redirect_ok=redirect_ok)
        if isinstance(opened, Err):
            return opened
        try:
            return Ok(DataStream(opened.unwrap(), dict(context or {})))
        except MictlanXError as refused:  # an encoded body: DataStream closed the answer
            return Err(refused)

    @staticmethod
    def _log(method: str, url: str, status: int, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):  # without the query: a direct read's grant stays out of logs
            log.debug("%s %s %d %.1f ms", method, url.split("?", 1)[0], status, (time.monotonic() - started) * 1000)

