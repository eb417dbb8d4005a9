"""``Peer``: a blocking client of one storage peer (client-api §6, endpoints P1–P23).

It mirrors upstream's ``AsyncPeer`` method by method; every method returns ``Result``.

>>> with Peer("mictlanx-peer-0", "127.0.0.1", 25000) as peer:   # doctest: +SKIP
...     meta = peer.put_metadata("k", 2, sha256(b"hi"), "me", "text/plain", "k", "b").unwrap()
...     peer.put_chunked(meta.task_id, b"hi").unwrap()
...     peer.get_streaming("b", "k").unwrap().content
b'hi'
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from typing import Any, Dict, List, Optional

import requests

from .errors import (
    IntegrityError,
    LocalStorageError,
    MictlanXError,
    ResponseFormatError,
    UpstreamProtocolError,
    ValidationError,
    error_from_exception,
)
from .ids import validate_id, validate_key, validate_task_id
from .models import (
    BallBasicData,
    BallsLenResponse,
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetBucketMetadataResponse,
    GetMetadataResponse,
    GetSizeByKey,
    GetUFSResponse,
    GroupedBallResponse,
    Metadata,
    PeerCurrentState,
    PeerHealthResponse,
    PeerPutChunkedResponse,
    PeerPutMetadataResponse,
    PeerStatsResponse,
    ReplicateResponse,
    StoragePeerResponse,
    parse_as,
)
from .result import Err, Ok, Result
from .retrying import retry_with_upstream_options
from .sizes import clamp, parse_size
from .transport import (
    DEFAULT_CONNECT_TIMEOUT,
    Body,
    ServiceClient,
    TimeoutArg,
    copy_headers,
    make_error,
    multipart_body,
    ok_value,
    parse_body,
    stream_body,
    validated,
)

__all__ = ["Peer", "R", "download_to_file", "if_match_value", "paging_params"]

R = Result[Any, MictlanXError]
MIN_PIECE = 64 * 1024
MAX_PIECE = 8 * 1024 * 1024


def if_match_value(checksum: Optional[str]) -> Optional[str]:
    """``If-Match`` header value: the checksum quoted once."""
    if checksum is None:
        return None
    return checksum if checksum.startswith('"') else f'"{checksum}"'


def paging_params(start: int = 0, end: int = 0, after: Optional[str] = None,
                  include_disabled: bool = False) -> Dict[str, Any]:
    """Query parameters of §P2.7: ``end`` only when > 0, ``after`` only when given."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    params: Dict[str, Any] = {"start": start}
    if end > 0:
        params["end"] = end
    if after is not None:
        params["after"] = after
    if include_disabled:
        params["include_disabled"] = "1"
    return params


def _validate_after_composite(after: Optional[str]) -> None:
    if after is None:
        return
    if not isinstance(after, str) or "@" not in after:
        raise ValidationError(f"invalid after: {after!r} (expected 'bucket_id@key')")
    bucket_id, key = after.split("@", 1)
    validate_id(bucket_id, "after bucket_id")
    validate_id(key, "after key")


def _etag_checksum(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"').lower() or None


def download_to_file(
    response: requests.Response, target: str, piece_size: int, **context: Optional[str],
) -> Result[str, MictlanXError]:
    """Write a streaming response to ``target`` through a temporary file and an atomic rename.

    The byte count is checked against ``Content-Length`` and the SHA-256 against the
    ``ETag`` (for a full 200 answer). The temporary file is removed on any failure or
    interrupt; the response is closed.
    """
    directory = os.path.dirname(target) or "."
    name = os.path.basename(target)
    tmp_path: Optional[str] = None
    try:
        with response:
            try:
                os.makedirs(directory, exist_ok=True)
                fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
            except OSError as exc:
                err = make_error(LocalStorageError, f"cannot create a file in {directory}: {exc}", context)
                err.__cause__ = exc
                return Err(err)
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as sink:
                for piece in response.iter_content(piece_size):
                    sink.write(piece)
                    digest.update(piece)
                    received += len(piece)
                sink.flush()
                os.fsync(sink.fileno())
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != received:
                return Err(make_error(
                    UpstreamProtocolError, f"short body: received {received} of {declared} bytes", context))
            expected = _etag_checksum(response.headers.get("ETag"))
            if response.status_code == 200 and expected is not None and expected != digest.hexdigest():
                return Err(make_error(
                    IntegrityError, f"checksum mismatch: expected {expected}, received {digest.hexdigest()}", context))
            os.replace(tmp_path, target)
            tmp_path = None
            return Ok(target)
    except Exception as exc:
        return Err(error_from_exception(exc, **context))
    finally:
        if tmp_path is not None:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass


def piece_size_of(chunk_size: Any) -> int:
    """The ``iter_content`` piece size for a ``chunk_size`` argument, clamped to 64 KiB–8 MiB."""
    return clamp(parse_size(chunk_size), MIN_PIECE, MAX_PIECE)


class Peer(ServiceClient):
    """A storage peer at ``protocol://ip_addr:port{path_prefix}``.

    One pooled ``requests.Session`` (cookies off, no adapter retries, a pool that never
    blocks forever); safe to share between threads; rebuilt after ``fork``. Use
    ``close()`` or ``with``.
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
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Accept-Encoding", "identity")
        return self._send("GET", f"/buckets/{bucket_id}/{key}", headers=hdrs, timeout=timeout, verify=verify,
                          stream=True, context={"bucket_id": bucket_id, "key": key})

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

    # -- P13–P18: stats and inventory ----------------------------------------------------
    def get_stats(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, include_disabled: bool = False,
    ) -> Result[PeerStatsResponse, MictlanXError]:
        """P13 → ``PeerStatsResponse`` (the peer defaults an absent ``end`` to 100)."""
        return self._send("GET", "/stats", PeerStatsResponse, params=paging_params(start, end, None, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    def get_ufs(
        self, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GetUFSResponse, MictlanXError]:
        """P14 → ``GetUFSResponse``."""
        return self._send("GET", "/stats/ufs", GetUFSResponse, headers=copy_headers(headers), timeout=timeout)

    def get_ufs_with_retry(
        self, timeout: TimeoutArg = 60, headers: Optional[Dict[str, str]] = None, tries: int = 100,
        delay: float = 1, max_delay: float = 5, jitter: bool = False, backoff: float = 1,
        logger: Optional[logging.Logger] = None,
    ) -> Result[GetUFSResponse, MictlanXError]:
        """P14 retried (``tries`` total attempts) on transport errors and 5xx; the last result."""
        return retry_with_upstream_options(lambda: self.get_ufs(timeout, headers), tries=tries, delay=delay,
                                           max_delay=max_delay, jitter=jitter, backoff=backoff, logger=logger,
                                           describe=f"get_ufs {self.base_url()}")

    def get_balls(
        self, start: int = 0, end: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, *,
        after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[List[BallBasicData], MictlanXError]:
        """P15 → ``List[BallBasicData]``; ``after`` is ``"bucket_id@key"``."""
        bad = validated(lambda: _validate_after_composite(after))
        if bad is not None:
            return bad
        return self._send("GET", "/xballs", List[BallBasicData],
                          params=paging_params(start, end, after, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    def get_all_ball_sizes(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[List[BallBasicData], MictlanXError]:
        """P16 (``[[bucket_id, key, size]]``) → ``List[BallBasicData]``."""
        bad = validated(lambda: _validate_after_composite(after))
        if bad is not None:
            return bad
        result = self._send("GET", "/xballs/size", List[List[Any]],
                            params=paging_params(start, end, after, include_disabled),
                            headers=copy_headers(headers), timeout=timeout)
        if isinstance(result, Err):
            return result
        rows = ok_value(result)
        try:
            out = []
            for row in rows:
                if len(row) != 3:
                    raise ResponseFormatError(f"expected [bucket_id, key, size], got {row!r}")
                out.append(parse_as(BallBasicData, {"bucket_id": row[0], "key": row[1], "size": row[2]}))
            return Ok(out)
        except ResponseFormatError as exc:
            return Err(exc)

    def get_balls_len(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, *, include_disabled: bool = False,
    ) -> Result[int, MictlanXError]:
        """P17 → ``int``."""
        result = self._send("GET", "/balls/len", BallsLenResponse,
                            params={"include_disabled": "1"} if include_disabled else None,
                            headers=copy_headers(headers), timeout=timeout)
        return Ok(ok_value(result).len) if isinstance(result, Ok) else result

    def get_state(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, include_disabled: bool = False,
    ) -> Result[PeerCurrentState, MictlanXError]:
        """P18 → ``PeerCurrentState``."""
        return self._send("GET", "/peers/state", PeerCurrentState,
                          params=paging_params(start, end, None, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    # -- P19–P21, P23: administration ----------------------------------------------------
    def add_peer(
        self, id: str, disk: int, memory: int, ip_addr: str, port: int, weight: float, used_disk: int = 0,
        used_memory: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 3600, *,
        protocol: Optional[str] = None,
    ) -> Result[StoragePeerResponse, MictlanXError]:
        """P19: register a node → ``StoragePeerResponse``."""
        bad = validated(lambda: validate_id(id, "id"))
        if bad is not None:
            return bad
        body: Dict[str, Any] = {"id": id, "disk": disk, "memory": memory, "ip_addr": ip_addr, "port": port,
                                "weight": weight, "used_disk": used_disk, "used_memory": used_memory}
        if protocol is not None:
            body["protocol"] = protocol
        return self._send("POST", "/nodes", StoragePeerResponse, json_body=body, headers=copy_headers(headers),
                          timeout=timeout)

    def add_peer_with_retry(
        self, id: str, disk: int, memory: int, ip_addr: str, port: int, weight: float, used_disk: int = 0,
        used_memory: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 3600,
        tries: int = 100, delay: float = 1, max_delay: float = 5, jitter: bool = False, backoff: float = 1,
        logger: Optional[logging.Logger] = None, *, protocol: Optional[str] = None,
    ) -> Result[StoragePeerResponse, MictlanXError]:
        """P19 retried like :meth:`get_ufs_with_retry`."""
        return retry_with_upstream_options(
            lambda: self.add_peer(id, disk, memory, ip_addr, port, weight, used_disk, used_memory, headers, timeout,
                                  protocol=protocol),
            tries=tries, delay=delay, max_delay=max_delay, jitter=jitter, backoff=backoff, logger=logger,
            describe=f"add_peer {self.base_url()}")

    def flush_tasks(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """P20: drop every pending task → ``True``."""
        return self._send("DELETE", "/tasks", headers=copy_headers(headers), timeout=timeout)

    def cancel_task(
        self, task_id: str, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """P23: cancel one pending task → ``True`` (404 when unknown)."""
        bad = validated(lambda: validate_task_id(task_id))
        if bad is not None:
            return bad
        return self._send("DELETE", f"/tasks/{task_id}", headers=copy_headers(headers), timeout=timeout)

    def health(self, timeout: TimeoutArg = 5) -> Result[PeerHealthResponse, MictlanXError]:
        """P21 → ``PeerHealthResponse``."""
        return self._send("GET", "/health", PeerHealthResponse, api=False, timeout=timeout)


def _get_to_file(
    service: Any, bucket_id: str, key: str, chunk_size: Any, sink_folder_path: str, timeout: TimeoutArg,
    filename: str, headers: Optional[Dict[str, str]], extension: str,
) -> Result[str, MictlanXError]:
    """``get_to_file`` of ``Peer`` and ``Router``."""
    bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
    if bad is not None:
        return bad
    try:
        piece = piece_size_of(chunk_size)
    except ValidationError as exc:
        return Err(exc)
    name = os.path.basename(filename or "")
    if name in ("", ".", ".."):
        name = hashlib.sha256(f"{bucket_id}@{key}".encode()).hexdigest()
    if extension:
        name = f"{name}.{extension.lstrip('.')}"
    target = os.path.join(sink_folder_path or ".", name)
    result = service.get_streaming(bucket_id, key, timeout, headers)
    if isinstance(result, Err):
        return result
    return download_to_file(ok_value(result), target, piece, bucket_id=bucket_id, key=key,
                            router=service._error_context().get("router"))

