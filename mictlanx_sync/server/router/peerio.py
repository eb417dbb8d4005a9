"""One router -> peer request, through the lean client (:mod:`.rawhttp`) or httpx.

Peers use :class:`.rawhttp.RawPool` (one pool for http, one with TLS for https) unless
``MICTLANX_ROUTER_RAW_WRITES=0`` (see ``RouterConfig.raw_writes``) selects the router's
``httpx.AsyncClient``; both verify https peers with the same context (``--peer-ca-file``).
Either way a transport failure is a :class:`PeerError` and a failure of a streamed body's own
source (e.g. the holder a repair copies from) a :class:`SourceError`, so callers never blame
the wrong peer.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Mapping, Optional, Union
from urllib.parse import quote, urlencode

from .rawhttp import PeerTLSError, RawHTTPError, ReplyTooLarge

if TYPE_CHECKING:
    from .registry import PeerEntry, Registry

#: Largest JSON answer accepted from a peer (a whole-bucket P6 listing can be large).
REPLY_LIMIT = 128 * 1024 * 1024
#: Characters left as they are in a path, as httpx leaves them (ids never need quoting).
_PATH_SAFE = "/:@!$&'()*+,;=%~[]"


class PeerError(Exception):
    """The peer could not be reached or its answer could not be read."""

    def __init__(self, msg: str, transport: bool = True, refused: bool = False, tls: bool = False) -> None:
        super().__init__(msg)
        self.transport = transport  # False: the answer was too large, the peer is not at fault
        #: the connection was refused: nothing listens there (a stopped peer), nothing was sent
        self.refused = refused
        #: the TLS handshake failed (certificate not trusted, or no TLS there): a setup error
        self.tls = tls


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


class SourceError(Exception):
    """The streamed body's source failed (not the peer's fault)."""


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names (httpx: case-insensitive)
    content: bytes


def target(path: str, params: Any = None) -> str:
    """``path`` quoted as httpx would, plus the query of ``params`` (a mapping or pairs)."""
    quoted = quote(path, safe=_PATH_SAFE)
    if params:
        query = urlencode(params, doseq=True)
        if query:
            return f"{quoted}?{query}"
    return quoted


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


async def exchange(registry: Registry, entry: PeerEntry, method: str, path: str, *, params: Any = None,
                   headers: Optional[Mapping[str, str]] = None, body: Union[None, bytes, AsyncIterable[bytes]] = None,
                   length: Optional[int] = None, timeout: Optional[float] = None,
                   limit: int = REPLY_LIMIT) -> Answer:
    """Send one request to ``entry`` (``path`` from the root, e.g. ``/api/v4/...``) and read the
    whole answer. ``body``: None, bytes, or an async iterable of exactly ``length`` bytes.
    ``timeout`` (seconds) replaces the connect and read timeouts. Raises :class:`PeerError` on
    transport errors and :class:`SourceError` when a streamed body's source fails."""
    url_target = target(path, params)
    auth = registry.auth_headers(entry)
    if auth:
        headers = {**auth, **(headers or {})}
    if body is not None and not isinstance(body, bytes):
        body = _guarded(body, length)
    pool = registry.raw_pool(entry)
    if pool is not None:
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
    return await _httpx_exchange(registry, entry, method, url_target, headers, body, length, timeout)


async def _httpx_exchange(registry: Registry, entry: PeerEntry, method: str, url_target: str,
                          headers: Optional[Mapping[str, str]], body: Any, length: Optional[int],
                          timeout: Optional[float]) -> Answer:
    import httpx

    send_headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        send_headers["Content-Length"] = str(length)
    try:
        response = await registry.client.request(
            method, f"{entry.url}{url_target}", content=body, headers=send_headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
    except httpx.HTTPError as exc:
        raise _peer_error(exc) from None
    return Answer(response.status_code, response.headers, response.content)
