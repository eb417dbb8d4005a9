"""The write half of ``Client``: ``put``, ``put_file``, ``put_chunks``, ``put_single_chunk``
and the bulk pair ``put_bulk`` / ``await_bulk`` (client-api §8.2, §8.5).

Each method validates its arguments into a :class:`~.writes.WritePlan`, opens a chunk
source and hands both to the :class:`~.writes.Writer`; the upload itself lives there.
``Client`` inherits these methods from :class:`ClientWrites`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

from ..protocol.errors import MictlanXError, ValidationError
from ..protocol.ids import validate_id, validate_key
from ..protocol.models import BallK, BulkPutResult, Chunk, Chunks
from ..protocol.result import Err, Result
from .client_base import ClientBase, Timeout
from .content_types import content_type_for
from .layout import SINGLE_CHUNK_ALLOWED, validate_object_key, validate_tags
from .options import chunk_size_bytes, positive_int, retry_policy
from .progress import ProgressCallback, check_callback, reporting
from .sources import BytesSource, ChunkSource, FileSource, IterableSource, ListSource, check_chunk_id
from .writes import CONTENT_TYPE, WritePlan

__all__ = ["ClientWrites"]


class ClientWrites(ClientBase):
    """Writes of ``Client``: one object from bytes, a file or chunks; many in the bulk pool."""

    def _plan(self, bucket_id: str, key: str, rf: int, tags: Any, update: bool, timeout: Timeout,
              max_tries: Optional[int], max_backoff: Optional[float], max_concurrency: int,
              content_type: str = CONTENT_TYPE) -> WritePlan:
        validate_object_key(bucket_id, key)
        return WritePlan(
            bucket_id=bucket_id, key=key, rf=positive_int("rf", rf), tags=validate_tags(tags), update=bool(update),
            policy=retry_policy(self._dispatcher.retry, max_tries=max_tries, max_backoff=max_backoff),
            timeout=self._timeout(timeout), max_concurrency=positive_int("max_concurrency", max_concurrency),
            producer_id=self.client_id, content_type=content_type)

    def _put_source(self, plan: WritePlan, make_source: Any, what: str,
                    progress: Optional[ProgressCallback] = None) -> Result[bool, MictlanXError]:
        source: Optional[ChunkSource] = None
        result: Result[bool, MictlanXError]
        try:
            source = make_source()
            with reporting(self.progress, progress, f"put {plan.key}", source.size) as reporter:
                result = self._writer.put_object(plan, source, reporter)
                if result.is_ok and reporter is not None:
                    reporter.finish()
        except MictlanXError as error:
            result = Err(error)
        finally:
            if source is not None:
                source.close()
        return self._logged(what, plan.bucket_id, plan.key, result)

    def put(
        self, bucket_id: str, key: str, value: Union[bytes, bytearray, memoryview],
        chunk_size: Union[str, int] = "256kb", rf: int = 1, timeout: Timeout = None, max_tries: Optional[int] = None,
        max_concurrency: int = 10, max_backoff: Optional[float] = None, tags: Optional[Dict[str, str]] = None, *,
        update: bool = False, content_type: Optional[str] = None, progress: Optional[ProgressCallback] = None,
    ) -> Result[bool, MictlanXError]:
        """Store ``value`` as the object ``bucket_id/key``, split into ``chunk_size`` chunks.

        Idempotent: the same content again uploads nothing; other content under the key is
        ``AlreadyExistsError`` unless ``update=True``. ``content_type`` defaults to a guess
        from the key's extension (``mimetypes``), else ``application/octet-stream``. → ``Ok(True)``

        ``progress(n)`` is called with the bytes sent since its previous call; on success
        the calls add up to ``len(value)``. It runs in the client's transfer threads, one
        call at a time (see :mod:`mictlanx_sync.client.progress`).
        """
        check_callback(progress)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes-like, not {type(value).__name__}")
        if (closed := self._ready()) is not None:
            return closed
        try:
            plan = self._plan(bucket_id, key, rf, tags, update, timeout, max_tries, max_backoff, max_concurrency,
                              content_type_for(content_type, key))
            size = chunk_size_bytes(chunk_size)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: BytesSource(value, size), "put", progress)

    def put_file(
        self, bucket_id: str, key: str, path: Union[str, os.PathLike], tags: Optional[Dict[str, str]] = None,
        chunk_size: Union[str, int] = "256kb", rf: int = 1, timeout: Timeout = None, max_tries: Optional[int] = None,
        max_concurrency: Optional[int] = None, max_backoff: Optional[float] = None, *, update: bool = False,
        content_type: Optional[str] = None, progress: Optional[ProgressCallback] = None,
    ) -> Result[bool, MictlanXError]:
        """Stream a file into the object ``bucket_id/key``; memory stays within the buffer budget.

        Adds the tags ``fullname`` and ``extension`` unless given. ``content_type`` defaults
        to a guess from the file's name (``mimetypes``), else ``application/octet-stream``.
        A missing file is ``Err(LocalFileNotFoundError)``, also a ``FileNotFoundError``. → ``Ok(True)``

        ``progress(n)``: bytes sent since the previous call, adding up to the file's size
        (called from transfer threads, one call at a time), as in :meth:`put`.
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        name = os.path.basename(os.fspath(path))
        extra = {"fullname": name, "extension": os.path.splitext(name)[1].lstrip(".")}
        try:
            merged = {**extra, **validate_tags(tags)}
            plan = self._plan(bucket_id, key, rf, merged, update, timeout, max_tries, max_backoff,
                              max_concurrency or self.max_workers, content_type_for(content_type, name))
            size = chunk_size_bytes(chunk_size)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: FileSource(path, size), "put_file", progress)

    def put_chunks(
        self, bucket_id: str, key: str, chunks: Any, tags: Optional[Dict[str, str]] = None, rf: int = 1,
        timeout: Timeout = None, max_tries: Optional[int] = None, max_concurrency: Optional[int] = None,
        max_backoff: Optional[float] = None, *, update: bool = False, progress: Optional[ProgressCallback] = None,
    ) -> Result[bool, MictlanXError]:
        """Store caller-cut chunks (a ``Chunks``, or bytes / ``Chunk`` items) as chunks 0..N-1.

        ``progress(n)``: bytes sent since the previous call, adding up to the chunks' total
        size (called from transfer threads, one call at a time), as in :meth:`put`.
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        try:
            plan = self._plan(bucket_id, key, rf, tags, update, timeout, max_tries, max_backoff,
                              max_concurrency or self.max_workers)
            if isinstance(chunks, Chunks):  # lazy (from_file): two passes, never all in memory
                return self._put_source(plan, lambda: IterableSource(chunks, key), "put_chunks", progress)
            items = list(chunks)
            for i, item in enumerate(items):
                if isinstance(item, Chunk):
                    check_chunk_id(item, key, i)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: ListSource(items), "put_chunks", progress)

    def put_single_chunk(
        self, bucket_id: str, ball_id: str, chunk: Chunk, chunk_size: Any = None, rf: int = 1, timeout: Timeout = None,
        max_tries: Optional[int] = None, max_concurrency: Optional[int] = None, max_backoff: Optional[float] = None,
        tags: Optional[Dict[str, str]] = None, *, update: bool = False,
    ) -> Result[bool, MictlanXError]:
        """A raw-ball write, as upstream: key ``chunk.chunk_id`` with the tags ``index``,
        ``chunk_size``, ``group_id`` plus the user's (``num_chunks``/``full_checksum`` allowed)."""
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(ball_id, "ball_id")
            validate_key(chunk.chunk_id, "chunk_id")
            user = validate_tags(tags, allow=SINGLE_CHUNK_ALLOWED)
            plan = self._plan(bucket_id, chunk.chunk_id, rf, {}, update, timeout, max_tries, max_backoff, 1)
        except ValidationError as error:
            return Err(error)
        data = chunk.data
        chunk_tags = {**user, "index": str(chunk.index), "chunk_size": str(len(memoryview(data).cast("B"))),
                      "group_id": ball_id}
        result = self._writer.upload_chunk(plan, chunk.index, data, num_chunks=1, full_checksum=None,
                                           tags=chunk_tags)
        return result.map(lambda _written: True)

    def put_bulk(self, bulk_id: str, balls: Sequence[BallK], max_concurrency: int = 10,
                 stop_on_failure: bool = False) -> Result[bool, MictlanXError]:
        """Validate every item, then run them in the bulk pool and return at once. → ``Ok(True)``"""
        if (closed := self._ready()) is not None:
            return closed
        return self._bulk.submit(bulk_id, balls, max_concurrency, stop_on_failure)

    def await_bulk(self, bulk_id: str, remove_on_completion: bool = False,
                   timeout: Optional[float] = None) -> Result[BulkPutResult, MictlanXError]:
        """Block until the bulk job is done (``RequestTimeoutError`` after ``timeout``; it keeps running)."""
        if (closed := self._ready()) is not None:
            return closed
        return self._bulk.wait(bulk_id, remove_on_completion, timeout)
