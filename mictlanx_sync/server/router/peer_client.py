"""Every router -> peer request: :class:`PeerClient`, given to the registry at construction.

Peers are reached through the lean client of :mod:`.rawhttp` (one pool for http peers, one
with TLS for https ones), or through one ``httpx.AsyncClient`` when ``MICTLANX_ROUTER_RAW_READS``
/ ``MICTLANX_ROUTER_RAW_WRITES`` is 0 (``RouterConfig.raw_reads``/``raw_writes``, an escape
hatch); both verify https peers with the same context (``--peer-ca-file``).

**Who gets the peer token** (issue 12 point 6): only trusted entries (``PeerEntry.trusted``:
peers of the router's configuration, or registered by a request that proved it knows the
token, see ``registry``). Any other peer is sent no ``Authorization`` at all.

A transport failure is a :class:`PeerError` and a failure of a streamed body's own source
(e.g. the holder a repair copies from) a :class:`SourceError`, so callers never blame the
wrong peer. Reading a streamed answer (:meth:`PeerClient.open`) raises one of
:data:`STREAM_ERRORS`.
"""

from __future__ import annotations

import hmac
import ssl
from dataclasses import dataclass
from typing import Any, AsyncIterable, AsyncIterator, Mapping, Optional, Protocol, Union
from urllib.parse import quote, urlencode

import httpx

from ..tls import peer_ssl_context
from .peers import PeerEntry
from .rawhttp import PeerTLSError, RawHTTPError, RawPool, ReplyTooLarge

#: Largest JSON answer accepted from a peer (a whole-bucket P6 listing can be large).
REPLY_LIMIT = 128 * 1024 * 1024
#: Characters left as they are in a path, as httpx leaves them (ids never need quoting).
_PATH_SAFE = "/:@!$&'()*+,;=%~[]"
#: what opening or reading a streamed peer answer raises, whichever client carries it
STREAM_ERRORS: tuple[type[Exception], ...] = (RawHTTPError, httpx.HTTPError)

Body = Union[None, bytes, AsyncIterable[bytes]]


class PeerError(Exception):
    """The peer could not be reached or its answer could not be read."""

    def __init__(self, msg: str, transport: bool = True, refused: bool = False, tls: bool = False) -> None:
        super().__init__(msg)
        self.transport = transport  # False: the answer was too large, the peer is not at fault
        #: the connection was refused: nothing listens there (a stopped peer), nothing was sent
        self.refused = refused
        #: the TLS handshake failed (certificate not trusted, or no TLS there): a setup error
        self.tls = tls


class SourceError(Exception):
    """The streamed body's source failed (not the peer's fault)."""


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names (httpx: case-insensitive)
    content: bytes


class PeerStream(Protocol):
    """A peer's answer whose body is still to read; ``aclose()`` releases its connection."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_raw(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


def target(path: str, params: Any = None) -> str:
    """``path`` quoted as httpx would, plus the query of ``params`` (a mapping or pairs)."""
    quoted = quote(path, safe=_PATH_SAFE)
    if params:
        query = urlencode(params, doseq=True)
        if query:
            return f"{quoted}?{query}"
    return quoted


class PeerClient:
    """The connections to the peers and the rules for using them (see the module docstring).

    ``ssl_context`` verifies https peers (default: the system's trusted CAs). Nothing connects
    before the first request; :meth:`aclose` closes every connection.
    """

    def __init__(self, connect_timeout: float, read_timeout: float, *, peer_token: Optional[str] = None,
                 ssl_context: Optional[ssl.SSLContext] = None, raw_reads: bool = True,
                 raw_writes: bool = True) -> None:
        #: the bearer token sent to trusted peers (None: none)
        self.peer_token = peer_token
        self.raw_reads = raw_reads  # data reads (P5) through the lean client
        self.raw_writes = raw_writes  # every other request through the lean client
        tls = ssl_context if ssl_context is not None else peer_ssl_context()  # https peers, either client
        self.raw = RawPool(connect_timeout, read_timeout)
        self.raw_tls = RawPool(connect_timeout, read_timeout, ssl_context=tls)
        # Keep-alive limit = connection limit: httpcore 1.0.9 may close a "surplus" idle
        # connection already handed to a queued request (encode/httpcore#1110), leaving that
        # request hanging until its read timeout. With equal limits nothing is ever surplus.
        # No default Authorization: the peer token goes per request, to trusted peers only.
        self.httpx = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=30.0),
            trust_env=False, follow_redirects=False, verify=tls)

    async def aclose(self) -> None:
        self.raw.close()
        self.raw_tls.close()
        await self.httpx.aclose()

    # --- the peer token -----------------------------------------------------------------
    def auth_headers(self, entry: PeerEntry) -> dict[str, str]:
        """``Authorization`` for a request to ``entry``: only trusted entries get the peer token."""
        if self.peer_token and entry.trusted:
            return {"Authorization": f"Bearer {self.peer_token}"}
        return {}

    def proves_peer_token(self, presented: Optional[str]) -> bool:
        """True when ``presented`` (a request's credential) is the peer token itself."""
        if not self.peer_token or not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self.peer_token.encode("utf-8"))

    def pool(self, entry: PeerEntry, *, read: bool = False) -> Optional[RawPool]:
        """The lean client for a request to ``entry`` (data reads if ``read``): the plain pool for
        an http peer, the TLS pool for an https one; None for httpx."""
        pool = {"http": self.raw, "https": self.raw_tls}.get(entry.protocol)
        if pool is None:
            return None
        return pool if (self.raw_reads if read else self.raw_writes) else None

    # --- requests ------------------------------------------------------------------------
    async def exchange(self, entry: PeerEntry, method: str, path: str, *, params: Any = None,
                       headers: Optional[Mapping[str, str]] = None, body: Body = None,
                       length: Optional[int] = None, timeout: Optional[float] = None,
                       limit: int = REPLY_LIMIT) -> Answer:
        """Send one request to ``entry`` (``path`` from the root, e.g. ``/api/v4/...``) and read the
        whole answer. ``body``: None, bytes, or an async iterable of exactly ``length`` bytes.
        ``timeout`` (seconds) replaces the connect and read timeouts. Raises :class:`PeerError` on
        transport errors and :class:`SourceError` when a streamed body's source fails."""
        url_target = target(path, params)
        auth = self.auth_headers(entry)
        if auth:
            headers = {**auth, **(headers or {})}
        if body is not None and not isinstance(body, bytes):
            body = _guarded(body, length)
        pool = self.pool(entry)
        if pool is None:
            return await self._httpx_exchange(entry, method, url_target, headers, body, length, timeout)
        try:
            response = await pool.request(method, entry.hostname, entry.port, url_target, headers, body,
                                          length=length, timeout=timeout)
            try:
                content = await response.aread(limit)
            finally:
                await response.aclose()
        except ReplyTooLarge as exc:
            raise PeerError(f"{type(exc).__name__}: {exc}", transport=False) from None
        except RawHTTPError as exc:
            raise _peer_error(exc) from None
        return Answer(response.status, response.headers, content)

    async def _httpx_exchange(self, entry: PeerEntry, method: str, url_target: str,
                              headers: Optional[Mapping[str, str]], body: Any, length: Optional[int],
                              timeout: Optional[float]) -> Answer:
        send_headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            send_headers["Content-Length"] = str(length)
        try:
            response = await self.httpx.request(
                method, f"{entry.url}{url_target}", content=body, headers=send_headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.HTTPError as exc:
            raise _peer_error(exc) from None
        return Answer(response.status_code, response.headers, response.content)

    async def open(self, entry: PeerEntry, path: str, headers: Mapping[str, str]) -> PeerStream:
        """``GET path`` (from the root) on ``entry`` with the answer's body still to read (a P5
        stream). Raises one of :data:`STREAM_ERRORS`, as reading the body does."""
        auth = self.auth_headers(entry)
        if auth:
            headers = {**auth, **headers}
        pool = self.pool(entry, read=True)
        if pool is not None:
            return await pool.get(entry.hostname, entry.port, target(path), headers)
        request = self.httpx.build_request("GET", f"{entry.url}{path}", headers=headers)
        return _HttpxStream(await self.httpx.send(request, stream=True))


class _HttpxStream:
    """An httpx streamed response seen as a :class:`PeerStream`."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def iter_raw(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()

    async def aread(self) -> bytes:
        return await self._response.aread()

    async def aclose(self) -> None:
        await self._response.aclose()


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` or one of its causes is one of ``kinds``."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _peer_error(exc: BaseException) -> PeerError:
    """The :class:`PeerError` of a transport failure (raw client or httpx)."""
    return PeerError(f"{type(exc).__name__}: {exc}", refused=_caused_by(exc, (ConnectionRefusedError,)),
                     tls=_caused_by(exc, (PeerTLSError, ssl.SSLError)))


async def _guarded(body: AsyncIterable[bytes], length: Optional[int]) -> AsyncIterator[bytes]:
    """``body``, its failures (and a length other than ``length``) as :class:`SourceError`."""
    sent = 0
    try:
        async for piece in body:
            sent += len(piece)
            if length is not None and sent > length:
                raise SourceError(f"upload body longer than its Content-Length {length}")
            yield piece
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{type(exc).__name__}: {exc}") from exc
    if length is not None and sent != length:
        raise SourceError(f"upload body of {sent} bytes, shorter than its Content-Length {length}")
