"""Writes (client-api §8.5): existence check, chunk 0 first, the rest in parallel.

A chunk upload is one R5 followed by one R7 on the same router (a write group lives on
the router that created it, protocol §P4.4); a retry starts again from R5, possibly on
another router. Identical chunks cost only R5 (``extra.exists``). On failure, only what
this call wrote is removed: R13 with ``Task-Id: <group id>`` per group it created.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import time
from typing import Any, Callable, Optional

import attrs

from ..protocol.errors import AlreadyExistsError, MictlanXError, NotFoundError, PutChunksError
from ..protocol.models import Metadata
from ..protocol.policies import RetryPolicy
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from .engine import Engine, wait_in_slices
from .layout import chunk_index, chunk_key, chunk_tags, select_chunks
from .sources import BytesLike, ChunkSource

__all__ = ["WritePlan", "Writer"]

CONTENT_TYPE = "application/octet-stream"
_CLEANUP_POLICY = RetryPolicy(retries=3, initial_delay=0.2, max_delay=1.0, deadline=30.0)


@attrs.frozen
class WritePlan:
    """Everything one put decides before sending its first chunk."""

    bucket_id: str
    key: str
    rf: int
    tags: dict[str, str]
    update: bool
    policy: RetryPolicy
    timeout: Any
    max_concurrency: int
    producer_id: str
    content_type: str = CONTENT_TYPE


class _GroupLost(MictlanXError):
    """R7 answered 404: the write group expired or its router restarted (protocol §P4.4).

    Internal only: retryable (a 503 status) without counting against the router's breaker
    (code 404), so the chunk upload starts again from R5 (client-api §8.1). If attempts run
    out, the caller gets ``cause``, the R7 ``NotFoundError`` itself.
    """

    def __init__(self, cause: MictlanXError) -> None:
        super().__init__(cause.message, 503, cause.code, cause.detail, bucket_id=cause.bucket_id, key=cause.key)
        self.cause = cause


@attrs.define
class _Written:
    index: int
    group_id: str
    exists: bool


class _Sent:
    """The groups this call created, for cleanup (appended from several threads)."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, str]] = []  # (chunk key, group id)

    def add(self, key: str, group_id: str) -> None:
        self.groups.append((key, group_id))


class Writer:
    """The write operations of one client. Thread-safe: state lives in each call."""

    def __init__(self, engine: Engine, logger: logging.Logger) -> None:
        self.engine = engine
        self.logger = logger

    # --- one chunk -------------------------------------------------------------------------
    def upload_chunk(self, plan: WritePlan, index: int, data: BytesLike, *, num_chunks: int,
                     full_checksum: Optional[str], sent: _Sent, update: bool = False,
                     tags: Optional[dict[str, str]] = None) -> Result[_Written, MictlanXError]:
        """R5 then R7 on one router per attempt, retried per the plan's policy."""
        checksum = hashlib.sha256(data).hexdigest()
        size = len(data)
        key_i = chunk_key(plan.key, index) if tags is None else plan.key
        if tags is None:
            assert full_checksum is not None
            tags = chunk_tags(plan.tags, plan.key, index, size, num_chunks, full_checksum)
        ball_id = plan.key if full_checksum is not None else tags.get("group_id", plan.key)

        def request(router: Router) -> Result[_Written, MictlanXError]:
            metadata = router.put_metadata(
                key_i, size, checksum, plan.producer_id, plan.content_type, ball_id, plan.bucket_id, tags,
                timeout=plan.timeout, is_disabled=False, replication_factor=plan.rf, update=plan.update or update)
            if metadata.is_err:
                return Err(metadata.unwrap_err())
            answer = metadata.unwrap()
            if not answer.tasks_ids:
                return Err(PutChunksError(f"R5 for {key_i} returned no group id", bucket_id=plan.bucket_id,
                                          key=key_i))
            group_id = answer.tasks_ids[0]
            if bool(answer.extra.get("exists")):
                return Ok(_Written(index, group_id, True))
            sent.add(key_i, group_id)
            stored = router.put_chunked(group_id, data, timeout=plan.timeout, replication_factor=plan.rf)
            if stored.is_err:
                error = stored.unwrap_err()
                return Err(_GroupLost(error) if type(error) is NotFoundError else error)
            return Ok(_Written(index, group_id, False))

        result = self.engine.call(f"put {plan.bucket_id}/{key_i}", request, policy=plan.policy)
        if result.is_err:
            failure = result.unwrap_err()
            if isinstance(failure, _GroupLost):  # out of attempts: the R7 404 itself
                if failure.cause.router is None:
                    failure.cause.router = failure.router
                return Err(failure.cause)
        return result

    # --- one object ------------------------------------------------------------------------
    def put_object(self, plan: WritePlan, source: ChunkSource,
                   progress: Optional[Callable[[int], None]] = None) -> Result[bool, MictlanXError]:
        """The whole §8.5 sequence for one object; returns ``Ok(True)`` or the first error."""
        started = time.monotonic()
        existing = self._list_existing(plan)
        if existing.is_err:
            return Err(existing.unwrap_err())
        listed = existing.unwrap()
        decision = self._decide(plan, source, listed)
        if decision is not None:
            if decision.is_ok and progress is not None:
                progress(source.size)
            return decision
        reenable = {i for i, m in listed.items() if m.is_disabled and _same_version(m, source.full_checksum)}
        sent = _Sent()
        result = self._send_all(plan, source, sent, reenable, listed, progress)
        if result.is_ok:
            try:
                source.finish()
            except MictlanXError as error:
                result = Err(error)
        if result.is_err:
            self._cleanup(plan, sent)
            return result
        if plan.update:
            self._remove_leftovers(plan, listed, source.num_chunks)
        self.logger.info("put bucket=%s key=%s bytes=%d chunks=%d s=%.3f", plan.bucket_id, plan.key, source.size,
                         source.num_chunks, time.monotonic() - started)
        return Ok(True)

    def _list_existing(self, plan: WritePlan) -> Result[dict[int, Metadata], MictlanXError]:
        listing = self.engine.call(
            f"list {plan.bucket_id}/{plan.key}",
            lambda router: router.get_chunks_metadata(plan.key, plan.bucket_id, timeout=plan.timeout,
                                                      include_disabled=True),
            policy=plan.policy)
        if listing.is_err:
            error = listing.unwrap_err()
            return Ok({}) if type(error) is NotFoundError else Err(error)
        chunks: dict[int, Metadata] = {}
        for meta in listing.unwrap().chunks:
            index = chunk_index(meta.tags)
            if index is not None and meta.key == chunk_key(plan.key, index):
                chunks.setdefault(index, meta)
        return Ok(chunks)

    def _decide(self, plan: WritePlan, source: ChunkSource,
                listed: dict[int, Metadata]) -> Optional[Result[bool, MictlanXError]]:
        """``Ok(True)`` when the same object is already complete, an error on a conflict, else None."""
        if not listed or plan.update:
            return None
        if any(not _same_version(m, source.full_checksum) for m in listed.values()):
            return Err(AlreadyExistsError(
                f"{plan.bucket_id}/{plan.key} exists with other content (use update=True to replace it)",
                bucket_id=plan.bucket_id, key=plan.key))
        try:
            chunks = select_chunks(listed.values(), bucket_id=plan.bucket_id, key=plan.key)
        except MictlanXError:
            return None  # incomplete: upload what is missing
        if len(chunks) == source.num_chunks and not any(m.is_disabled for m in chunks):
            self.logger.info("put bucket=%s key=%s: identical object already stored", plan.bucket_id, plan.key)
            return Ok(True)
        return None

    def _send_all(
        self, plan: WritePlan, source: ChunkSource, sent: _Sent, reenable: set[int], listed: dict[int, Metadata],
        progress: Optional[Callable[[int], None]],
    ) -> Result[bool, MictlanXError]:
        engine = self.engine
        failure: list[MictlanXError] = []

        def send(index: int, data: BytesLike) -> Result[_Written, MictlanXError]:
            return self.upload_chunk(plan, index, data, num_chunks=source.num_chunks,
                                     full_checksum=source.full_checksum, sent=sent, update=index in reenable)

        # Chunk 0 alone first: a concurrent put of other content fails here, before more is sent.
        if not engine.acquire_buffer():
            return Err(PutChunksError("client is closing"))
        try:
            data0 = source.chunk(0)
            size0 = len(data0)
            first = send(0, data0)
            del data0
        finally:
            engine.buffers.release()
        if first.is_err:
            return Err(first.unwrap_err())
        conflict = self._check_chunk0(plan, first.unwrap(), listed, source.full_checksum)
        if conflict is not None:
            return Err(conflict)
        if progress is not None:
            progress(size0)

        in_flight: set[cf.Future] = set()

        def collect(done: set[cf.Future]) -> None:
            for future in done:
                in_flight.discard(future)
                outcome = future.result()
                if outcome.is_err:
                    failure.append(outcome.unwrap_err())

        try:
            for index in range(1, source.num_chunks):
                while len(in_flight) >= plan.max_concurrency and not failure:
                    collect(wait_in_slices(in_flight)[0])
                if failure or not engine.acquire_buffer(lambda: bool(failure)):
                    break
                try:
                    data = source.chunk(index)
                except MictlanXError as unreadable:  # local read failed: clean up what was sent
                    engine.buffers.release()
                    failure.append(unreadable)
                    break
                except BaseException:
                    engine.buffers.release()
                    raise
                try:
                    future = engine.submit(send, index, data)
                except MictlanXError as closed:
                    engine.buffers.release()
                    failure.append(closed)
                    break
                future.add_done_callback(_releaser(engine, progress, len(data)))
                in_flight.add(future)
            while in_flight:
                collect(wait_in_slices(in_flight)[0])
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        finally:
            for future in list(in_flight):
                future.cancel()
        if failure:
            return Err(failure[0])
        return Ok(True)

    def _check_chunk0(self, plan: WritePlan, first: _Written, listed: dict[int, Metadata],
                      full_checksum: str) -> Optional[MictlanXError]:
        """An unexpected ``exists`` on chunk 0 means a concurrent put: compare its full_checksum."""
        if not first.exists or plan.update or (0 in listed and _same_version(listed[0], full_checksum)):
            return None
        found = self.engine.call(
            f"stat {plan.bucket_id}/{chunk_key(plan.key, 0)}",
            lambda router: router.get_metadata(plan.bucket_id, chunk_key(plan.key, 0), timeout=plan.timeout),
            policy=plan.policy)
        if found.is_ok and _same_version(found.unwrap().metadata, full_checksum):
            return None
        return AlreadyExistsError(f"{plan.bucket_id}/{plan.key} was written concurrently with other content",
                                  bucket_id=plan.bucket_id, key=plan.key)

    def _cleanup(self, plan: WritePlan, sent: _Sent) -> None:
        """Best effort: delete only the versions this call's groups committed."""
        for key_i, group_id in list(sent.groups):
            def delete(router: Router, k: str = key_i, g: str = group_id) -> Result[Any, MictlanXError]:
                return router.delete(plan.bucket_id, k, timeout=plan.timeout, task_id=g)

            outcome = self.engine.call(f"cleanup {plan.bucket_id}/{key_i}", delete, policy=_CLEANUP_POLICY)
            if outcome.is_err and not isinstance(outcome.unwrap_err(), NotFoundError):  # 412 is an AlreadyExists
                self.logger.warning("cleanup of %s/%s (group %s) failed: %s", plan.bucket_id, key_i, group_id,
                                    outcome.unwrap_err())

    def _remove_leftovers(self, plan: WritePlan, listed: dict[int, Metadata], num_chunks: int) -> None:
        """After an update: chunks ``i >= N`` of the old version, only if still unchanged."""
        for index, meta in sorted(listed.items()):
            if index < num_chunks:
                continue
            def delete(router: Router, m: Metadata = meta) -> Result[Any, MictlanXError]:
                return router.delete(plan.bucket_id, m.key, timeout=plan.timeout, if_match=m.checksum)

            outcome = self.engine.call(f"remove leftover {plan.bucket_id}/{meta.key}", delete, policy=_CLEANUP_POLICY)
            if outcome.is_err and not isinstance(outcome.unwrap_err(), NotFoundError):
                self.logger.warning("removing leftover chunk %s/%s failed: %s", plan.bucket_id, meta.key,
                                    outcome.unwrap_err())


def _same_version(meta: Metadata, full_checksum: str) -> bool:
    return str(meta.tags.get("full_checksum", "")).lower() == full_checksum


def _releaser(engine: Engine, progress: Optional[Callable[[int], None]], size: int) -> Callable[[cf.Future], None]:
    def release(future: cf.Future) -> None:
        engine.buffers.release()
        if progress is not None and not future.cancelled() and future.exception() is None and future.result().is_ok:
            progress(size)
    return release
