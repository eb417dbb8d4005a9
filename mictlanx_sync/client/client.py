"""``Client``: the blocking high-level MictlanX client (client-api §8).

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
import threading
import time
import uuid
from logging.handlers import TimedRotatingFileHandler
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple, Union

from ..protocol import uri as uri_module
from ..protocol.errors import MictlanXError, NotFoundError, ValidationError
from ..protocol.ids import validate_id, validate_key
from ..protocol.models import (
    Ball,
    BallK,
    Bucket,
    BulkPutResult,
    Chunk,
    Chunks,
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
from .bulk import BulkRunner
from .cache import ChunkCache
from .engine import Engine
from .fetch import ReadOptions
from .layout import SINGLE_CHUNK_ALLOWED, validate_object_key, validate_tags
from .options import chunk_size_bytes, merge_alias, piece_size, positive_int, retry_policy
from .progress import progress_bar
from .reads import Reader
from .sources import BytesSource, ChunkSource, FileSource, IterableSource, ListSource, check_chunk_id
from .writes import WritePlan, Writer

__all__ = ["Client"]

Timeout = Union[None, float, Tuple[float, float]]
_DEFAULT_BREAKER = BreakerPolicy()
_LIST_PAGE = 1000


class Client:
    """The blocking MictlanX client: chunked, parallel, retried, guarded and cached.

    **Thread safety.** One ``Client`` may be shared by every thread of a process (Flask,
    Django, thread pools); every method is thread-safe. After ``os.fork()`` the child's
    first call rebuilds sessions, pools, locks and breakers and reopens the cache.

    **Memory.** Chunk buffers in flight are bounded client-wide by ``max_workers`` x
    ``chunk_size``, whatever the number of callers; ``get`` also holds the object itself.

    **Errors.** Every I/O method returns ``Ok(value)`` or ``Err(MictlanXError)``; ``unwrap()``
    raises the typed error. Only constructor arguments and ``get_chunks`` raise.

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
        cache_path: Optional[str] = None, timeout: Tuple[float, float] = (5.0, 120.0),
        retry: Optional[RetryPolicy] = None, breaker: Optional[BreakerPolicy] = _DEFAULT_BREAKER,
        progress: Optional[bool] = None, load_balancing: str = "LEAST_INFLIGHT", log_backup_count: int = 7,
        max_bulk_workers: int = 4, token: Optional[str] = None,
    ) -> None:
        self.client_id = client_id if client_id is not None else f"client-{uuid.uuid4().hex[:8]}"
        self.max_workers = positive_int("max_workers", max_workers)
        self.max_bulk_workers = positive_int("max_bulk_workers", max_bulk_workers)
        self.verify = verify
        self.timeout = _timeout_pair(timeout)
        self.progress = progress
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy or None")
        if breaker is not None and not isinstance(breaker, BreakerPolicy):
            raise TypeError("breaker must be a BreakerPolicy or None")
        self.logger = logging.getLogger(f"mictlanx_sync.client.{self.client_id}")
        self._handlers: list[logging.Handler] = []
        pool_maxsize = max(16, self.max_workers + self.max_bulk_workers + 16)
        self.routers: List[Router] = _routers(uri, self.timeout, verify, pool_maxsize, token)
        self._cache = ChunkCache(cache_path, capacity_storage, eviction_policy, logger=self.logger)
        self._engine = Engine(
            self.routers, retry=retry or RetryPolicy(), breaker=breaker, load_balancing=load_balancing,
            max_workers=self.max_workers, max_bulk_workers=self.max_bulk_workers, cache=self._cache,
            logger=self.logger, name=self.client_id)
        self._writer = Writer(self._engine, self.logger)
        self._reader = Reader(self._engine, self.logger)
        self._bulk = BulkRunner(self._engine, self)
        self._closed = False
        self._close_lock = threading.Lock()
        self._configure_logging(debug, log_output_path, log_when, log_interval, log_backup_count)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def cache(self) -> Any:
        """The ``diskcache.Cache`` behind the chunk cache, or ``None`` when disabled."""
        return self._cache.disk if self._cache.enabled else None

    @property
    def retry(self) -> RetryPolicy:
        return self._engine.retry

    def breaker_state(self, router: Router) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` for one of :attr:`routers`."""
        return str(self._engine.balancer.breaker(router).state)

    def close(self, wait: bool = True) -> None:
        """Stop the pools, close sessions and cache, remove this client's log handlers. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._engine.shutdown(wait)
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

    def _configure_logging(self, debug: bool, path: Optional[str], when: str, interval: int, backups: int) -> None:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        if debug:
            handler: logging.Handler = logging.StreamHandler()
            handler.setLevel(logging.DEBUG)
            self.logger.setLevel(logging.DEBUG)
            self._handlers.append(handler)
        if path is not None:
            os.makedirs(path, mode=0o755, exist_ok=True)
            handler = TimedRotatingFileHandler(os.path.join(path, f"{self.client_id}.log"), when=when,
                                               interval=interval, backupCount=backups, delay=True)
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO)
            self._handlers.append(handler)
        for handler in self._handlers:
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)

    def _ready(self) -> Optional[Err[Any, MictlanXError]]:
        if self._closed:
            return Err(ValidationError("client is closed"))
        self._engine.check_process()
        return None

    def _logged(self, operation: str, bucket_id: Any, key: Any, result: Any) -> Any:
        """ERROR once per operation that ends in ``Err`` (client-api §8.4); returns ``result``.

        Only when logging is configured (a handler exists for this logger or an ancestor):
        an unconfigured application never gets these lines from logging's last-resort
        stderr handler; it sees the ``Err`` it was returned.
        """
        if isinstance(result, Err) and self.logger.hasHandlers():
            error = result.unwrap_err()
            self.logger.error("%s bucket=%s key=%s failed: %s", operation, bucket_id, key,
                              " ".join(str(error).split())[:500])
        return result

    def _timeout(self, timeout: Timeout) -> Tuple[float, float]:
        return self.timeout if timeout is None else _timeout_pair(timeout)

    # --- writes --------------------------------------------------------------------------------
    def _plan(self, bucket_id: str, key: str, rf: int, tags: Any, update: bool, timeout: Timeout,
              max_tries: Optional[int], max_backoff: Optional[float], max_concurrency: int) -> WritePlan:
        validate_object_key(bucket_id, key)
        return WritePlan(
            bucket_id=bucket_id, key=key, rf=positive_int("rf", rf), tags=validate_tags(tags), update=bool(update),
            policy=retry_policy(self._engine.retry, max_tries=max_tries, max_backoff=max_backoff),
            timeout=self._timeout(timeout), max_concurrency=positive_int("max_concurrency", max_concurrency),
            producer_id=self.client_id)

    def _put_source(self, plan: WritePlan, make_source: Any, what: str) -> Result[bool, MictlanXError]:
        source: Optional[ChunkSource] = None
        result: Result[bool, MictlanXError]
        try:
            source = make_source()
            with progress_bar(self.progress, source.size, f"put {plan.key}", "B") as advance:
                result = self._writer.put_object(plan, source, advance)
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
        update: bool = False,
    ) -> Result[bool, MictlanXError]:
        """Store ``value`` as the object ``bucket_id/key``, split into ``chunk_size`` chunks.

        Idempotent: the same content again uploads nothing; other content under the key is
        ``AlreadyExistsError`` unless ``update=True``. → ``Ok(True)``
        """
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes-like, not {type(value).__name__}")
        if (closed := self._ready()) is not None:
            return closed
        try:
            plan = self._plan(bucket_id, key, rf, tags, update, timeout, max_tries, max_backoff, max_concurrency)
            size = chunk_size_bytes(chunk_size)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: BytesSource(value, size), "put")

    def put_file(
        self, bucket_id: str, key: str, path: Union[str, os.PathLike], tags: Optional[Dict[str, str]] = None,
        chunk_size: Union[str, int] = "256kb", rf: int = 1, timeout: Timeout = None, max_tries: Optional[int] = None,
        max_concurrency: Optional[int] = None, max_backoff: Optional[float] = None, *, update: bool = False,
    ) -> Result[bool, MictlanXError]:
        """Stream a file into the object ``bucket_id/key``; memory stays within the buffer budget.

        Adds the tags ``fullname`` and ``extension`` unless given. → ``Ok(True)``
        """
        if (closed := self._ready()) is not None:
            return closed
        name = os.path.basename(os.fspath(path))
        extra = {"fullname": name, "extension": os.path.splitext(name)[1].lstrip(".")}
        try:
            merged = {**extra, **validate_tags(tags)}
            plan = self._plan(bucket_id, key, rf, merged, update, timeout, max_tries, max_backoff,
                              max_concurrency or self.max_workers)
            size = chunk_size_bytes(chunk_size)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: FileSource(path, size), "put_file")

    def put_chunks(
        self, bucket_id: str, key: str, chunks: Any, tags: Optional[Dict[str, str]] = None, rf: int = 1,
        timeout: Timeout = None, max_tries: Optional[int] = None, max_concurrency: Optional[int] = None,
        max_backoff: Optional[float] = None, *, update: bool = False,
    ) -> Result[bool, MictlanXError]:
        """Store caller-cut chunks (a ``Chunks``, or bytes / ``Chunk`` items) as chunks 0..N-1."""
        if (closed := self._ready()) is not None:
            return closed
        try:
            plan = self._plan(bucket_id, key, rf, tags, update, timeout, max_tries, max_backoff,
                              max_concurrency or self.max_workers)
            if isinstance(chunks, Chunks):  # lazy (from_file): two passes, never all in memory
                return self._put_source(plan, lambda: IterableSource(chunks, key), "put_chunks")
            items = list(chunks)
            for i, item in enumerate(items):
                if isinstance(item, Chunk):
                    check_chunk_id(item, key, i)
        except ValidationError as error:
            return Err(error)
        return self._put_source(plan, lambda: ListSource(items), "put_chunks")

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
        from .writes import _Sent
        result = self._writer.upload_chunk(plan, chunk.index, data, num_chunks=1, full_checksum=None, sent=_Sent(),
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

    # --- reads ---------------------------------------------------------------------------------
    def _read_options(self, max_parallel: Optional[int], headers: Optional[Dict[str, str]], chunk_size: Any,
                      timeout: Timeout, max_retries: Optional[int], delay: Optional[float],
                      backoff_factor: Optional[float], force: bool, max_backoff: Optional[float],
                      max_delay: Optional[float], jitter: Optional[bool], verify_full: bool) -> ReadOptions:
        if headers is not None and not isinstance(headers, dict):
            raise TypeError("headers must be a dict")
        policy = retry_policy(self._engine.retry, max_retries=max_retries, delay=delay, backoff_factor=backoff_factor,
                              max_delay=max_delay, max_backoff=max_backoff, jitter=jitter)
        return ReadOptions(policy=policy, timeout=self._timeout(timeout), piece_size=piece_size(chunk_size),
                           headers=dict(headers or {}), max_parallel=positive_int("max_paralell_gets", max_parallel),
                           force=bool(force), verify_full=bool(verify_full))

    def get(
        self, bucket_id: str, key: str, max_paralell_gets: Optional[int] = 10, headers: Optional[Dict[str, str]] = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, *, verify_full: bool = True, max_parallel_gets: Optional[int] = None,
    ) -> Result[GetResponse, MictlanXError]:
        """Read the object ``bucket_id/key`` into memory, every chunk and the whole verified.

        ``chunk_index=-1`` reads the single ball ``key`` instead. → ``Ok(GetResponse)``
        """
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(key, "key")
            parallel = merge_alias("max_paralell_gets", max_paralell_gets, "max_parallel_gets", max_parallel_gets)
            options = self._read_options(parallel, headers, chunk_size, timeout, max_retries, delay, backoff_factor,
                                         force, max_backoff, max_delay, jitter, verify_full)
        except ValidationError as error:
            return Err(error)
        with progress_bar(self.progress, None, f"get {key}", "B") as advance:
            result = self._reader.get(bucket_id, key, options, single=chunk_index == -1, progress=advance)
        return self._logged("get", bucket_id, key, result)

    def get_to_file(
        self, bucket_id: str, ball_id: str, output_path: str = "", fullname: str = "",
        max_paralell_gets: Optional[int] = 10, headers: Optional[Dict[str, str]] = None, chunk_size: Any = "256kb",
        timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None, delay: Optional[float] = None,
        backoff_factor: Optional[float] = None, force: bool = False, chunk_index: int = 0,
        max_delay: Optional[float] = None, jitter: Optional[bool] = None, *, overwrite: bool = False,
        verify_full: bool = True, max_parallel_gets: Optional[int] = None,
    ) -> Result[str, MictlanXError]:
        """Download the object into ``output_path`` through a ``.part`` file; → ``Ok(path)``.

        A same-content file already there is kept; other content is ``AlreadyExistsError``
        unless ``overwrite=True``. No partial file is ever left behind.
        """
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(ball_id, "ball_id")
            parallel = merge_alias("max_paralell_gets", max_paralell_gets, "max_parallel_gets", max_parallel_gets)
            options = self._read_options(parallel, headers, chunk_size, timeout, max_retries, delay, backoff_factor,
                                         force, None, max_delay, jitter, verify_full)
        except ValidationError as error:
            return Err(error)
        with progress_bar(self.progress, None, f"get {ball_id}", "B") as advance:
            result = self._reader.get_to_file(bucket_id, ball_id, output_path, fullname, options, overwrite, advance)
        return self._logged("get_to_file", bucket_id, ball_id, result)

    def get_chunks(
        self, bucket_id: str, key: str, max_parallel_gets: int = 10, headers: Optional[Dict[str, str]] = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, order: bool = False, *, verify_full: bool = True,
    ) -> Generator[Tuple[Metadata, memoryview], None, None]:
        """A generator of verified ``(Metadata, memoryview)`` chunks; raises typed errors.

        ``order=True`` yields in index order (and checks ``full_checksum`` after the last).
        """
        if self._closed:
            raise ValidationError("client is closed")
        self._engine.check_process()
        validate_id(bucket_id, "bucket_id")
        validate_key(key, "key")
        options = self._read_options(max_parallel_gets, headers, chunk_size, timeout, max_retries, delay,
                                     backoff_factor, force, max_backoff, max_delay, jitter, verify_full)
        return self._reader.iter_chunks(bucket_id, key, options, order)

    def get_chunk(
        self, bucket_id: str, ball_id: str, index: int, max_parallel_gets: int = 10,
        headers: Optional[Dict[str, str]] = None, chunk_size: Any = "256kb", timeout: Timeout = None,
        http2: bool = False, max_retries: Optional[int] = None, delay: Optional[float] = None,
        backoff_factor: Optional[float] = None, force: bool = False, max_backoff: Optional[float] = None,
        max_delay: Optional[float] = None, jitter: Optional[bool] = None,
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

    # --- metadata and buckets ----------------------------------------------------------------------
    def _call(self, describe: str, request: Any, timeout: Timeout, policy: Optional[RetryPolicy] = None) -> Any:
        if (closed := self._ready()) is not None:
            return closed
        return self._engine.call(describe, request, policy=policy)

    def get_metadata_by_key(self, bucket_id: str, key: str, timeout: Timeout = None,
                            headers: Optional[Dict[str, str]] = None,
                            retry_policy: Optional[RetryPolicy] = None) -> Result[GetMetadataResponse, MictlanXError]:
        """R3: the metadata of one ball. → ``Ok(GetMetadataResponse)``"""
        t = self._timeout(timeout)
        return self._call(f"stat {bucket_id}/{key}",
                          lambda r: r.get_metadata(bucket_id, key, timeout=t, headers=headers), timeout, retry_policy)

    def get_metadata(self, bucket_id: str, ball_id: str, timeout: Timeout = None,
                     headers: Optional[Dict[str, str]] = None, restart_policy: Optional[RetryPolicy] = None,
                     *, retry_policy: Optional[RetryPolicy] = None) -> Result[Ball, MictlanXError]:
        """R12: an object's chunks as a ``Ball``; ``NotFoundError`` when it has none."""
        t = self._timeout(timeout)
        listed = self._call(f"chunks {bucket_id}/{ball_id}",
                            lambda r: r.get_chunks_metadata(ball_id, bucket_id, timeout=t, headers=headers), timeout,
                            restart_policy or retry_policy)
        if listed.is_err:
            return listed
        chunks = listed.unwrap().chunks
        if not chunks:
            return Err(NotFoundError(f"{bucket_id}/{ball_id} has no chunks", bucket_id=bucket_id, key=ball_id))
        return Ok(Ball.from_chunks(bucket_id, ball_id, chunks))

    def get_chunks_by_bucket_id(self, bucket_id: str, timeout: Timeout = None,
                                headers: Optional[Dict[str, str]] = None,
                                ) -> Result[GetRouterBucketMetadataResponse, MictlanXError]:
        """R2 on one router, every page, deduplicated by key."""
        if (closed := self._ready()) is not None:
            return closed
        return self._list_bucket(bucket_id, self._timeout(timeout), headers, include_disabled=False)

    def get_bucket_metadata(self, bucket_id: str, timeout: Timeout = None,
                            headers: Optional[Dict[str, str]] = None) -> Result[Bucket, MictlanXError]:
        """R2 grouped by ``ball_id``. → ``Ok(Bucket)``"""
        listed = self.get_chunks_by_bucket_id(bucket_id, timeout, headers)
        if listed.is_err:
            return Err(listed.unwrap_err())
        groups: Dict[str, List[Metadata]] = {}
        for meta in listed.unwrap().balls:
            groups.setdefault(meta.ball_id or meta.key, []).append(meta)
        return Ok(Bucket(bucket_id, {bid: Ball.from_chunks(bucket_id, bid, metas) for bid, metas in groups.items()}))

    def _list_bucket(self, bucket_id: str, timeout: Tuple[float, float], headers: Optional[Dict[str, str]],
                     include_disabled: bool) -> Result[GetRouterBucketMetadataResponse, MictlanXError]:
        """Keyset pages of 1000 (``after`` = last key) until a short page; one entry per key."""
        try:
            validate_id(bucket_id, "bucket_id")
        except ValidationError as error:
            return Err(error)
        balls: Dict[str, Metadata] = {}
        after: Optional[str] = None
        first: Optional[GetRouterBucketMetadataResponse] = None
        while True:
            def list_page(r: Router, a: Optional[str] = after) -> Result[Any, MictlanXError]:
                return r.get_bucket_metadata(bucket_id, timeout=timeout, headers=headers, end=_LIST_PAGE, after=a,
                                             include_disabled=include_disabled)

            page = self._engine.call(f"list {bucket_id}", list_page)
            if page.is_err:
                return Err(page.unwrap_err())
            answer = page.unwrap()
            first = first or answer
            for meta in answer.balls:
                balls.setdefault(meta.key, meta)
            if len(answer.balls) < _LIST_PAGE:
                break
            after = answer.balls[-1].key
        assert first is not None
        ordered = [balls[k] for k in sorted(balls)]
        import attrs
        return Ok(attrs.evolve(first, balls=ordered))

    # --- deletes -----------------------------------------------------------------------------------
    def delete(self, ball_id: str, bucket_id: str, timeout: Timeout = None, force: bool = True,
               headers: Optional[Dict[str, str]] = None) -> Result[DeletedByBallIdResponse, MictlanXError]:
        """R14: delete every chunk of the object ``ball_id`` (idempotent). → ``Ok(DeletedByBallIdResponse)``"""
        t = self._timeout(timeout)
        hdrs = {**(headers or {}), "Force": "1" if force else "0"}
        return self._call(f"delete {bucket_id}/{ball_id}",
                          lambda r: r.delete_by_ball_id(ball_id, bucket_id, timeout=t, headers=hdrs), timeout)

    def delete_by_key(self, key: str, bucket_id: str, timeout: Timeout = None, force: bool = True,
                      headers: Optional[Dict[str, str]] = None) -> Result[DeletedByKeyResponse, MictlanXError]:
        """R13: delete one ball; a missing key is ``Ok`` with ``n_deletes=0``."""
        t = self._timeout(timeout)
        hdrs = {**(headers or {}), "Force": "1" if force else "0"}
        result = self._call(f"delete {bucket_id}/{key}",
                            lambda r: r.delete(bucket_id, key, headers=hdrs, timeout=t), timeout)
        if result.is_err and type(result.unwrap_err()) is NotFoundError:
            return Ok(DeletedByKeyResponse(n_deletes=0, key=key))
        return result

    def delete_bucket(self, bucket_id: str, headers: Optional[Dict[str, str]] = None, timeout: Timeout = None,
                      force: bool = True) -> Result[DeleteBucketResponse, MictlanXError]:
        """List the whole bucket (disabled balls included), then R14 once per ``ball_id``."""
        if (closed := self._ready()) is not None:
            return closed
        started = time.monotonic()
        listed = self._list_bucket(bucket_id, self._timeout(timeout), headers, include_disabled=True)
        if listed.is_err:
            return Err(listed.unwrap_err())
        by_ball: Dict[str, List[str]] = {}
        for meta in listed.unwrap().balls:
            by_ball.setdefault(meta.ball_id or meta.key, []).append(meta.key)
        total = sum(len(keys) for keys in by_ball.values())
        deleted: List[str] = []
        for ball_id, keys in by_ball.items():
            if self.delete(ball_id, bucket_id, timeout, force, headers).is_ok:
                deleted.extend(keys)
        return Ok(DeleteBucketResponse(bucket_id=bucket_id, deleted=len(deleted), failed=total - len(deleted),
                                       total=total, keys=deleted, response_time=time.monotonic() - started))


def _timeout_pair(timeout: Any) -> Tuple[float, float]:
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if timeout <= 0:
            raise ValidationError(f"timeout must be > 0, got {timeout}")
        return (min(5.0, float(timeout)), float(timeout))
    if isinstance(timeout, tuple) and len(timeout) == 2 and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in timeout):
        return (float(timeout[0]), float(timeout[1]))
    raise ValidationError(f"timeout must be a positive number or a (connect, read) pair, got {timeout!r}")


def _routers(uri: Union[str, Sequence[Router]], timeout: Tuple[float, float], verify: Any,
             pool_maxsize: int, token: Optional[str] = None) -> List[Router]:
    """One ``Router`` per distinct base URL, each with a pool sized for every caller.

    ``token`` (when given) is every router's bearer token; otherwise each router keeps the
    URI's ``token=`` (or the given ``Router``'s own ``token``).
    """
    if token is not None and (not isinstance(token, str) or not token):
        raise ValidationError("token must be a non-empty str")
    if isinstance(uri, str):
        endpoints = uri_module.parse(uri, default_protocol="https")
        routers = [Router(e.id or "", e.host, e.port, e.protocol, e.http2, e.api_version, path_prefix=e.path_prefix,
                          timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                          token=token if token is not None else e.token) for e in endpoints]
    elif isinstance(uri, Sequence) and uri and all(isinstance(r, Router) for r in uri):
        routers = [Router(r.router_id, r.ip_addr, r.port, r.protocol, False, r.api_version, path_prefix=r.path_prefix,
                          timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                          token=token if token is not None else r.token)
                   for r in uri if isinstance(r, Router)]
    else:
        raise ValidationError(f"uri must be a MictlanX URI or a list of Router, not {uri!r}")
    unique: Dict[str, Router] = {}
    for router in routers:
        unique.setdefault(router.base_url(), router)
    return list(unique.values())
