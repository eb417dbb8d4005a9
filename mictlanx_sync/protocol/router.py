"""``Router``: a blocking client of one router (client-api §7, endpoints R1–R24).

It mirrors upstream's ``AsyncRouter`` method by method; every method returns ``Result``
and every error carries ``router`` (this router's base URL). Upstream quirks handled here
(client-api §3): any 404 from R5 is ``MaxAvailabilityReachedError``; an R6/R7 answer
naming fewer peers than the replication factor is ``PutChunksError``; R6's empty 2xx
body is ``Ok(None)``. (A 500 with a ``"404: …"`` detail is mapped by ``errors``.)

>>> with Router("mictlanx-router-0", "127.0.0.1", 60666) as router:   # doctest: +SKIP
...     router.health().unwrap().available_peers
2
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union
from urllib.parse import urlsplit

import attrs
import requests

from .bodies import Body, multipart_body, stream_body
from .direct import DIRECT_FIRST_BYTE_TIMEOUT, DIRECT_HEADER, Unreachable
from .errors import (
    AccessDeniedError,
    AuthenticationError,
    MaxAvailabilityReachedError,
    MictlanXError,
    NetworkError,
    PutChunksError,
    ResponseFormatError,
    ValidationError,
)
from .ids import validate_id, validate_key, validate_task_id
from .inline import INLINE_FIELD, encode_inline
from .models import (
    BallMetadata,
    CacheKeysResponse,
    CacheStatsResponse,
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetMetadataResponse,
    GetRouterBucketMetadataResponse,
    GetSizeByKey,
    Metadata,
    PeerInfo,
    PeersResponse,
    PeerStatsResponse,
    PutMetadataResponse,
    RouterHealthResponse,
    RouterPutChunkedResponse,
    parse_as,
)
from .peer import _get_to_file, if_match_value, paging_params
from .result import Err, Ok, Result
from .service import ServiceClient, copy_headers, make_error, ok_value, parse_body, validated
from .stream import DataStream
from .timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg, resolve_timeout
from .versions import VERSION_HEADER, validate_version

__all__ = ["Router"]

Headers = Optional[Dict[str, str]]


def _peer_item(peer: Any) -> Dict[str, Any]:
    """An R15/R17 item from a ``Peer``, a ``PeerInfo`` or a mapping."""
    if isinstance(peer, PeerInfo):
        return peer.to_dict()
    if isinstance(peer, Mapping):
        item = dict(peer)
        if "peer_id" not in item and "id" in item:
            item["peer_id"] = item.pop("id")
        if "hostname" not in item and "ip_addr" in item:
            item["hostname"] = item.pop("ip_addr")
        return {k: item[k] for k in ("peer_id", "hostname", "port", "protocol") if k in item}
    peer_id = getattr(peer, "peer_id", None)
    if peer_id is not None and hasattr(peer, "ip_addr") and hasattr(peer, "port"):
        return {"peer_id": peer_id, "hostname": peer.ip_addr, "port": peer.port,
                "protocol": getattr(peer, "protocol", "http")}
    raise TypeError(f"a peer must be a Peer, a PeerInfo or a mapping, not {type(peer).__name__}")

log = logging.getLogger("mictlanx_sync.protocol.router")


class Router(ServiceClient):
    """A router at ``protocol://ip_addr:port{path_prefix}``.

    Sessions, threads, ``fork``, ``close()``, ``__eq__`` and ``__hash__`` work as for ``Peer``.
    ``http2`` is accepted and ignored (HTTP/1.1).
    """

    def __init__(
        self, router_id: Optional[str], ip_addr: str, port: int, protocol: str = "http", http2: bool = False,
        api_version: int = 4, *, path_prefix: str = "", timeout: TimeoutArg = (DEFAULT_CONNECT_TIMEOUT, 120.0),
        verify: Any = True, pool_maxsize: int = 16, token: Optional[str] = None,
    ) -> None:
        super().__init__(ip_addr, port, protocol, api_version, path_prefix=path_prefix, timeout=timeout,
                         verify=verify, pool_maxsize=pool_maxsize, token=token)
        self.router_id = router_id
        self.http2 = bool(http2)
        #: peers that direct reads (``get_streaming(direct=True)``) could not reach lately
        self.unreachable_peers = Unreachable()

    # -- construction and object protocol ------------------------------------------------
    @staticmethod
    def from_str(x: str, **kwargs: Any) -> Result[Router, MictlanXError]:
        """``"id:ip:port"`` → ``Ok(Router)``; a port ≤ 0 means https."""
        try:
            if not isinstance(x, str):
                raise ValidationError(f"expected 'router_id:ip_addr:port', got {x!r}")
            parts = x.split(":")
            if len(parts) != 3:
                raise ValidationError(f"expected 'router_id:ip_addr:port', got {x!r}")
            router_id, ip_addr, raw_port = parts
            if not ip_addr:
                raise ValidationError(f"empty ip_addr in {x!r}")
            try:
                port = int(raw_port)
            except ValueError:
                raise ValidationError(f"invalid port {raw_port!r} in {x!r}") from None
            if port > 65535:
                raise ValidationError(f"port out of range in {x!r}")
            return Ok(Router(router_id, ip_addr, port, "https" if port <= 0 else "http", **kwargs))
        except ValidationError as exc:
            return Err(exc)

    @staticmethod
    def from_router(x: Router, http2: bool = False) -> Router:
        """A new ``Router`` (its own session) with every field of ``x``; ``http2`` as given."""
        return Router(x.router_id, x.ip_addr, x.port, x.protocol, http2, x.api_version, path_prefix=x.path_prefix,
                      timeout=x.timeout, verify=x.verify, pool_maxsize=x.pool_maxsize, token=x.token)

    def to_dict(self) -> Dict[str, Any]:
        return {"router_id": self.router_id, "ip_addr": self.ip_addr, "port": self.port, "protocol": self.protocol,
                "http2": self.http2, "api_version": self.api_version, "path_prefix": self.path_prefix}

    @staticmethod
    def empty() -> Router:
        return Router("", "", -1)

    def __str__(self) -> str:
        return f"Router(id={self.router_id}, ip_addr={self.ip_addr}, port={self.port})"

    def __repr__(self) -> str:
        return f"Router({self.router_id!r}, {self.base_url()!r})"

    def _error_context(self) -> Dict[str, Optional[str]]:
        return {"router": self.base_url()}

    def _check_replicas(self, result: Result[Any, MictlanXError], rf: Optional[int],
                        ctx: Mapping[str, Optional[str]]) -> Result[Any, MictlanXError]:
        if isinstance(result, Ok) and rf is not None and result.value is not None:
            peers = result.value.peer_ids
            if len(peers) < rf:
                return Err(make_error(PutChunksError, f"stored on {len(peers)} of {rf} replicas: {peers}",
                                      {**self._error_context(), **ctx}))
        return result

    # -- R5–R7: writes -------------------------------------------------------------------
    def put_metadata(
        self, key: str, size: int, checksum: str, producer_id: str, content_type: str, ball_id: str, bucket_id: str,
        tags: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, is_disabled: bool = False,
        replication_factor: int = 1, headers: Headers = None, verify: Any = None, *, update: bool = False,
        inline: Union[bytes, bytearray, memoryview, None] = None,
    ) -> Result[PutMetadataResponse, MictlanXError]:
        """R5: phase 1 → ``PutMetadataResponse`` (``tasks_ids[0]`` is the group id).

        ``inline`` (at most ``INLINE_CAP`` bytes, matching ``size`` and ``checksum``) makes it a
        one-request write (:mod:`~mictlanx_sync.protocol.inline`): a router that knows the
        extension stores the bytes and answers ``extra["committed"] = True``, with no group to
        send R7 to; one that does not answers a plain R5, and phase 2 follows as usual.
        """
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key"),
                                 ball_id and validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        body = {
            "key": key, "size": size, "checksum": checksum, "tags": dict(tags or {}), "producer_id": producer_id,
            "content_type": content_type, "ball_id": ball_id or key, "bucket_id": bucket_id,
            "is_disabled": is_disabled, "replication_factor": replication_factor,
        }
        if inline is not None:
            body[INLINE_FIELD] = encode_inline(bytes(inline))
        ctx = {"bucket_id": bucket_id, "key": key}
        result = self._send("POST", f"/buckets/{bucket_id}/metadata", PutMetadataResponse, json_body=body,
                            headers=copy_headers(headers, Update="1" if update else None), timeout=timeout,
                            verify=verify, context=ctx)
        error = result.err()
        if isinstance(error, MictlanXError) and error.status_code == 404 and \
                not isinstance(error, MaxAvailabilityReachedError):
            mapped = MaxAvailabilityReachedError(error.message, 404, 666, error.detail, bucket_id=bucket_id, key=key,
                                                 router=self.base_url())
            mapped.__cause__ = error
            return Err(mapped)
        return result

    def put_data(
        self, task_id: str, key: str, value: Body, content_type: str, timeout: TimeoutArg = 120,
        headers: Headers = None, file_id: str = "data", verify: Any = None, *,
        replication_factor: Optional[int] = None,
    ) -> Result[Optional[RouterPutChunkedResponse], MictlanXError]:
        """R6: phase 2 as a streamed multipart body → ``RouterPutChunkedResponse``, or ``None``
        for an empty 2xx body (upstream routers)."""
        bad = validated(lambda: (validate_task_id(task_id), validate_key(key, "key")))
        if bad is not None:
            return bad
        ctype, data = multipart_body(value, field=file_id, filename=key, content_type=content_type)
        hdrs = copy_headers(headers)
        hdrs["Content-Type"] = ctype
        ctx = {"key": key}
        result = self._send("POST", f"/buckets/data/{task_id}", data=data, headers=hdrs, timeout=timeout,
                            verify=verify, raw=True, context=ctx)
        if isinstance(result, Err):
            return result
        response: requests.Response = ok_value(result)
        if not response.content.strip():
            return Ok(None)
        return self._check_replicas(parse_body(response, RouterPutChunkedResponse, **self._error_context(), **ctx),
                                    replication_factor, ctx)

    def put_chunked(
        self, task_id: str, chunks: Body, timeout: TimeoutArg = 120, headers: Headers = None, verify: Any = None, *,
        replication_factor: Optional[int] = None,
    ) -> Result[RouterPutChunkedResponse, MictlanXError]:
        """R7: phase 2 as a raw streamed body → ``RouterPutChunkedResponse``."""
        bad = validated(lambda: validate_task_id(task_id))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Content-Type", "application/octet-stream")
        result = self._send("POST", f"/buckets/data/{task_id}/chunked", RouterPutChunkedResponse,
                            data=stream_body(chunks), headers=hdrs, timeout=timeout, verify=verify)
        return self._check_replicas(result, replication_factor, {})

    put_chuncked = put_chunked

    # -- R3, R10, R11: reads -------------------------------------------------------------
    def get_metadata(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 300, headers: Headers = None, verify: Any = None,
    ) -> Result[GetMetadataResponse, MictlanXError]:
        """R3 → ``GetMetadataResponse`` of the best-ranked holder."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata/{key}", GetMetadataResponse,
                          headers=copy_headers(headers), timeout=timeout, verify=verify,
                          context={"bucket_id": bucket_id, "key": key})

    def get_streaming(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 300, headers: Headers = None, verify: Any = None,
    ) -> Result[requests.Response, MictlanXError]:
        """R11 → an open streaming ``requests.Response``; the caller closes it (client-api §7).

        For callers that want the ``requests`` object itself; the ``Client`` reads chunks with
        :meth:`open_stream` instead."""
        return self._stream_ball(bucket_id, key, timeout, headers, verify)

    def open_stream(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 300, headers: Headers = None, verify: Any = None,
        *, direct: bool = False, direct_timeout: float = DIRECT_FIRST_BYTE_TIMEOUT,
    ) -> Result[DataStream, MictlanXError]:
        """R11 → an open :class:`~mictlanx_sync.protocol.stream.DataStream`; the caller closes it.

        ``direct`` asks the router for the peer instead of the bytes
        (:mod:`~mictlanx_sync.protocol.direct`): on a 307 the bytes are read straight from the
        peer through this router's pooled session, without this client's token, pinned to
        the version the router named. If the peer cannot be reached, does not answer within
        ``direct_timeout`` seconds (connect and first byte; the body is then read at the
        normal timeout) or does not serve it, the read goes through the router as usual (and
        a peer that could not be reached is not tried directly again for a minute). The
        stream is the peer's or the router's: both carry ``Content-Length``, ``ETag`` and
        ``Peer-Id``.
        """
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Accept-Encoding", "identity")
        path, context = f"/buckets/{bucket_id}/{key}", {"bucket_id": bucket_id, "key": key}
        if direct:
            answer = self._open("GET", path, headers={**hdrs, DIRECT_HEADER: "1"}, timeout=timeout, verify=verify,
                                redirect_ok=True, context=context)
            if answer.is_err or not 300 <= answer.unwrap().status < 400:
                return answer  # an error, or a router that streamed the bytes itself
            opened = self._read_redirected(answer.unwrap(), hdrs, timeout, verify, context, direct_timeout)
            if opened is not None:
                return Ok(opened)
        return self._open("GET", path, headers=hdrs, timeout=timeout, verify=verify, context=context)

    def _read_redirected(self, redirect: DataStream, headers: dict[str, str], timeout: TimeoutArg,
                         verify: Any, context: dict[str, str], first_byte: float) -> Optional[DataStream]:
        """The peer's answer to a direct read's ``Location``, or None to read through the router.

        Connecting and the answer's first byte get at most ``first_byte`` seconds (see
        ``DIRECT_FIRST_BYTE_TIMEOUT``); the body then the normal read timeout."""
        location = redirect.headers.get("Location", "")
        version = redirect.headers.get(VERSION_HEADER)
        try:
            netloc = urlsplit(location).netloc
            scheme = urlsplit(location).scheme
        except ValueError:
            return None
        if scheme not in ("http", "https") or not netloc or netloc in self.unreachable_peers:
            return None
        peer_headers = {**headers, **({VERSION_HEADER: version} if version else {})}
        try:
            connect, read = resolve_timeout(timeout, self._transport.timeout)
        except (TypeError, ValidationError):
            return None  # the proxied read reports the bad argument
        hop = (min(connect, first_byte), min(read, first_byte))
        opened = self._transport.open_stream("GET", "", absolute_url=location, anonymous=True, headers=peer_headers,
                                             timeout=hop, verify=verify, context=context)
        if opened.is_ok:
            opened.unwrap().set_read_timeout(read)
            return opened.unwrap()
        error = opened.unwrap_err()
        if isinstance(error, (NetworkError, AuthenticationError, AccessDeniedError)):
            self.unreachable_peers.mark(netloc)
        log.info("direct read of %s/%s from %s failed (%s); reading through the router",
                 context.get("bucket_id"), context.get("key"), netloc, error)
        return None

    def get_to_file(
        self, bucket_id: str, key: str, chunk_size: Any = "1MB", sink_folder_path: str = ".",
        timeout: TimeoutArg = 300, filename: str = "", headers: Headers = None, extension: str = "",
        verify: Any = None,
    ) -> Result[str, MictlanXError]:
        """R11 into ``{sink}/{filename or sha256("{b}@{k}")}[.extension]`` (checked, atomic)."""
        service = self if verify is None else _VerifyBound(self, verify)
        return _get_to_file(service, bucket_id, key, chunk_size, sink_folder_path, timeout, filename, headers,
                            extension)

    def get_merged_streaming(
        self, bucket_id: str, ball_id: str, timeout: TimeoutArg = 300, headers: Headers = None,
    ) -> Result[requests.Response, MictlanXError]:
        """R10: every chunk of a ball in index order, streamed; the caller closes it."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Accept-Encoding", "identity")
        return self._send("GET", f"/buckets/{bucket_id}/{ball_id}/merge", headers=hdrs, timeout=timeout,
                          stream=True, context={"bucket_id": bucket_id, "key": ball_id})

    # -- R2, R12: listings ---------------------------------------------------------------
    def get_chunks_metadata(
        self, key: str, bucket_id: str = "", timeout: TimeoutArg = 120, headers: Headers = None, verify: Any = None,
        *, include_disabled: bool = False,
    ) -> Result[BallMetadata, MictlanXError]:
        """R12 → ``BallMetadata`` (``key`` is the ball_id)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "ball_id")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata/{key}/chunks", BallMetadata,
                          params={"include_disabled": "1"} if include_disabled else None,
                          headers=copy_headers(headers), timeout=timeout, verify=verify,
                          context={"bucket_id": bucket_id, "key": key})

    def get_bucket_metadata(
        self, bucket_id: str, timeout: TimeoutArg = 120, headers: Headers = None, verify: Any = None, *,
        start: int = 0, end: int = 0, after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[GetRouterBucketMetadataResponse, MictlanXError]:
        """R2 → ``GetRouterBucketMetadataResponse`` (each key at most once; paged)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"),
                                 after is not None and validate_id(after, "after")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata", GetRouterBucketMetadataResponse,
                          params=paging_params(start, end, after, include_disabled), headers=copy_headers(headers),
                          timeout=timeout, verify=verify, context={"bucket_id": bucket_id})

    # -- R1, R4, R9, R13, R14: per-key operations ----------------------------------------
    def get_size(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 120, headers: Headers = None,
    ) -> Result[List[GetSizeByKey], MictlanXError]:
        """R1 → one ``GetSizeByKey`` per holder, in ranking order."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/{key}/size", List[GetSizeByKey],
                          headers=copy_headers(headers), timeout=timeout,
                          context={"bucket_id": bucket_id, "key": key})

    def update_metadata(
        self, bucket_id: str, key: str, metadata: Union[Metadata, Mapping[str, Any]], headers: Headers = None,
        verify: Any = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """R4: replace tags, content_type, producer_id, ball_id or is_disabled on every holder."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        if isinstance(metadata, Metadata):
            body: Dict[str, Any] = metadata.to_dict()
        elif isinstance(metadata, Mapping):
            body = {k: (attrs.asdict(v) if attrs.has(type(v)) else v) for k, v in metadata.items()}
        else:
            raise TypeError(f"metadata must be a Metadata or a mapping, not {type(metadata).__name__}")
        return self._send("POST", f"/u/buckets/{bucket_id}/{key}", json_body=body, headers=copy_headers(headers),
                          timeout=timeout, verify=verify, context={"bucket_id": bucket_id, "key": key})

    def disable(
        self, bucket_id: str, key: str, headers: Headers = None, verify: Any = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """R9: disable the key on every holder → ``True``."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("POST", f"/buckets/{bucket_id}/{key}/disable", headers=copy_headers(headers),
                          timeout=timeout, verify=verify, context={"bucket_id": bucket_id, "key": key})

    def delete(
        self, bucket_id: str, key: str, headers: Headers = None, verify: Any = None, timeout: TimeoutArg = 120, *,
        if_match: Optional[str] = None, task_id: Optional[str] = None,
    ) -> Result[DeletedByKeyResponse, MictlanXError]:
        """R13 → ``DeletedByKeyResponse``; ``if_match``/``task_id`` are forwarded preconditions."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key"),
                                 task_id is not None and validate_task_id(task_id)))
        if bad is not None:
            return bad
        ctx = {"bucket_id": bucket_id, "key": key}
        hdrs = copy_headers(headers, If_Match=if_match_value(if_match), Task_Id=task_id)
        result = self._send("DELETE", f"/buckets/{bucket_id}/{key}", headers=hdrs, timeout=timeout, verify=verify,
                            raw=True, context=ctx)
        if isinstance(result, Err):
            return result
        response: requests.Response = ok_value(result)
        if response.content.strip():
            return parse_body(response, DeletedByKeyResponse, **self._error_context(), **ctx)
        header = response.headers.get("n-deletes")
        try:
            return Ok(DeletedByKeyResponse(parse_as(int, header if header is not None else 0), key))
        except ResponseFormatError as exc:
            return Err(make_error(ResponseFormatError, f"invalid n-deletes header: {exc.message}",
                                  {**self._error_context(), **ctx}))

    def delete_by_ball_id(
        self, ball_id: str, bucket_id: str, timeout: TimeoutArg = 120, headers: Headers = None, verify: Any = None,
    ) -> Result[DeletedByBallIdResponse, MictlanXError]:
        """R14 → ``DeletedByBallIdResponse`` (``n_deletes`` may be 0)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        return self._send("DELETE", f"/buckets/{bucket_id}/bid/{ball_id}", DeletedByBallIdResponse,
                          headers=copy_headers(headers), timeout=timeout, verify=verify,
                          context={"bucket_id": bucket_id, "key": ball_id})

    # -- R26: commit a staged version -------------------------------------------------
    def commit(
        self, bucket_id: str, ball_id: str, version: str, timeout: TimeoutArg = 120, headers: Headers = None,
        verify: Any = None,
    ) -> Result[Dict[str, Any], MictlanXError]:
        """R26: make the staged chunks of ``ball_id`` at ``version`` current on every peer
        (docs/consistency.md §2.4) → the router's JSON answer."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id"),
                                 validate_version(version)))
        if bad is not None:
            return bad
        return self._send("POST", f"/buckets/{bucket_id}/{ball_id}/commit", Dict[str, Any],
                          headers=copy_headers(headers, **{VERSION_HEADER.replace("-", "_"): version}),
                          timeout=timeout, verify=verify, context={"bucket_id": bucket_id, "key": ball_id})

    # -- R15–R20: peers ------------------------------------------------------------------
    def add_peers(self, peers: Iterable[Any], headers: Headers = None, timeout: TimeoutArg = 120,
                  ) -> Result[bool, MictlanXError]:
        """R15: register peers (``Peer``, ``PeerInfo`` or mappings) → ``True``."""
        items = [_peer_item(p) for p in peers]
        return self._send("POST", "/xpeers", json_body=items, headers=copy_headers(headers), timeout=timeout)

    def get_peers(self, headers: Headers = None, timeout: TimeoutArg = 120) -> Result[PeersResponse, MictlanXError]:
        """R16 → ``PeersResponse``."""
        return self._send("GET", "/peers", PeersResponse, headers=copy_headers(headers), timeout=timeout)

    def add_peer(self, peer: Any, headers: Headers = None, timeout: TimeoutArg = 120) -> Result[bool, MictlanXError]:
        """R17: register one peer → ``True``."""
        return self._send("POST", "/peers", json_body=_peer_item(peer), headers=copy_headers(headers),
                          timeout=timeout)

    def remove_peer(self, peer_id: str, headers: Headers = None, timeout: TimeoutArg = 120,
                    ) -> Result[bool, MictlanXError]:
        """R18: unregister one peer (its data stays) → ``True``; 404 if unknown."""
        bad = validated(lambda: validate_id(peer_id, "peer_id"))
        if bad is not None:
            return bad
        return self._send("DELETE", f"/peers/{peer_id}", headers=copy_headers(headers), timeout=timeout)

    def remove_peers(self, peer_ids: Iterable[str], headers: Headers = None, timeout: TimeoutArg = 120,
                     ) -> Result[bool, MictlanXError]:
        """R19: unregister several peers (unknown ids ignored) → ``True``."""
        if isinstance(peer_ids, str):
            raise TypeError("peer_ids must be an iterable of ids, not a str")
        ids = list(peer_ids)
        bad = validated(lambda: [validate_id(p, "peer_id") for p in ids])
        if bad is not None:
            return bad
        return self._send("DELETE", "/xpeers", json_body=ids, headers=copy_headers(headers), timeout=timeout)

    def get_stats(
        self, timeout: TimeoutArg = 120, headers: Headers = None, verify: Any = None, *, start: int = 0, end: int = 0,
    ) -> Result[Dict[str, PeerStatsResponse], MictlanXError]:
        """R20 → ``{peer_id: PeerStatsResponse}`` (the router defaults an absent ``end`` to 100)."""
        return self._send("GET", "/peers/stats", Dict[str, PeerStatsResponse], params=paging_params(start, end),
                          headers=copy_headers(headers), timeout=timeout, verify=verify)

    # -- R21–R24: cache and health -------------------------------------------------------
    def get_cache_keys(self, headers: Headers = None, timeout: TimeoutArg = 120,
                       ) -> Result[CacheKeysResponse, MictlanXError]:
        """R21 → ``CacheKeysResponse``."""
        return self._send("GET", "/cache", CacheKeysResponse, headers=copy_headers(headers), timeout=timeout)

    def get_cache_stats(self, headers: Headers = None, timeout: TimeoutArg = 120,
                        ) -> Result[CacheStatsResponse, MictlanXError]:
        """R22 → ``CacheStatsResponse``."""
        return self._send("GET", "/cache/stats", CacheStatsResponse, headers=copy_headers(headers), timeout=timeout)

    def reset_cache(self, headers: Headers = None, timeout: TimeoutArg = 120) -> Result[bool, MictlanXError]:
        """R23 → ``True``."""
        return self._send("DELETE", "/cache/reset", headers=copy_headers(headers), timeout=timeout)

    def health(self, timeout: TimeoutArg = 5) -> Result[RouterHealthResponse, MictlanXError]:
        """R24 → ``RouterHealthResponse``."""
        return self._send("GET", "/health", RouterHealthResponse, api=False, timeout=timeout)

    def repair(self, bucket_id: str, rf: int = 2, timeout: TimeoutArg = 3600, headers: Headers = None,
               ) -> Result[Dict[str, Any], MictlanXError]:
        """R25 (extension, our router only): re-create missing replicas of every ball of ``bucket_id``
        up to ``rf`` copies → the summary ``{bucket_id, rf, checked, repaired, failed, errors, peers}``."""
        if isinstance(rf, bool) or not isinstance(rf, int):
            raise TypeError(f"rf must be an int, not {type(rf).__name__}")
        bad = validated(lambda: validate_id(bucket_id, "bucket_id"))
        if bad is not None:
            return bad
        if rf < 1:
            return Err(ValidationError(f"rf must be >= 1, got {rf}"))
        return self._send("POST", f"/repair/buckets/{bucket_id}", Dict[str, Any], params={"rf": str(rf)},
                          headers=copy_headers(headers), timeout=timeout, context={"bucket_id": bucket_id})


class _VerifyBound:
    """A router view whose ``get_streaming`` uses a per-call ``verify`` (for ``get_to_file``)."""

    def __init__(self, router: Router, verify: Any) -> None:
        self._router = router
        self._verify = verify

    def _error_context(self) -> Dict[str, Optional[str]]:
        return self._router._error_context()

    def get_streaming(self, bucket_id: str, key: str, timeout: TimeoutArg, headers: Headers,
                      ) -> Result[requests.Response, MictlanXError]:
        return self._router.get_streaming(bucket_id, key, timeout, headers, self._verify)
