"""``put_bulk`` / ``await_bulk``: many puts running in the bulk pool (client-api §8.5).

Bulk workers are *callers* of the transfer pool: each runs one item at a time as a put of
bytes or of a file (:mod:`.write_options` makes its plan, :class:`~.object_write.ObjectWriter`
moves it), named and logged like the user's own ``put``/``put_file``, so the client-wide
buffer budget holds and errors read the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from typing import Any, Optional, Sequence

from ..protocol.errors import (
    AlreadyExistsError,
    ClientClosedError,
    MictlanXError,
    NotFoundError,
    PutChunksError,
    RequestTimeoutError,
    ValidationError,
)
from ..protocol.ids import validate_task_id
from ..protocol.models import BallK, BulkPutResult
from ..protocol.result import Err, Ok, Result
from .executor import WAIT_SLICE
from .layout import validate_object_key, validate_tags
from .lifecycle import Lifecycle
from .object_write import ObjectWriter
from .operation import run_operation
from .write_options import WriteDefaults, bytes_put, file_put

__all__ = ["BulkRunner"]

_OPTIONAL: dict[str, Any] = {
    "ball_id": str, "tags": dict, "rf": int, "chunk_size": (int, str), "timeout": (int, float, tuple), "max_tries": int,
    "max_concurrency": int, "max_backoff": (int, float), "update": bool,
}


class _Job:
    def __init__(self, items: list[BallK], max_concurrency: int, stop_on_failure: bool) -> None:
        self.items = items
        self.slots = threading.Semaphore(max_concurrency)
        self.stop_on_failure = stop_on_failure
        self.failed = threading.Event()
        self.futures: list[cf.Future] = []


class BulkRunner:
    """The bulk jobs of one client, keyed by ``bulk_id``, and the bulk pool. Thread-safe.

    Bulk workers are callers of the transfer pool (they may wait on it); the pool and the
    jobs are this process's own: a forked child starts with none of the parent's.
    """

    def __init__(self, lifecycle: Lifecycle, max_workers: int, name: str, writer: ObjectWriter,
                 defaults: WriteDefaults, show_bars: Optional[bool], logger: logging.Logger) -> None:
        self.lifecycle = lifecycle
        self.max_workers = max_workers
        self.name = name
        self.writer = writer
        self.defaults = defaults
        self.show_bars = show_bars
        self.logger = logger
        self._build()
        lifecycle.on_fork(self._build)

    def _build(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.lock = threading.Lock()
        self._pool: Optional[cf.ThreadPoolExecutor] = None

    def _pool_or_closed(self) -> cf.ThreadPoolExecutor:
        with self.lock:
            if self.lifecycle.closed:
                raise ClientClosedError()
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(self.max_workers, f"mictlanx-bulk-{self.name}")
            return self._pool

    def shutdown(self, wait: bool = True) -> None:
        """Cancel the items not started and stop the bulk pool (``close()``)."""
        with self.lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def submit(self, bulk_id: str, balls: Sequence[BallK], max_concurrency: int,
               stop_on_failure: bool) -> Result[bool, MictlanXError]:
        try:
            validate_task_id(bulk_id, "bulk_id")
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
                raise ValidationError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
            items = [self._validated(i, item) for i, item in enumerate(balls)]
        except ValidationError as error:
            return Err(error)
        job = _Job(items, max_concurrency, stop_on_failure)
        with self.lock:
            if bulk_id in self.jobs:
                return Err(AlreadyExistsError(f"bulk job {bulk_id!r} already exists"))
            self.jobs[bulk_id] = job
        try:
            pool = self._pool_or_closed()
            for item in items:
                job.futures.append(pool.submit(self._run_item, job, item))
        except (ClientClosedError, RuntimeError):  # close() ran meanwhile
            for future in job.futures:
                future.cancel()
            with self.lock:
                self.jobs.pop(bulk_id, None)
            return Err(ClientClosedError())
        return Ok(True)

    def wait(self, bulk_id: str, remove_on_completion: bool,
             timeout: Optional[float]) -> Result[BulkPutResult, MictlanXError]:
        with self.lock:
            job = self.jobs.get(bulk_id)
        if job is None:
            return Err(NotFoundError(f"no bulk job {bulk_id!r}"))
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(job.futures)
        while pending:
            remaining = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if remaining <= 0:
                return Err(RequestTimeoutError(f"bulk job {bulk_id!r} still running after {timeout}s"))
            _, pending = cf.wait(pending, timeout=remaining)
        result = BulkPutResult()
        for item, future in zip(job.items, job.futures, strict=True):
            outcome = future.result() if not future.cancelled() else Err(PutChunksError("cancelled"))
            if outcome.is_ok:
                result.successes.append({"item": item})
            else:
                result.failures.append({"item": item, "error": outcome.unwrap_err()})
        if remove_on_completion:
            with self.lock:
                self.jobs.pop(bulk_id, None)
        return Ok(result)

    def _run_item(self, job: _Job, item: BallK) -> Result[bool, MictlanXError]:
        while not job.slots.acquire(timeout=WAIT_SLICE):
            if self.lifecycle.closed:
                return Err(ClientClosedError("not started: client is closed"))
        try:
            if job.stop_on_failure and job.failed.is_set():
                return Err(PutChunksError("not started: an earlier item of the bulk job failed"))
            outcome = self._put(item)
            if outcome.is_err:
                job.failed.set()
            return outcome
        finally:
            job.slots.release()

    def _put(self, item: BallK) -> Result[bool, MictlanXError]:
        """One item as the user's ``put`` (bytes) or ``put_file`` (a path) would run it."""
        options: dict[str, Any] = {k: item[k] for k in ("rf", "timeout", "max_tries", "max_concurrency", "max_backoff",
                                                          "chunk_size") if k in item}  # type: ignore[literal-required]
        source = item["source"]
        tags = item.get("tags")
        update = bool(item.get("update", False))
        bucket_id, key = item["bucket_id"], item["key"]
        name = "put" if isinstance(source, (bytes, bytearray, memoryview)) else "put_file"

        def put() -> Result[bool, MictlanXError]:
            if self.lifecycle.closed:
                return Err(ClientClosedError())
            try:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    plan, make_source = bytes_put(self.defaults, bucket_id, key, source, tags=tags, update=update,
                                                  **options)
                else:
                    plan, make_source = file_put(self.defaults, bucket_id, key, source, tags=tags, update=update,
                                                 **options)
            except ValidationError as error:
                return Err(error)
            return self.writer.put_source(plan, make_source, name, self.show_bars)

        return run_operation(name, bucket_id, key, put)  # type: ignore[no-any-return]

    @staticmethod
    def _validated(position: int, item: Any) -> BallK:
        if not isinstance(item, dict):
            raise ValidationError(f"bulk item {position} must be a dict (BallK)")
        for required in ("bucket_id", "key", "source"):
            if required not in item:
                raise ValidationError(f"bulk item {position} lacks {required!r}")
        validate_object_key(item["bucket_id"], item["key"])
        source = item["source"]
        if not isinstance(source, (bytes, bytearray, memoryview)):
            if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
                raise ValidationError(f"bulk item {position}: source must be bytes or an existing file path")
        for name, kind in _OPTIONAL.items():
            if name in item and item[name] is not None and not isinstance(item[name], kind):
                raise ValidationError(f"bulk item {position}: {name} has the wrong type")
        if item.get("ball_id", item["key"]) != item["key"]:
            raise ValidationError(f"bulk item {position}: ball_id must equal key (the object layout)")
        validate_tags(item.get("tags"))
        return item  # type: ignore[return-value]
