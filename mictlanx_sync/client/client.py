"""``Client``: the blocking high-level MictlanX client (client-api §8), a thin facade.

``Client`` is one class built by composition: it turns upstream's call shapes (positional
order, aliases, ``None`` defaults) into the settings of one operation and hands it to the
component that does it, each in its own module:

- :mod:`.object_read` (``get``, ``get_to_file``, ``get_chunks``, ``get_chunk``), with its
  options made by :mod:`.read_options`;
- :mod:`.object_write` (``put``, ``put_file``, ``put_chunks``) and :mod:`.chunk_upload`
  (``put_single_chunk``), with the plan made by :mod:`.write_options`;
- :mod:`.buckets` (stat, listings, deletes) and :mod:`.bulk` (``put_bulk``, ``await_bulk``);
- beneath them, shared: :mod:`.dispatch` (every request), :mod:`.executor` (the transfer pool
  and the buffer budget), :mod:`.lifecycle` (closing, fork) and :mod:`.cache`.

>>> from mictlanx_sync import Client, LocalVSS
>>> with LocalVSS() as vss, Client(vss.uri, cache_path=None, capacity_storage="0") as client:  # doctest: +SKIP
...     client.put("bucket", "greeting", b"hello").unwrap()
...     bytes(client.get("bucket", "greeting").unwrap().data)
True
b'hello'
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Dict, Generator, Iterator, Optional, Sequence, Tuple, Union

from ..protocol.direct import DIRECT_FIRST_BYTE_TIMEOUT
from ..protocol.errors import ClientClosedError, MictlanXError, ValidationError
from ..protocol.ids import validate_id, validate_key
from ..protocol.models import (
    Ball,
    BallK,
    Bucket,
    BulkPutResult,
    Chunk,
    DeleteBucketResponse,
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetMetadataResponse,
    GetResponse,
    GetRouterBucketMetadataResponse,
    Metadata,
)
from ..protocol.policies import BreakerPolicy, RetryPolicy
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from ..protocol.timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg, resolve_timeout
from ..protocol.versions import HybridClock
from .buckets import Buckets
from .bulk import BulkRunner
from .cache import ChunkCache
from .chunk_upload import ChunkUploader
from .delete_order import guard_delete_order
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .layout import SINGLE_CHUNK_ALLOWED, validate_tags
from .lifecycle import Lifecycle
from .object_read import ObjectReader
from .object_write import ObjectWriter
from .operation import log_failure, operation
from .options import inline_limit, merge_alias, positive_int, positive_seconds, size_option
from .progress import ProgressCallback, check_callback, reporting
from .read_options import ReadOptions, read_options
from .result_buffers import ResultBuffers
from .setup import log_handlers, routers_for
from .write_options import WriteDefaults, bytes_put, chunks_put, file_put, write_plan

__all__ = ["Client"]

_DEFAULT_BREAKER = BreakerPolicy()
_DEFAULT_PARALLEL_GETS = 10
_LIST_PAGE = 1000

Timeout = TimeoutArg
Headers = Optional[Dict[str, str]]


class Client:
    """The blocking MictlanX client: chunked, parallel, retried, guarded and cached.

    **Thread safety.** One ``Client`` may be shared by every thread of a process (Flask,
    Django, thread pools); every method is thread-safe. After ``os.fork()`` the child's
    first call rebuilds sessions, pools, locks and breakers and reopens the cache.

    **Memory.** Chunk buffers in flight are bounded client-wide by ``max_workers`` x
    ``chunk_size``, whatever the number of callers; ``get`` also holds the object itself.
    ``get`` results of 8 MiB or more are reused for a later ``get`` of the same size once
    nothing refers to them any more (fresh memory costs a page fault per 4 KiB): up to
    ``result_buffer_pool`` bytes (keyword-only, a size string or int, default 256 MiB; 0
    turns it off) stay allocated for that, for at most 30 s after their ``get``, and
    ``close()`` releases them (:mod:`mictlanx_sync.client.result_buffers`).

    **Errors.** Every I/O method returns ``Ok(value)`` or ``Err(MictlanXError)``; ``unwrap()``
    raises the typed error. Only constructor arguments and ``get_chunks`` raise.

    **Small objects.** Chunks of at most ``inline_max`` bytes (keyword-only, a size string or
    int, default 64 KiB, at most 512 KiB; 0 turns it off) travel inside their metadata
    request: a small object is read in one request and written in two instead of three or
    four (docs/protocol-extensions.md). Servers without the extension get the plain protocol.

    **Large chunks skip the router.** With ``direct_reads`` (keyword-only, default True),
    chunks of 1 MiB or more are read straight from the peer the router names (a 307 the
    router sends only to clients that ask), through pooled connections and verified as
    always; a peer this process cannot reach, or that has not answered within
    ``direct_timeout`` seconds (keyword-only, default 3; connect and first byte), is read
    through the router instead (docs/protocol-extensions.md §3).

    **Authentication.** ``token`` (keyword-only) is sent as ``Authorization: Bearer <token>``
    on every request to every router; without it, the URI's ``token=`` query is used. A
    missing or wrong token gives ``AuthenticationError`` (401, never retried).

    Example::

        with Client("mictlanx://mictlanx-router-0@localhost:60666/?protocol=http") as client:
            client.put("b", "k", b"data").unwrap()
            data = client.get("b", "k").unwrap().data.tobytes()
    """

    def __init__(
        self, uri: Union[str, Sequence[Router]], client_id: Optional[str] = None, debug: bool = False,
        max_workers: int = 12, log_output_path: Optional[str] = None, log_when: str = "m", log_interval: int = 30,
        eviction_policy: str = "LRU", capacity_storage: Union[str, int] = "1GB", verify: Any = True, *,
        cache_path: Optional[str] = None, timeout: TimeoutArg = (5.0, 120.0),
        retry: Optional[RetryPolicy] = None, breaker: Optional[BreakerPolicy] = _DEFAULT_BREAKER,
        progress: Optional[bool] = None, load_balancing: str = "LEAST_INFLIGHT", log_backup_count: int = 7,
        max_bulk_workers: int = 4, token: Optional[str] = None, inline_max: Union[str, int] = "64KiB",
        direct_reads: bool = True, direct_timeout: float = DIRECT_FIRST_BYTE_TIMEOUT,
        result_buffer_pool: Union[str, int] = "256MiB",
    ) -> None:
        self.client_id = client_id if client_id is not None else f"client-{uuid.uuid4().hex[:8]}"
        self.max_workers = positive_int("max_workers", max_workers)
        self.max_bulk_workers = positive_int("max_bulk_workers", max_bulk_workers)
        self.verify = verify
        self.timeout = resolve_timeout(timeout, (DEFAULT_CONNECT_TIMEOUT, 120.0))
        self.progress = progress
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy or None")
        if breaker is not None and not isinstance(breaker, BreakerPolicy):
            raise TypeError("breaker must be a BreakerPolicy or None")
        #: chunks up to this many bytes travel inside their metadata request (0: never)
        self.inline_max = inline_limit(inline_max)
        self.logger = logging.getLogger(f"mictlanx_sync.client.{self.client_id}")
        pool_maxsize = max(16, self.max_workers + self.max_bulk_workers + 16)
        self.routers = routers_for(uri, self.timeout, verify, pool_maxsize, token)
        self._cache = ChunkCache(cache_path, capacity_storage, eviction_policy, logger=self.logger)
        # Each part has one job: the open/closed state (and what a fork rebuilds); the one way a
        # request is sent; the transfer pool with its buffer budget; then the operations.
        self._lifecycle = Lifecycle()
        self._lifecycle.on_fork(self._cache.reopen)
        self._dispatcher = Dispatcher(self.routers, retry=retry or RetryPolicy(), breaker=breaker,
                                      load_balancing=load_balancing, logger=self.logger, lifecycle=self._lifecycle)
        self._executor = BoundedExecutor(self.max_workers, self.client_id, self._lifecycle)
        clock = HybridClock()  # writes and deletes order themselves on one clock
        self._uploader = ChunkUploader(self._dispatcher, self.inline_max)
        self._writer = ObjectWriter(self._dispatcher, self._executor, self._uploader, clock, self.logger,
                                    inline_max=self.inline_max)
        self._result_buffers = ResultBuffers(size_option("result_buffer_pool", result_buffer_pool))
        self._lifecycle.on_fork(self._result_buffers.clear)
        self._reader = ObjectReader(self._dispatcher, self._executor, self._cache, self.logger,
                                    direct_reads=bool(direct_reads),
                                    direct_timeout=positive_seconds("direct_timeout", direct_timeout),
                                    buffers=self._result_buffers)
        self._buckets = Buckets(self._dispatcher, clock, self.logger)
        self._bulk = BulkRunner(self._lifecycle, self.max_bulk_workers, self.client_id, self._writer,
                                self._write_defaults(), self.progress, self.logger)
        self._handlers = log_handlers(self.logger, self.client_id, debug, log_output_path, log_when, log_interval,
                                      log_backup_count)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def cache(self) -> Any:
        """The ``diskcache.Cache`` behind the chunk cache, or ``None`` when disabled."""
        return self._cache.disk if self._cache.enabled else None

    @property
    def retry(self) -> RetryPolicy:
        """The client's retry policy (per-call arguments override it)."""
        return self._dispatcher.retry

    def breaker_state(self, router: Router) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` for one of :attr:`routers`."""
        return str(self._dispatcher.breaker(router).state)

    def close(self, wait: bool = True) -> None:
        """Stop the pools, close sessions and cache, remove this client's log handlers. Idempotent.

        Every call in flight ends at once (its sockets are shut down) with ``ClientClosedError``,
        as does every later call."""
        if not self._lifecycle.close():
            return
        self._bulk.shutdown(wait)
        self._executor.shutdown(wait)
        self._dispatcher.close()
        self._cache.close()
        self._result_buffers.clear()
        for handler in self._handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self._handlers.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.client_id!r}, routers={[r.base_url() for r in self.routers]})"

    def _ready(self) -> Optional[Err[Any, MictlanXError]]:
        """``Err(ClientClosedError)`` when closed; else ``None``, after rebuilding what a fork broke."""
        try:
            self._lifecycle.check()
        except ClientClosedError as closed:
            return Err(closed)
        return None

    def _timeout(self, timeout: Timeout) -> Tuple[float, float]:
        """A call's ``timeout`` argument as ``(connect, read)``; ``None`` is the client's."""
        return resolve_timeout(timeout, self.timeout)

    def _write_defaults(self) -> WriteDefaults:
        return WriteDefaults(self.client_id, self._dispatcher.retry, self.timeout, self.max_workers)

    # --- writes ---------------------------------------------------------------------------------
    @operation("put")
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
            plan, source = bytes_put(self._write_defaults(), bucket_id, key, value, chunk_size=chunk_size, rf=rf,
                                     timeout=timeout, max_tries=max_tries, max_concurrency=max_concurrency,
                                     max_backoff=max_backoff, tags=tags, update=update, content_type=content_type)
        except ValidationError as error:
            return Err(error)
        return self._writer.put_source(plan, source, "put", self.progress, progress)

    @operation("put_file")
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
        try:
            plan, source = file_put(self._write_defaults(), bucket_id, key, path, tags=tags, chunk_size=chunk_size,
                                    rf=rf, timeout=timeout, max_tries=max_tries, max_concurrency=max_concurrency,
                                    max_backoff=max_backoff, update=update, content_type=content_type)
        except ValidationError as error:
            return Err(error)
        return self._writer.put_source(plan, source, "put_file", self.progress, progress)

    @operation("put_chunks")
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
            plan, source = chunks_put(self._write_defaults(), bucket_id, key, chunks, tags=tags, rf=rf,
                                      timeout=timeout, max_tries=max_tries, max_concurrency=max_concurrency,
                                      max_backoff=max_backoff, update=update)
        except ValidationError as error:
            return Err(error)
        return self._writer.put_source(plan, source, "put_chunks", self.progress, progress)

    @operation("put_single_chunk")
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
            plan = write_plan(self._write_defaults(), bucket_id, chunk.chunk_id, rf=rf, tags={}, update=update,
                              timeout=timeout, max_tries=max_tries, max_backoff=max_backoff, max_concurrency=1)
        except ValidationError as error:
            return Err(error)
        data = chunk.data
        ball_tags = {**user, "index": str(chunk.index), "chunk_size": str(len(memoryview(data).cast("B"))),
                     "group_id": ball_id}
        return self._uploader.upload_raw_ball(plan, chunk.index, data, ball_tags).map(lambda _written: True)

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

    # --- reads ----------------------------------------------------------------------------------
    def _read_options(self, max_parallel: Optional[int], headers: Headers, chunk_size: Any, timeout: Timeout,
                      max_retries: Optional[int], delay: Optional[float], backoff_factor: Optional[float],
                      force: bool, max_backoff: Optional[float], max_delay: Optional[float],
                      jitter: Optional[bool], verify_full: bool) -> ReadOptions:
        return read_options(self._dispatcher.retry, self.timeout, self.inline_max, max_parallel=max_parallel,
                            headers=headers, chunk_size=chunk_size, timeout=timeout, max_retries=max_retries,
                            delay=delay, backoff_factor=backoff_factor, force=force, max_backoff=max_backoff,
                            max_delay=max_delay, jitter=jitter, verify_full=verify_full)

    @operation("get")
    def get(
        self, bucket_id: str, key: str, max_paralell_gets: Optional[int] = None, headers: Headers = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, *, verify_full: bool = True, max_parallel_gets: Optional[int] = None,
        progress: Optional[ProgressCallback] = None,
    ) -> Result[GetResponse, MictlanXError]:
        """Read the object ``bucket_id/key`` into memory, every chunk and the whole verified.

        ``chunk_index=-1`` reads the single ball ``key`` instead. → ``Ok(GetResponse)``

        Most callers need only ``bucket_id``, ``key`` and perhaps ``timeout``. Parallelism is
        ``max_parallel_gets`` (upstream's spelling ``max_paralell_gets`` is accepted too);
        retries are ``max_retries``, ``delay``, ``backoff_factor``, ``max_delay`` (alias
        ``max_backoff``) and ``jitter``; ``force`` skips the chunk cache. Accepted for
        upstream compatibility and ignored: ``http2`` (always HTTP/1.1) and ``chunk_index``
        values other than 0 and -1.

        ``progress(n)`` is called with the bytes received since its previous call; on
        success the calls add up to the object's size. It runs in the client's transfer
        threads, one call at a time (see :mod:`mictlanx_sync.client.progress`).
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(key, "key")
            options = self._read_options(_parallel(max_paralell_gets, max_parallel_gets), headers, chunk_size,
                                         timeout, max_retries, delay, backoff_factor, force, max_backoff, max_delay,
                                         jitter, verify_full)
        except ValidationError as error:
            return Err(error)
        with reporting(self.progress, progress, f"get {key}") as reporter:
            result = self._reader.get(bucket_id, key, options, single=chunk_index == -1, progress=reporter)
            if result.is_ok and reporter is not None:
                reporter.finish()
        return log_failure(self.logger, "get", bucket_id, key, result)

    @operation("get_to_file")
    def get_to_file(
        self, bucket_id: str, ball_id: str, output_path: str = "", fullname: str = "",
        max_paralell_gets: Optional[int] = None, headers: Headers = None, chunk_size: Any = "256kb",
        timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None, delay: Optional[float] = None,
        backoff_factor: Optional[float] = None, force: bool = False, chunk_index: int = 0,
        max_delay: Optional[float] = None, jitter: Optional[bool] = None, *, overwrite: bool = False,
        verify_full: bool = True, max_parallel_gets: Optional[int] = None, progress: Optional[ProgressCallback] = None,
    ) -> Result[str, MictlanXError]:
        """Download the object into ``output_path`` through a ``.part`` file; → ``Ok(path)``.

        A same-content file already there is kept; other content is ``AlreadyExistsError``
        unless ``overwrite=True``. No partial file is ever left behind. Options as in
        :meth:`get`; ``http2`` and ``chunk_index`` are accepted for upstream compatibility
        and ignored (the whole object is always written).

        ``progress(n)``: bytes received since the previous call, adding up to the object's
        size on success (a same-content file already there counts as one call); called
        from transfer threads, one call at a time, as in :meth:`get`.
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(ball_id, "ball_id")
            options = self._read_options(_parallel(max_paralell_gets, max_parallel_gets), headers, chunk_size,
                                         timeout, max_retries, delay, backoff_factor, force, None, max_delay, jitter,
                                         verify_full)
        except ValidationError as error:
            return Err(error)
        with reporting(self.progress, progress, f"get {ball_id}") as reporter:
            result = self._reader.get_to_file(bucket_id, ball_id, output_path, fullname, options, overwrite, reporter)
            if result.is_ok and reporter is not None:
                reporter.finish()
        return log_failure(self.logger, "get_to_file", bucket_id, ball_id, result)

    def get_chunks(
        self, bucket_id: str, key: str, max_parallel_gets: int = 10, headers: Headers = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, order: bool = False, *, verify_full: bool = True,
    ) -> Generator[Tuple[Metadata, memoryview], None, None]:
        """A generator of verified ``(Metadata, memoryview)`` chunks; raises typed errors.

        ``order=True`` yields in index order (and checks ``full_checksum`` after the last).
        Each chunk in flight holds one buffer of the client-wide budget, as every transfer's.
        """
        self._lifecycle.check()  # ClientClosedError once closed
        validate_id(bucket_id, "bucket_id")
        validate_key(key, "key")
        options = self._read_options(max_parallel_gets, headers, chunk_size, timeout, max_retries, delay,
                                     backoff_factor, force, max_backoff, max_delay, jitter, verify_full)
        return self._reader.iter_chunks(bucket_id, key, options, order)

    @operation("get_chunk")
    def get_chunk(
        self, bucket_id: str, ball_id: str, index: int, max_parallel_gets: int = 10, headers: Headers = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, max_delay: Optional[float] = None, jitter: Optional[bool] = None,
    ) -> Result[Tuple[Chunk, Metadata], MictlanXError]:
        """One chunk ``{ball_id}_{index}``, verified against its checksum. → ``Ok((Chunk, Metadata))``"""
        if (closed := self._ready()) is not None:
            return closed
        key = f"{ball_id}_{index}"
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(key, "key")
            options = self._read_options(max_parallel_gets, headers, chunk_size, timeout, max_retries, delay,
                                         backoff_factor, force, max_backoff, max_delay, jitter, True)
        except ValidationError as error:
            return Err(error)
        got = self._reader.get(bucket_id, key, options, single=True)
        if got.is_err:
            return Err(got.unwrap_err())
        response = got.unwrap()
        meta = response.metadatas[0]
        return Ok((Chunk(ball_id, index, response.data.tobytes(), chunk_id=key, checksum=meta.checksum), meta))

    # --- stat and listings ----------------------------------------------------------------------
    @operation("get_metadata_by_key")
    def get_metadata_by_key(self, bucket_id: str, key: str, timeout: Timeout = None, headers: Headers = None,
                            retry_policy: Optional[RetryPolicy] = None) -> Result[GetMetadataResponse, MictlanXError]:
        """R3: the metadata of one ball. → ``Ok(GetMetadataResponse)``"""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.stat(bucket_id, key, self._timeout(timeout), headers, retry_policy)

    @operation("get_metadata")
    def get_metadata(self, bucket_id: str, ball_id: str, timeout: Timeout = None, headers: Headers = None,
                     restart_policy: Optional[RetryPolicy] = None, *,
                     retry_policy: Optional[RetryPolicy] = None) -> Result[Ball, MictlanXError]:
        """R12: an object's chunks as a ``Ball``; ``NotFoundError`` when it has none."""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.ball(bucket_id, ball_id, self._timeout(timeout), headers, restart_policy or retry_policy)

    @operation("get_chunks_by_bucket_id")
    def get_chunks_by_bucket_id(self, bucket_id: str, timeout: Timeout = None, headers: Headers = None,
                                ) -> Result[GetRouterBucketMetadataResponse, MictlanXError]:
        """R2 on one router, every page, deduplicated by key."""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.list_bucket(bucket_id, self._timeout(timeout), headers)

    @operation("get_bucket_metadata")
    def get_bucket_metadata(self, bucket_id: str, timeout: Timeout = None,
                            headers: Headers = None) -> Result[Bucket, MictlanXError]:
        """R2 grouped by ``ball_id``. → ``Ok(Bucket)``"""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.bucket(bucket_id, self._timeout(timeout), headers)

    def iter_objects(self, bucket_id: str, page_size: int = _LIST_PAGE, timeout: Timeout = None,
                     headers: Headers = None) -> Iterator[Ball]:
        """Every object of the bucket as a ``Ball``, one R2 page of ``page_size`` chunk keys at a time.

        Unlike :meth:`get_bucket_metadata`, which holds the whole bucket, this holds one page
        plus the few objects that may still have chunks on the next page, so a bucket of
        millions of objects is walked in bounded memory. Pages are keyset pages
        (``after`` = the page's last chunk key, sorted as strings) on one router; each object
        is yielded once, whole, when the walk has passed every key it can have (its chunks
        ``{key}_{i}`` may span pages, and other objects' keys sort between them). Objects
        come in the order their keys' ranges close, close to sorted by key. As every listing,
        it shows committed versions only (docs/consistency.md).

        A lazy iterator: arguments are checked at the call, requests happen as you iterate,
        and a failed page raises its typed error (``MictlanXError``) from ``next()``. A ball
        written with ``put_single_chunk`` under keys not starting with ``{ball_id}_`` is
        yielded per run of adjacent keys. Objects written or deleted during the walk may or
        may not appear, as with any keyset listing.

        Example::

            for ball in client.iter_objects("photos", page_size=500):
                print(ball.ball_id, ball.size)
        """
        self._lifecycle.check()  # ClientClosedError once closed
        validate_id(bucket_id, "bucket_id")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValidationError(f"page_size must be a positive int, not {page_size!r}")
        return self._buckets.walk_objects(bucket_id, page_size, self._timeout(timeout), headers)

    # --- deletes --------------------------------------------------------------------------------
    @guard_delete_order
    @operation("delete")
    def delete(self, ball_id: str, bucket_id: str, timeout: Timeout = None, force: bool = True,
               headers: Headers = None) -> Result[DeletedByBallIdResponse, MictlanXError]:
        """R14: delete every chunk of the object ``ball_id`` (idempotent). → ``Ok(DeletedByBallIdResponse)``

        The delete is a versioned tombstone on every peer (docs/consistency.md §3.3): it
        removes the versions written before it and never a write ordered after it."""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.delete_ball(ball_id, bucket_id, self._timeout(timeout), force, headers)

    @guard_delete_order
    @operation("delete_by_key")
    def delete_by_key(self, key: str, bucket_id: str, timeout: Timeout = None, force: bool = True,
                      headers: Headers = None) -> Result[DeletedByKeyResponse, MictlanXError]:
        """R13: delete one ball; a missing key is ``Ok`` with ``n_deletes=0``."""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.delete_key(key, bucket_id, self._timeout(timeout), force, headers)

    @operation("delete_bucket")
    def delete_bucket(self, bucket_id: str, headers: Headers = None, timeout: Timeout = None,
                      force: bool = True) -> Result[DeleteBucketResponse, MictlanXError]:
        """List the whole bucket (disabled balls included), then R14 once per ``ball_id``."""
        if (closed := self._ready()) is not None:
            return closed
        return self._buckets.delete_bucket(bucket_id, headers, self._timeout(timeout), force)


def _parallel(upstream: Optional[int], alias: Optional[int]) -> int:
    """``max_paralell_gets`` and its alias ``max_parallel_gets``; ``None`` means "not given"
    (default 10), so ``max_parallel_gets=2`` alone is not a disagreement."""
    parallel = merge_alias("max_paralell_gets", upstream, "max_parallel_gets", alias)
    return _DEFAULT_PARALLEL_GETS if parallel is None else parallel
