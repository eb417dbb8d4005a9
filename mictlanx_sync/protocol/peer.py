"""``Peer``: a blocking client of one storage peer (client-api §6, endpoints P1–P23).

It mirrors upstream's ``AsyncPeer`` method by method; every method returns ``Result``.
This module holds the object endpoints: writes (P1–P3), reads (P4, P5), listings (P6, P7,
P22) and per-key operations (P8–P12). The rest live in sibling modules:

- :mod:`.peer_admin`: stats, inventory and administration (P13–P21, P23), inherited;
- :mod:`.download`: ``get_to_file``'s temp file, length and ETag checks (shared with ``Router``);
- :mod:`.params`: paging and ``If-Match`` values (shared with ``Router``).

>>> with Peer("mictlanx-peer-0", "127.0.0.1", 25000) as peer:   # doctest: +SKIP
...     meta = peer.put_metadata("k", 2, sha256(b"hi"), "me", "text/plain", "k", "b").unwrap()
...     peer.put_chunked(meta.task_id, b"hi").unwrap()
...     peer.get_streaming("b", "k").unwrap().content
b'hi'
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import requests

from .bodies import Body, multipart_body, stream_body
from .download import MAX_PIECE as MAX_PIECE
from .download import MIN_PIECE as MIN_PIECE
from .download import download_to_file
from .download import get_to_file as _get_to_file  # ``Router`` imports it from here
from .download import piece_size_of as piece_size_of
from .errors import MictlanXError, ResponseFormatError
from .ids import validate_id, validate_key, validate_task_id
from .models import (
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetBucketMetadataResponse,
    GetMetadataResponse,
    GetSizeByKey,
    GroupedBallResponse,
    Metadata,
    PeerPutChunkedResponse,
    PeerPutMetadataResponse,
    ReplicateResponse,
    parse_as,
)
from .params import if_match_value, paging_params
from .peer_admin import PeerAdminEndpoints
from .result import Err, Ok, Result
from .service import ServiceClient, copy_headers, make_error, ok_value, parse_body, validated
from .timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg

__all__ = ["Peer", "R", "download_to_file", "if_match_value", "paging_params"]

R = Result[Any, MictlanXError]


class Peer(PeerAdminEndpoints, ServiceClient):
    """A storage peer at ``protocol://ip_addr:port{path_prefix}``.

    One pooled ``requests.Session`` (cookies off, no adapter retries, a pool that never
    blocks forever); safe to share between threads; rebuilt after ``fork``. Use
    ``close()`` or ``with``. Stats and administration (P13–P23) come from
    :class:`~mictlanx_sync.protocol.peer_admin.PeerAdminEndpoints`.
    """

    def __init__(
        self, peer_id: Optional[str], ip_addr: str, port: int, protocol: str = "http", api_version: int = 4, *,
        path_prefix: str = "", timeout: TimeoutArg = (DEFAULT_CONNECT_TIMEOUT, 120.0), verify: Any = True,
        pool_maxsize: int = 16, token: Optional[str] = None,
    ) -> None:
        super().__init__(ip_addr, port, protocol, api_version, path_prefix=path_prefix, timeout=timeout,
                         verify=verify, pool_maxsize=pool_maxsize, token=token)
        self.peer_id = peer_id

    # -- object protocol ---------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"peer_id": self.peer_id, "ip_addr": self.ip_addr, "port": self.port, "protocol": self.protocol,
                "api_version": self.api_version, "path_prefix": self.path_prefix}

    @staticmethod
    def empty() -> Peer:
        return Peer("", "", -1)

    def __str__(self) -> str:
        return f"Peer(id={self.peer_id}, ip_addr={self.ip_addr}, port={self.port})"

    def __repr__(self) -> str:
        return f"Peer({self.peer_id!r}, {self.base_url()!r})"

    # -- P1–P3: writes -------------------------------------------------------------------
    def put_metadata(
        self, key: str, size: int, checksum: str, producer_id: str, content_type: str, ball_id: str,
        bucket_id: str, tags: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, is_disable: bool = False,
        headers: Optional[Dict[str, str]] = None, *, update: bool = False, task_id: Optional[str] = None,
    ) -> Result[PeerPutMetadataResponse, MictlanXError]:
        """P1: phase 1 of a put → ``PeerPutMetadataResponse`` (``exists`` when identical)."""
        bad = validated(lambda: (
            validate_id(bucket_id, "bucket_id"), validate_key(key, "key"),
            ball_id and validate_key(ball_id, "ball_id"), task_id is not None and validate_task_id(task_id)))
        if bad is not None:
            return bad
        body = {
            "key": key, "size": size, "checksum": checksum, "tags": dict(tags or {}), "producer_id": producer_id,
            "content_type": content_type, "ball_id": ball_id or key, "bucket_id": bucket_id, "is_disable": is_disable,
        }
        hdrs = copy_headers(headers, Update="1" if update else None, Task_Id=task_id)
        return self._send("POST", f"/buckets/{bucket_id}/metadata", PeerPutMetadataResponse, json_body=body,
                          headers=hdrs, timeout=timeout, context={"bucket_id": bucket_id, "key": key})

    def put_data(
        self, task_id: str, key: str, value: Body, content_type: str, timeout: TimeoutArg = 120,
        headers: Optional[Dict[str, str]] = None, file_id: str = "data",
    ) -> Result[PeerPutChunkedResponse, MictlanXError]:
        """P2: phase 2 as a streamed multipart body (part ``file_id``, filename ``key``)."""
        bad = validated(lambda: (validate_task_id(task_id), validate_key(key, "key")))
        if bad is not None:
            return bad
        ctype, data = multipart_body(value, field=file_id, filename=key, content_type=content_type)
        hdrs = copy_headers(headers)
        hdrs["Content-Type"] = ctype
        return self._send("POST", f"/buckets/data/{task_id}", PeerPutChunkedResponse, data=data, headers=hdrs,
                          timeout=timeout, context={"key": key})

    def put_chunked(
        self, task_id: str, chunks: Body, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[PeerPutChunkedResponse, MictlanXError]:
        """P3: phase 2 as a raw body (bytes, an iterable of bytes or a binary file), streamed."""
        bad = validated(lambda: validate_task_id(task_id))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Content-Type", "application/octet-stream")
        return self._send("POST", f"/buckets/data/{task_id}/chunked", PeerPutChunkedResponse,
                          data=stream_body(chunks), headers=hdrs, timeout=timeout)

    put_chuncked = put_chunked

    # -- P4, P5: reads -------------------------------------------------------------------
    def get_metadata(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 300, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GetMetadataResponse, MictlanXError]:
        """P4 → ``GetMetadataResponse`` (disabled balls included)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata/{key}", GetMetadataResponse,
                          headers=copy_headers(headers), timeout=timeout,
                          context={"bucket_id": bucket_id, "key": key})

    def get_streaming(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 300, headers: Optional[Dict[str, str]] = None,
        verify: Any = None,
    ) -> Result[requests.Response, MictlanXError]:
        """P5 → the open streaming ``requests.Response``; the caller closes it."""
        return self._stream_ball(bucket_id, key, timeout, headers, verify)

    def get_to_file(
        self, bucket_id: str, key: str, chunk_size: Any = "1MB", sink_folder_path: str = ".",
        timeout: TimeoutArg = 300, filename: str = "", headers: Optional[Dict[str, str]] = None,
    ) -> Result[str, MictlanXError]:
        """P5 into ``{sink}/{filename or sha256("{b}@{k}")}`` (temp file, ETag check, rename)."""
        return _get_to_file(self, bucket_id, key, chunk_size, sink_folder_path, timeout, filename, headers, "")

    # -- P6, P7, P22: listings -----------------------------------------------------------
    def get_bucket_metadata(
        self, bucket_id: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None, *,
        start: int = 0, end: int = 0, after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[GetBucketMetadataResponse, MictlanXError]:
        """P6 → ``GetBucketMetadataResponse`` (paged, §P2.7)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"),
                                 after is not None and validate_id(after, "after")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata", GetBucketMetadataResponse,
                          params=paging_params(start, end, after, include_disabled), headers=copy_headers(headers),
                          timeout=timeout, context={"bucket_id": bucket_id})

    def get_chunks_metadata(
        self, ball_id: str, bucket_id: str = "", timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GroupedBallResponse, MictlanXError]:
        """P7 → ``GroupedBallResponse`` (404 when the ball has no balls)."""
        return self.get_by_ball_id(bucket_id, ball_id, timeout, headers)

    def get_by_ball_id(
        self, bucket_id: str, ball_id: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GroupedBallResponse, MictlanXError]:
        """P7 → ``GroupedBallResponse``."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata/{ball_id}/group", GroupedBallResponse,
                          headers=copy_headers(headers), timeout=timeout,
                          context={"bucket_id": bucket_id, "key": ball_id})

    def get_ball_chunks(
        self, bucket_id: str, ball_id: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[List[Metadata], MictlanXError]:
        """P22 (legacy form of P7) → ``List[Metadata]``, ``[]`` when there are none."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/metadata/{ball_id}/chunks", List[Metadata],
                          headers=copy_headers(headers), timeout=timeout,
                          context={"bucket_id": bucket_id, "key": ball_id})

    # -- P8–P12: per-key operations ------------------------------------------------------
    def delete(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None, *,
        if_match: Optional[str] = None, task_id: Optional[str] = None,
    ) -> Result[DeletedByKeyResponse, MictlanXError]:
        """P8 → ``DeletedByKeyResponse`` (from the ``n-deletes`` header); optional preconditions."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key"),
                                 task_id is not None and validate_task_id(task_id)))
        if bad is not None:
            return bad
        ctx = {"bucket_id": bucket_id, "key": key}
        hdrs = copy_headers(headers, If_Match=if_match_value(if_match), Task_Id=task_id)
        result = self._send("DELETE", f"/buckets/{bucket_id}/{key}", headers=hdrs, timeout=timeout, raw=True,
                            context=ctx)
        if isinstance(result, Err):
            return result
        response = ok_value(result)
        header = response.headers.get("n-deletes")
        if header is not None:
            try:
                return Ok(DeletedByKeyResponse(parse_as(int, header), key))
            except ResponseFormatError as exc:
                return Err(make_error(ResponseFormatError, f"invalid n-deletes header: {exc.message}", ctx))
        return parse_body(response, DeletedByKeyResponse, **ctx)

    def delete_by_ball_id(
        self, ball_id: str, bucket_id: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[DeletedByBallIdResponse, MictlanXError]:
        """P9 → ``DeletedByBallIdResponse`` (``n_deletes`` may be 0)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(ball_id, "ball_id")))
        if bad is not None:
            return bad
        return self._send("DELETE", f"/buckets/{bucket_id}/bid/{ball_id}", DeletedByBallIdResponse,
                          headers=copy_headers(headers), timeout=timeout,
                          context={"bucket_id": bucket_id, "key": ball_id})

    def disable(
        self, bucket_id: str, key: str, headers: Optional[Dict[str, str]] = None, *, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """P10 → ``True`` (also when already disabled)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("POST", f"/buckets/{bucket_id}/{key}/disable", headers=copy_headers(headers),
                          timeout=timeout, context={"bucket_id": bucket_id, "key": key})

    def get_size(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GetSizeByKey, MictlanXError]:
        """P11 → ``GetSizeByKey``."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        return self._send("GET", f"/buckets/{bucket_id}/{key}/size", GetSizeByKey, headers=copy_headers(headers),
                          timeout=timeout, context={"bucket_id": bucket_id, "key": key})

    def replicate(
        self, bucket_id: str, key: str, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None, *,
        to: Optional[str] = None,
    ) -> Result[ReplicateResponse, MictlanXError]:
        """P12: push the ball to node ``to`` (default: the best-ranked other node)."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key"),
                                 to is not None and validate_id(to, "to")))
        if bad is not None:
            return bad
        return self._send("POST", f"/buckets/{bucket_id}/{key}/replicate", ReplicateResponse,
                          params={"to": to} if to is not None else None, headers=copy_headers(headers),
                          timeout=timeout, context={"bucket_id": bucket_id, "key": key})

