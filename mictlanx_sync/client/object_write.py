"""Writes (client-api §8.5, docs/consistency.md §3.1): staged chunks, then chunk 0, then commit.

One put is one version ``V`` from the client's hybrid clock. Chunks 1..N-1 are uploaded
*staged* (stored and verified, invisible) in parallel, as the tasks of one
:class:`~.coordinator.TransferCoordinator` within the client-wide buffer budget; chunk 0 is
written last, unstaged: that write is the commit point, so an object is visible whole or not
at all, and an interrupted put never shows up. R26 then promotes the staged chunks for
readers that do not pin versions (upstream's) and retires older versions. Reads pin every
chunk to the version chunk 0 names, so two puts racing can never be mixed. Each chunk goes
up through :mod:`.chunk_upload` (R5 then R7, retried, possibly on another router, with the
same version, so it converges on replicas that missed it).

Chunk 0 of an object of N > 1 chunks also carries ``chunks_sha256``, the manifest of the N
chunk checksums (:mod:`.layout`): each chunk is hashed once for its R5 anyway, and by the
commit point every checksum is known, so readers can prove the whole object without a
second pass over its bytes (:mod:`.full_hash`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable, Optional

import attrs

from ..protocol.errors import (
    AlreadyExistsError,
    ClientClosedError,
    MaxAvailabilityReachedError,
    MictlanXError,
    NotFoundError,
    SupersededError,
    ValidationError,
)
from ..protocol.models import Metadata
from ..protocol.policies import RetryPolicy
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from ..protocol.versions import IF_VERSION_HEADER, HybridClock
from .chunk_upload import ChunkUploader, Written
from .coordinator import TransferCoordinator
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .layout import chunk_key, chunks_manifest, select_chunks
from .operation import log_failure
from .progress import ProgressCallback, reporting
from .sources import BytesLike, ChunkSource
from .write_options import SourceFactory, WritePlan

__all__ = ["ObjectWriter", "INLINE_WRITE_MAX"]

#: The default ``inline_max``: chunks up to this size are written with one request (R5
#: carrying the bytes) instead of R5 + R7. Above it, base64 in a JSON body costs more than
#: the request it saves.
INLINE_WRITE_MAX = 64 * 1024
_CLEANUP_POLICY = RetryPolicy(retries=3, initial_delay=0.2, max_delay=1.0, deadline=30.0)


@attrs.frozen
class _Found:
    """What R3 said of chunk 0 before the put."""

    metadata: Optional[Metadata]
    version: str = ""


class ObjectWriter:
    """The object writes of one client. Thread-safe: state lives in each call and in the
    thread-safe clock."""

    def __init__(self, dispatcher: Dispatcher, executor: BoundedExecutor, uploader: ChunkUploader,
                 clock: HybridClock, logger: logging.Logger, inline_max: int = INLINE_WRITE_MAX) -> None:
        self.dispatcher = dispatcher
        self.executor = executor
        self.uploader = uploader
        self.clock = clock
        self.logger = logger
        #: a put of one chunk up to this size is a create in one request (0: never)
        self.inline_max = inline_max

    def put_source(self, plan: WritePlan, make_source: SourceFactory, operation: str, show_bars: Optional[bool],
                   progress: Optional[ProgressCallback] = None) -> Result[bool, MictlanXError]:
        """Open the source, put it as ``plan`` says with progress reported, close it; a failure
        is logged once as ``operation`` (``put``, ``put_file``...). The source's own errors
        (a missing file) are returned like any other."""
        source: Optional[ChunkSource] = None
        result: Result[bool, MictlanXError]
        try:
            source = make_source()
            with reporting(show_bars, progress, f"put {plan.key}", source.size) as reporter:
                result = self.put_object(plan, source, reporter)
                if result.is_ok and reporter is not None:
                    reporter.finish()
        except MictlanXError as error:
            result = Err(error)
        finally:
            if source is not None:
                source.close()
        return log_failure(self.logger, operation, plan.bucket_id, plan.key, result)

    # --- one object ------------------------------------------------------------------------
    def put_object(self, plan: WritePlan, source: ChunkSource,
                   progress: Optional[Callable[[int], None]] = None) -> Result[bool, MictlanXError]:
        """The whole put of docs/consistency.md §3.1; ``Ok(True)`` or the first error."""
        with self.dispatcher.lifecycle.scope():  # Ctrl-C or close() ends every request of this put at once
            return self._put_object(plan, source, progress)

    def _put_object(self, plan: WritePlan, source: ChunkSource,
                    progress: Optional[Callable[[int], None]]) -> Result[bool, MictlanXError]:
        started = time.monotonic()
        if not plan.update and source.num_chunks == 1 and source.size <= self.inline_max:
            created = self._create_small(plan, source, progress, started)
            if created is not None:
                return created
        located = self._locate(plan)
        if located.is_err:
            return Err(located.unwrap_err())
        found = located.unwrap()
        decision = self._decide(plan, source, found)
        if decision is not None:
            if decision.is_ok and progress is not None:
                progress(source.size)
            return decision
        self.clock.observe(found.version)
        version = self.clock.next()
        checksums = [""] * source.num_chunks  # filled by the staged uploads, chunk 0 at the commit point
        staged = self._stage_all(plan, source, version, progress, checksums)
        if staged.is_err:
            error = staged.unwrap_err()
            if isinstance(error, SupersededError):  # a newer delete's tombstone covers the key
                self.logger.info("put %s/%s: superseded by %s while staging", plan.bucket_id, plan.key,
                                 error.superseded_by)
                return Ok(True)
            self._drop_staged(plan, version)  # nothing was visible: remove what this put wrote
            return Err(error)
        committed = self._commit_point(plan, source, version, progress, checksums)
        if committed.is_err:
            error = committed.unwrap_err()
            if not isinstance(error, SupersededError):
                # Chunk 0 may have committed on some replica: its staged chunks are what
                # makes that version readable, so they stay (docs/consistency.md §3.1).
                return Err(error)
            # A newer write or delete is already committed: this put is ordered before it.
            # Its staged chunks stay: chunk 0 may have committed on a replica the newer
            # write has not reached yet, and the newer commit retires them anyway.
            self.logger.info("put %s/%s: version %s superseded by %s", plan.bucket_id, plan.key, version,
                             error.superseded_by)
            return Ok(True)
        written = committed.unwrap()
        if written.version and (source.num_chunks > 1 or _chunks_of(found.metadata) > 1):
            # Staged chunks to promote, or the chunks of the replaced object to retire. One
            # chunk replacing one chunk needs neither: the peers' last-writer-wins commit
            # retires the older version, and the router removes copies outside the replicas.
            self._promote(plan, version)
        self.logger.info("put bucket=%s key=%s bytes=%d chunks=%d version=%s s=%.3f", plan.bucket_id, plan.key,
                         source.size, source.num_chunks, version, time.monotonic() - started)
        return Ok(True)

    def _create_small(self, plan: WritePlan, source: ChunkSource, progress: Optional[Callable[[int], None]],
                      started: float) -> Optional[Result[bool, MictlanXError]]:
        """A create of one small chunk in one request: R5 with the bytes and
        ``Mictlanx-If-Absent``, so the router makes this put's create-only check (R3's) itself
        (docs/protocol-extensions.md §2). None: decide with the full path (a router without
        the extension, identical content of more chunks, or a clock behind a visible version
        twice in a row)."""
        source.chunk(0)
        source.finish()  # the data did not change while it was read
        data = source.first_chunk()
        checksum = hashlib.sha256(data).hexdigest()
        if checksum != source.full_checksum:
            return Err(ValidationError(f"{plan.bucket_id}/{plan.key}: the data changed while it was being read",
                                       bucket_id=plan.bucket_id, key=plan.key))
        for _ in range(2):
            version = self.clock.next()
            try:
                with self.executor.reserve():  # one buffer of the budget, sent from this thread
                    written = self.uploader.upload_object_chunk(
                        plan, 0, data, num_chunks=1, full_checksum=source.full_checksum, version=version,
                        checksum=checksum, if_absent=True)
            except ClientClosedError as closed:
                return Err(closed)
            if written.is_err:
                error = written.unwrap_err()
                if isinstance(error, SupersededError) and error.superseded_by:
                    self.clock.observe(error.superseded_by)  # a visible version is newer: go after it
                    continue
                if type(error) is AlreadyExistsError:
                    return Err(_exists_error(plan))
                return Err(error)
            answer = written.unwrap()
            if answer.identical_chunks == 1 or answer.committed:
                if progress is not None:
                    progress(source.size)
                what = "identical object already stored" if answer.identical_chunks else f"version={version}"
                self.logger.info("put bucket=%s key=%s bytes=%d chunks=1 %s s=%.3f", plan.bucket_id, plan.key,
                                 source.size, what, time.monotonic() - started)
                return Ok(True)
            return None
        return None

    def _locate(self, plan: WritePlan) -> Result[_Found, MictlanXError]:
        """R3 of chunk 0. Not found, or not found while a peer is down (503/666), means no
        visible object: placement uses the live peers, and versions order what a returning
        peer holds (docs/consistency.md §3.1, issue 11 point 7)."""
        def request(router: Router) -> Result[_Found, MictlanXError]:
            answer = router.get_metadata(plan.bucket_id, chunk_key(plan.key, 0), timeout=plan.timeout)
            if answer.is_ok:
                return Ok(_Found(answer.unwrap().metadata, answer.unwrap().version))
            error = answer.unwrap_err()
            # Decided here, inside the attempt, so the retry layer never waits on an answer
            # that already says "not on any live peer".
            if type(error) is NotFoundError or type(error) is MaxAvailabilityReachedError:
                return Ok(_Found(None))
            return Err(error)

        return self.dispatcher.call(f"put {plan.bucket_id}/{plan.key}", request, policy=plan.policy)

    def _decide(self, plan: WritePlan, source: ChunkSource, found: _Found) -> Optional[Result[bool, MictlanXError]]:
        """``Ok(True)`` when the same content is already stored (whatever its chunk size),
        ``AlreadyExistsError`` for other content without ``update``, else None (write)."""
        chunk0 = found.metadata
        if chunk0 is None:
            return None
        same = _same_content(chunk0, source.full_checksum)
        if same and not chunk0.is_disabled and self._complete(plan, chunk0):
            self.logger.info("put bucket=%s key=%s: identical object already stored", plan.bucket_id, plan.key)
            return Ok(True)
        if not same and not plan.update:
            return Err(_exists_error(plan))
        return None  # an update, or the same content disabled: a new version re-enables it

    def _complete(self, plan: WritePlan, chunk0: Metadata) -> bool:
        """Whether every chunk of the stored object is listed (R12): a re-put of the same
        content repairs an object that lost a chunk instead of calling it stored."""
        if str(chunk0.tags.get("num_chunks", "1")) == "1":
            return True
        listing = self.dispatcher.call(
            f"put {plan.bucket_id}/{plan.key}",
            lambda router: router.get_chunks_metadata(plan.key, plan.bucket_id, timeout=plan.timeout),
            policy=plan.policy)
        if listing.is_err:
            return False
        try:
            select_chunks(listing.unwrap().chunks, bucket_id=plan.bucket_id, key=plan.key)
        except MictlanXError:
            return False
        return True

    def _stage_all(self, plan: WritePlan, source: ChunkSource, version: str,
                   progress: Optional[Callable[[int], None]], checksums: list[str]) -> Result[bool, MictlanXError]:
        """Read chunk 0 (sources read in order), then send chunks 1..N-1 staged, windowed
        through the shared transfer pool within the client-wide buffer budget; each sent
        chunk's checksum lands in ``checksums``."""
        source.chunk(0)  # read in order; sent last by _commit_point (source.first_chunk)
        coordinator = TransferCoordinator(self.executor, lambda: plan.max_concurrency)
        staged = (_StagedChunk(self, plan, source, index, version, progress) for index in range(1, source.num_chunks))
        try:
            for _task, written in coordinator.run(staged):
                checksums[written.index] = written.checksum
        except MictlanXError:
            return Err(_first_cause([f for f in coordinator.failures if isinstance(f, MictlanXError)]))
        if self.dispatcher.lifecycle.closed:
            return Err(ClientClosedError(bucket_id=plan.bucket_id, key=plan.key))
        try:
            source.finish()  # the data did not change while it was sent: only then commit
        except MictlanXError as error:
            return Err(error)
        return Ok(True)

    def _commit_point(self, plan: WritePlan, source: ChunkSource, version: str,
                      progress: Optional[Callable[[int], None]],
                      checksums: list[str]) -> Result[Written, MictlanXError]:
        """Chunk 0, unstaged, at ``version``: the write that makes the object visible. With
        N > 1 it carries the manifest of ``checksums`` (chunks 1..N-1 as staged)."""
        try:
            with self.executor.reserve():  # one buffer of the budget, sent from this thread
                data0 = source.first_chunk()
                checksum0 = hashlib.sha256(data0).hexdigest()
                checksums[0] = checksum0
                manifest = chunks_manifest(checksums) if source.num_chunks > 1 and all(checksums) else None
                result = self.uploader.upload_object_chunk(plan, 0, data0, num_chunks=source.num_chunks,
                                                           full_checksum=source.full_checksum, version=version,
                                                           manifest=manifest, checksum=checksum0)
                size0 = len(data0)
                del data0
        except MictlanXError as error:  # the client closed, or chunk 0 could not be read again
            return Err(error)
        if result.is_ok and progress is not None:
            progress(size0)
        return result

    def _promote(self, plan: WritePlan, version: str) -> None:
        """R26, best effort: the object is committed already; this only makes its staged
        chunks current for unpinned readers and retires older versions."""
        outcome = self.dispatcher.call(
            f"commit {plan.bucket_id}/{plan.key}",
            lambda router: router.commit(plan.bucket_id, plan.key, version, timeout=plan.timeout),
            policy=_CLEANUP_POLICY)
        if outcome.is_err:
            self.logger.warning("put %s/%s: version %s is committed, but promoting its chunks failed (the next "
                                "write or delete of the key retires them): %s", plan.bucket_id, plan.key, version,
                                outcome.unwrap_err())

    def _drop_staged(self, plan: WritePlan, version: str) -> None:
        """R14 with ``Mictlanx-If-Version``: remove exactly this put's staged chunks."""
        headers = {IF_VERSION_HEADER: version}
        outcome = self.dispatcher.call(
            f"cleanup {plan.bucket_id}/{plan.key}",
            lambda router: router.delete_by_ball_id(plan.key, plan.bucket_id, timeout=plan.timeout, headers=headers),
            policy=_CLEANUP_POLICY)
        if outcome.is_err and not isinstance(outcome.unwrap_err(), NotFoundError):
            self.logger.warning("cleanup of %s/%s (version %s) failed: %s", plan.bucket_id, plan.key, version,
                                outcome.unwrap_err())


def _exists_error(plan: WritePlan) -> AlreadyExistsError:
    return AlreadyExistsError(f"{plan.bucket_id}/{plan.key} exists with other content (use update=True to replace it)",
                              bucket_id=plan.bucket_id, key=plan.key)


def _chunks_of(meta: Optional[Metadata]) -> int:
    """The chunk count chunk 0's metadata names (0: no object; 1 if unreadable: a raw ball)."""
    if meta is None:
        return 0
    try:
        return max(1, int(str(meta.tags.get("num_chunks", "1"))))
    except ValueError:
        return 1


def _same_content(meta: Metadata, full_checksum: str) -> bool:
    return str(meta.tags.get("full_checksum", "")).lower() == full_checksum


def _first_cause(failures: list[MictlanXError]) -> MictlanXError:
    """A superseded chunk explains the others' cancellation: report it first."""
    for error in failures:
        if isinstance(error, SupersededError):
            return error
    return failures[0]


class _StagedChunk:
    """One staged chunk of a put, as a task of the transfer coordinator: ``prepare`` reads it
    from the source in the caller's thread (in index order, holding its buffer token), the
    call uploads it in a pool thread and reports its bytes as sent."""

    def __init__(self, writer: ObjectWriter, plan: WritePlan, source: ChunkSource, index: int, version: str,
                 progress: Optional[Callable[[int], None]]) -> None:
        self.writer = writer
        self.plan = plan
        self.source = source
        self.index = index
        self.version = version
        self.progress = progress
        self.data: Optional[BytesLike] = None

    def prepare(self) -> None:
        self.data = self.source.chunk(self.index)

    def __call__(self) -> Written:
        data, self.data = self.data, None  # the buffer goes with the task, not with this object
        assert data is not None
        result = self.writer.uploader.upload_object_chunk(
            self.plan, self.index, data, num_chunks=self.source.num_chunks, full_checksum=self.source.full_checksum,
            version=self.version, staged=True)
        written = result.unwrap()  # raises the chunk's typed error
        if self.progress is not None:
            self.progress(len(data))
        return written
