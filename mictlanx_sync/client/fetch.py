"""Fetching one chunk: stream R11, verify count and SHA-256, fail over on bad copies.

A fetch reads the body into a *sink* (:mod:`.sinks`) piece by piece, straight from the
socket into the sink's memory, and hashes the very bytes it placed there. Positions are
relative to the chunk start, so a retry simply overwrites what a broken attempt wrote.
The router's ``ETag`` is the chunk's checksum and ``Content-Length`` its size
(client-api §8.6).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Union

import attrs
import requests

from ..protocol.bodies import BodyReader
from ..protocol.errors import (
    IntegrityError,
    MictlanXError,
    NotFoundError,
    UpstreamProtocolError,
    error_from_exception,
)
from ..protocol.policies import RetryPolicy
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from .engine import Engine
from .sinks import BufferSink, FileSink, Sink

__all__ = ["Sink", "BufferSink", "FileSink", "ReadOptions", "Fetched", "ChunkFetcher"]


@attrs.frozen
class ReadOptions:
    """The per-call read settings (client-api §8.6)."""

    policy: RetryPolicy
    timeout: Any
    piece_size: int
    headers: dict[str, str]
    max_parallel: int
    force: bool = False
    verify_full: bool = True

    def request_headers(self, peer_id: Optional[str] = None) -> dict[str, str]:
        headers = {**self.headers, "Accept-Encoding": "identity", "Chunk-Size": str(self.piece_size),
                   "Force-Get": "1" if self.force else "0"}
        if peer_id is not None:
            headers["Peer-Id"] = peer_id
        return headers


@attrs.frozen
class Fetched:
    size: int
    checksum: str
    peer_id: Optional[str]
    #: served from the cache and re-hashed to the checksum the version's index names
    from_index: bool = False


#: Called with the announced Content-Length; returns where the bytes go (or raises).
SinkFactory = Callable[[int], Sink]

#: What a chunk's bytes must hash to: a checksum required *in addition* to the ``ETag``, or a
#: callable consulted only when the router sends no ``ETag`` (upstream routers; §8.6 reads
#: R12 then). The callable may raise a ``MictlanXError``.
Expected = Union[None, str, Callable[[], Optional[str]]]


class ChunkFetcher:
    """Streams verified chunks through the engine's routers. Thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fetch(self, bucket_id: str, key: str, options: ReadOptions, make_sink: SinkFactory,
              expected_checksum: Expected = None) -> Result[Fetched, MictlanXError]:
        """One chunk, retried per policy; on a bad copy, the other replicas one by one."""
        result = self.engine.call(
            f"get {bucket_id}/{key}",
            lambda router: self._stream(router, bucket_id, key, options, make_sink, expected_checksum),
            policy=options.policy)
        if result.is_ok or not isinstance(result.unwrap_err(), IntegrityError):
            return result
        return self._fail_over(bucket_id, key, options, make_sink, expected_checksum, result.unwrap_err())

    def _fail_over(self, bucket_id: str, key: str, options: ReadOptions, make_sink: SinkFactory,
                   expected_checksum: Expected, error: MictlanXError) -> Result[Fetched, MictlanXError]:
        bad = {(error.detail or {}).get("peer_id")}
        replicas = self.engine.call(
            f"replicas {bucket_id}/{key}",
            lambda router: router.get_size(bucket_id, key, timeout=options.timeout), policy=options.policy)
        if replicas.is_err:
            return Err(error)
        for replica in replicas.unwrap():
            if replica.peer_id in bad:
                continue
            def pinned(router: Router, peer: str = replica.peer_id) -> Result[Fetched, MictlanXError]:
                return self._stream(router, bucket_id, key, options, make_sink, expected_checksum, peer_id=peer)

            retry = self.engine.call(f"get {bucket_id}/{key} from {replica.peer_id}", pinned, policy=options.policy)
            if retry.is_ok:
                return retry
            if not isinstance(retry.unwrap_err(), (IntegrityError, NotFoundError)):
                return retry
            bad.add(replica.peer_id)
        return Err(IntegrityError(f"{bucket_id}/{key}: every replica failed verification ({error.message})",
                                  detail={"bad_peers": sorted(p for p in bad if p)}, bucket_id=bucket_id, key=key))

    def _stream(self, router: Router, bucket_id: str, key: str, options: ReadOptions, make_sink: SinkFactory,
                expected_checksum: Expected, peer_id: Optional[str] = None) -> Result[Fetched, MictlanXError]:
        opened = router.get_streaming(bucket_id, key, timeout=options.timeout,
                                      headers=options.request_headers(peer_id))
        if opened.is_err:
            return Err(opened.unwrap_err())
        response: requests.Response = opened.unwrap()
        context = {"bucket_id": bucket_id, "key": key, "router": router.base_url()}
        try:
            return Ok(self._consume(response, options, make_sink, expected_checksum, context))
        except MictlanXError as error:
            return Err(error)
        except requests.RequestException as exc:
            return Err(error_from_exception(exc, **context))
        finally:
            response.close()

    @staticmethod
    def _consume(response: requests.Response, options: ReadOptions, make_sink: SinkFactory,
                 expected_checksum: Expected, context: dict[str, Any]) -> Fetched:
        served_by = response.headers.get("Peer-Id")
        try:
            length = int(response.headers["Content-Length"])
        except (KeyError, ValueError):
            raise UpstreamProtocolError("data answer without a valid Content-Length", **context) from None
        if length < 0:
            raise UpstreamProtocolError(f"data answer with Content-Length {length}", **context)
        fixed = expected_checksum.lower() if isinstance(expected_checksum, str) else None
        etag = response.headers.get("ETag", "").strip().strip('"').lower() or None
        if etag is None:
            etag = fixed
        if etag is None and callable(expected_checksum):  # an upstream router: no ETag
            found = expected_checksum()
            etag = found.lower() if found else None
        if etag is None:
            raise IntegrityError("data answer without an ETag: cannot verify", **context)
        sink = make_sink(length)
        reader = BodyReader(response, **context)
        hasher = hashlib.sha256()
        received = 0
        while received < length:
            view = sink.region(received, min(options.piece_size, length - received))
            got = reader.readinto(view)
            if not got:
                raise UpstreamProtocolError(f"short body: {received} of {length} bytes", **context)
            hasher.update(view[:got])  # exactly the bytes now in the sink's memory
            sink.commit(received, got)
            received += got
        if reader.readinto(memoryview(bytearray(1))):  # a chunked body may run on: never accepted
            raise UpstreamProtocolError(f"more than the announced {length} bytes", **context)
        reader.release()
        actual = hasher.hexdigest()
        if actual != etag or (fixed is not None and actual != fixed):
            raise IntegrityError(f"checksum mismatch from peer {served_by}: got {actual}, expected {etag}",
                                 detail={"peer_id": served_by, "expected": etag, "received": actual}, **context)
        return Fetched(length, actual, served_by)
