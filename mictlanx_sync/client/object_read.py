"""Object reads (client-api §8.6): ``get``, ``get_to_file`` and ``get_chunks``, one loop.

Every read locates the object (:mod:`.locate`: R3 on chunk 0, which pins every later request
to its version, then the size), then moves its chunks with one loop, :meth:`ObjectReader._chunks`:
one :class:`~.chunk_task.ChunkTask` per chunk (cache first, else R11 with replica failover,
then the cache), run by a :class:`~.coordinator.TransferCoordinator` within the client-wide
buffer budget. The three reads differ only in where the chunks land (:mod:`.object_sinks`)
and in what is done with them:

- ``get``: into the result buffer (chunk i at ``i x size(chunk 0)``), any order;
- ``get_to_file``: into a ``.part`` file at the same offsets, renamed over the target once
  whole (:class:`~mictlanx_sync.protocol.atomic_file.AtomicFile`);
- ``get_chunks``: into a buffer each, yielded as they complete or in index order.

The whole object is proven by chunk 0's manifest of the verified chunk checksums, checked
against ``full_checksum`` hashed in byte order as bytes land, or proven by the cache's
verified index (:mod:`.full_hash`); a version's index is stored only after one of these
passed. A small object of one chunk comes with its R3 and needs no chunk read at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Callable, Generator, Optional

import attrs

from ..protocol.atomic_file import AtomicFile
from ..protocol.direct import DIRECT_FIRST_BYTE_TIMEOUT, DIRECT_READ_MIN
from ..protocol.errors import AlreadyExistsError, GetChunkError, IntegrityError, MictlanXError, ValidationError
from ..protocol.models import GetResponse, Metadata
from ..protocol.result import Err, Ok, Result
from .cache import ChunkCache
from .chunk_fetch import ChunkFetcher, Fetched, RestartWithoutIndex
from .chunk_task import ChunkRead, ChunkTask
from .coordinator import TransferCoordinator
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .files import file_sha256, local_error, target_name
from .full_hash import FullHash
from .locate import ChunkChecksums, Locator, ObjectInfo, inline_verified
from .object_sinks import FileObjectSink, IteratorObjectSink, MemoryObjectSink, ObjectSink
from .progress import announce_total
from .read_options import ReadOptions
from .result_buffers import ResultBuffers

__all__ = ["ObjectReader", "HIT_PARALLEL"]

#: A read pinned to a version that was retired meanwhile (superseded longer than the
#: peers' version grace) starts once more from the current version.
_VERSION_ATTEMPTS = 2

#: Chunks one read takes from the cache at once (CPU-bound work): twice the CPUs. On 2 CPUs,
#: reading and hashing 64 MiB of cache files took ~30 ms with 2 threads against 33-80 ms
#: with 10; in full hits under another process's load, 4 did as well as 10.
HIT_PARALLEL = 2 * max(1, os.cpu_count() or 1)

Progress = Optional[Callable[[int], None]]


def _version_vanished(result: Result[Any, MictlanXError]) -> bool:
    """A chunk of the located version answered not found."""
    if result.is_ok:
        return False
    error = result.unwrap_err()
    return isinstance(error, GetChunkError) and "missing" in (error.detail or {})


class ObjectReader:
    """The object reads of one client. Thread-safe: state lives in each call."""

    def __init__(self, dispatcher: Dispatcher, executor: BoundedExecutor, cache: Optional[ChunkCache],
                 logger: logging.Logger, direct_reads: bool = True,
                 direct_timeout: float = DIRECT_FIRST_BYTE_TIMEOUT, buffers: Optional[ResultBuffers] = None) -> None:
        self.dispatcher = dispatcher
        #: where ``get`` takes its result buffers (reused once callers let go of them)
        self.buffers = buffers if buffers is not None else ResultBuffers(0)
        self.executor = executor
        self.logger = logger
        #: read chunks of at least ``DIRECT_READ_MIN`` bytes straight from their peers
        self.direct_reads = direct_reads
        #: seconds a direct read waits for the peer's first byte (then: through the router)
        self.direct_timeout = direct_timeout
        self.locator = Locator(dispatcher, cache)
        self.fetcher = ChunkFetcher(dispatcher)

    @property
    def cache(self) -> Optional[ChunkCache]:
        """The chunk cache when it is on, else ``None``."""
        return self.locator.cache

    # --- get ---------------------------------------------------------------------------------
    def get(self, bucket_id: str, key: str, options: ReadOptions, single: bool = False,
            progress: Progress = None) -> Result[GetResponse, MictlanXError]:
        """The object (``single``: the one ball ``key``) in memory, verified → ``GetResponse``."""
        started = time.monotonic()
        for attempt in range(_VERSION_ATTEMPTS):
            with self.dispatcher.lifecycle.scope():  # Ctrl-C or close() ends every request of this get at once
                try:
                    result = self._get(bucket_id, key, options, single, progress, started, use_index=True)
                except RestartWithoutIndex:  # the index that sized the object was wrong: dropped
                    result = self._get(bucket_id, key, options, single, progress, started, use_index=False)
            if not _version_vanished(result) or attempt == _VERSION_ATTEMPTS - 1:
                return result
            self.logger.info("get %s/%s: the version being read was retired; reading the current one",
                             bucket_id, key)
        raise AssertionError("unreachable")

    def _get(self, bucket_id: str, key: str, options: ReadOptions, single: bool, progress: Progress,
             started: float, use_index: bool) -> Result[GetResponse, MictlanXError]:
        located = (self.locator.locate_single(bucket_id, key, options) if single
                   else self.locator.locate(bucket_id, key, options, use_index=use_index))
        if located.is_err:
            return Err(located.unwrap_err())
        info = located.unwrap()
        announce_total(progress, info.size)
        inline = inline_verified(info)
        if inline is not None:  # one request in all: nothing to fetch
            if progress is not None:
                progress(len(inline))
            metadatas = [info.chunk_metadata(0, info.size, info.chunk0.checksum.lower())]
            self.logger.info("get bucket=%s key=%s bytes=%d chunks=1 inline s=%.3f", bucket_id, key, info.size,
                             time.monotonic() - started)
            return Ok(GetResponse(data=memoryview(inline), metadatas=metadatas))
        options = self._object_options(options, info)
        # Not zeroed: exposed only after every chunk has landed in full (the transfer is Ok).
        try:
            buffer = self.buffers.take(info.size)
        except (MemoryError, OverflowError) as exc:
            if info.index is None:
                # The servers' size: a Result API must not raise, and the caller has a way out.
                error = ValidationError(f"{bucket_id}/{key} has {info.size} bytes, more than this process can "
                                        "hold in memory: read it with get_to_file or get_chunks",
                                        bucket_id=bucket_id, key=key)
                error.__cause__ = exc
                return Err(error)
            # The size came from the cache's index (local state), and no memory holds it:
            # a wrong index must cost a miss, never fail the read.
            self._drop_index(info)
            raise RestartWithoutIndex() from None
        view = memoryview(buffer)
        target = MemoryObjectSink(view, info.layout, progress)
        transferred = self._transfer(info, options, target, single)
        self.buffers.keep(buffer)  # the caller's now, or left over: reused once nothing refers to it
        if transferred.is_err:
            return Err(transferred.unwrap_err())
        fetched = transferred.unwrap()
        metadatas = [info.chunk_metadata(i, f.size, f.checksum) for i, f in enumerate(fetched)]
        self.logger.info("get bucket=%s key=%s bytes=%d chunks=%d s=%.3f", bucket_id, key, info.size,
                         len(fetched), time.monotonic() - started)
        return Ok(GetResponse(data=view.toreadonly(), metadatas=metadatas))

    # --- get_to_file ---------------------------------------------------------------------------
    def get_to_file(self, bucket_id: str, key: str, output_path: str, fullname: str, options: ReadOptions,
                    overwrite: bool, progress: Progress = None) -> Result[str, MictlanXError]:
        """The object into ``output_path`` through a ``.part`` file → the target's path."""
        for attempt in range(_VERSION_ATTEMPTS):
            with self.dispatcher.lifecycle.scope():  # Ctrl-C or close() ends every request of this read at once
                result = self._get_to_file(bucket_id, key, output_path, fullname, options, overwrite, progress)
            if not _version_vanished(result) or attempt == _VERSION_ATTEMPTS - 1:
                return result
        raise AssertionError("unreachable")

    def _get_to_file(self, bucket_id: str, key: str, output_path: str, fullname: str, options: ReadOptions,
                     overwrite: bool, progress: Progress) -> Result[str, MictlanXError]:
        located = self.locator.locate(bucket_id, key, options)
        if located.is_err:
            return Err(located.unwrap_err())
        info = located.unwrap()
        announce_total(progress, info.size)
        options = self._object_options(options, info)
        directory = os.path.abspath(output_path or ".")
        target = os.path.join(directory, target_name(fullname, info.chunk0.tags, key))
        try:
            os.makedirs(directory, exist_ok=True)
            if os.path.exists(target):
                if file_sha256(target) == info.layout.full_checksum:
                    return Ok(target)
                if not overwrite:
                    return Err(AlreadyExistsError(f"{target} exists with other content (overwrite=True replaces it)",
                                                  bucket_id=bucket_id, key=key))
            part = AtomicFile(target, size=info.size)
        except OSError as exc:
            return Err(local_error(exc, target))
        with part:  # any failure or interrupt, KeyboardInterrupt included, leaves no .part behind
            try:
                failed = self._fill_file(info, options, part.fd, progress)
                if failed is not None:
                    return Err(failed)
                part.commit()
                return Ok(target)
            except OSError as exc:
                return Err(local_error(exc, target))

    def _fill_file(self, info: ObjectInfo, options: ReadOptions, fd: int,
                   progress: Progress) -> Optional[MictlanXError]:
        """Every verified byte of the object into ``fd`` (sized already); the error, or None."""
        inline = inline_verified(info)
        if inline is not None:
            written = 0
            while written < len(inline):
                written += os.pwrite(fd, memoryview(inline)[written:], written)
            if progress is not None:
                progress(len(inline))
            return None
        # With the cache on, each chunk is read into a buffer of its own (it fills the cache
        # after); else through one staging buffer of a piece.
        target = FileObjectSink(fd, info.layout, info.size, options.read_piece, self.cache is not None, progress)
        transferred = self._transfer(info, options, target, single=False)
        return transferred.unwrap_err() if transferred.is_err else None

    # --- get_chunks ----------------------------------------------------------------------------
    def iter_chunks(self, bucket_id: str, key: str, options: ReadOptions,
                    order: bool) -> Generator[tuple[Metadata, memoryview], None, None]:
        """Verified chunks as they complete (or in index order); raises typed errors.

        Every chunk in flight or waiting in the reorder window holds one buffer of the
        client-wide budget while its task runs; at most ``max_parallel`` are in flight or
        waiting. An error ends the iteration at once, the other chunks aborted, as does
        closing the generator early.

        With ``verify_full`` the object is checked after the last chunk: by chunk 0's
        manifest over the verified chunk checksums when it has one, or a single chunk's
        checksum (in either order; the bytes are not hashed again), else by
        ``full_checksum`` hashed in order (``order`` only). The chunks are yielded already,
        so a manifest mismatch cannot fall back to a pass here: it is an ``IntegrityError``."""
        info = self.locator.locate(bucket_id, key, options).unwrap()
        options = self._object_options(options, info)
        n = info.layout.num_chunks
        proof = options.verify_full and info.layout.provable
        full = hashlib.sha256() if (options.verify_full and order and not proof) else None
        sums: list[Optional[str]] = [None] * n
        ready: dict[int, tuple[Metadata, memoryview]] = {}
        next_yield = 0
        target = IteratorObjectSink()
        # The cache as get() uses it: chunk 0's checksum from R3, the others from the
        # version's index (force=True skips cache reads); a chunk that contradicts the index
        # is taken as fetched, verified by its ETag (chunks are yielded already).
        read = ChunkRead(info, options, self.fetcher, ChunkChecksums(self.dispatcher, info, options), target,
                         self.cache, use_cache=not options.force and self.cache is not None,
                         index=self.locator.index_of(info, options), index_binds=False)
        chunks = self._chunks(read, lambda: options.max_parallel - len(ready), fail_fast=True)
        try:
            for i, got in chunks:
                sums[i] = got.checksum
                item = (info.chunk_metadata(i, got.size, got.checksum), target.take(i))
                if not order:
                    next_yield += 1
                    yield item
                    continue
                ready[i] = item
                while next_yield in ready:
                    item = ready.pop(next_yield)
                    if full is not None:
                        full.update(item[1])
                    next_yield += 1
                    yield item
            if full is not None and full.hexdigest() != info.layout.full_checksum:
                raise IntegrityError(f"{bucket_id}/{key}: full_checksum mismatch", bucket_id=bucket_id, key=key)
            if proof and not (all(sums) and info.layout.proves([c for c in sums if c])):
                what = "chunks_sha256" if info.layout.manifest else "full_checksum"
                raise IntegrityError(f"{bucket_id}/{key}: {what} mismatch (mixed versions?)",
                                     bucket_id=bucket_id, key=key)
            cache = self.cache
            if (full is not None or proof) and cache is not None and all(sums):
                cache.put_index(info.version, [c for c in sums if c], size=info.size)  # verified only
        finally:  # closing the generator early aborts the chunks in flight and waits for them
            chunks.close()

    # --- the one loop --------------------------------------------------------------------------
    def _chunks(self, read: ChunkRead, window: Callable[[], int],
                fail_fast: bool = False) -> Generator[tuple[int, Fetched], None, None]:
        """``(index, Fetched)`` of every chunk of ``read``, as each lands in its sink: the one
        loop of every object read, at most ``window()`` chunks in flight."""
        coordinator = TransferCoordinator(self.executor, window, fail_fast=fail_fast)
        n = read.info.layout.num_chunks
        outcomes = coordinator.run(ChunkTask(read, i, coordinator.aborted) for i in range(n))
        try:
            for task, fetched in outcomes:
                yield task.index, fetched
        finally:
            outcomes.close()

    def _transfer(self, info: ObjectInfo, options: ReadOptions, target: ObjectSink,
                  single: bool) -> Result[list[Fetched], MictlanXError]:
        """Every chunk into ``target`` and the whole-object check: the chunks, or the error.

        A chunk that contradicts the cache's index of the version (another size or checksum)
        drops the index and reads the object again without it; when the index also gave the
        object's size, the caller locates it again (``RestartWithoutIndex``)."""
        index = None if single else self.locator.index_of(info, options)
        try:
            return self._transfer_once(info, options, target, single, index)
        except RestartWithoutIndex:
            self._drop_index(info)
            if info.index is not None:
                raise  # the size came from the index too: the caller locates the object again
            return self._transfer_once(info, options, target, single, None)

    def _transfer_once(self, info: ObjectInfo, options: ReadOptions, target: ObjectSink, single: bool,
                       index: Optional[list[str]]) -> Result[list[Fetched], MictlanXError]:
        # The full_checksum check is wanted with verify_full, and also without it when an
        # index could be stored after it (the cache is on).
        full = FullHash(info, target.landed, options.verify_full or (self.cache is not None and not single))
        full.begin(lazy=index is not None)
        read = ChunkRead(info, options, self.fetcher, ChunkChecksums(self.dispatcher, info, options, single), target,
                         self.cache, use_cache=not options.force and self.cache is not None, index=index,
                         single_key=single, full=full)
        # Chunks expected from the cache (the index names them all) are CPU work: reading a
        # file and hashing it. Many more of them at once than there are CPUs only thrash
        # caches and memory bandwidth, so at most HIT_PARALLEL are in flight until a chunk
        # needs the network; then max_parallel applies.
        hit_limit = min(options.max_parallel, HIT_PARALLEL) if index is not None else options.max_parallel
        fetched: list[Optional[Fetched]] = [None] * info.layout.num_chunks
        try:
            for i, got in self._chunks(read, lambda: options.max_parallel if read.networked.is_set() else hit_limit):
                fetched[i] = got
        except MictlanXError as error:
            return Err(error)
        done = [f for f in fetched if f is not None]
        mismatch = self._check_full(info, options, full, done, single)
        return Ok(done) if mismatch is None else Err(mismatch)

    # --- per object ----------------------------------------------------------------------------
    def _object_options(self, options: ReadOptions, info: ObjectInfo) -> ReadOptions:
        """The options for the chunks of ``info``: pinned to its version and, for chunks large
        enough that the router's copy costs more than a redirect, read directly from the peers."""
        options = options.pinned_to(info.object_version)
        if self.direct_reads and info.layout.stride >= DIRECT_READ_MIN:
            options = attrs.evolve(options, direct=True, direct_timeout=self.direct_timeout)
        return options

    def _check_full(self, info: ObjectInfo, options: ReadOptions, full: FullHash, fetched: list[Fetched],
                    single: bool = False) -> Optional[IntegrityError]:
        """The verdict on the whole object; stores the version's index after a passed pass."""
        full.verified_chunks([f.checksum for f in fetched])
        verdict = full.verdict()
        cache = self.cache
        if verdict is False and cache is not None and not single:
            cache.drop_index(info.version)  # if one was used, it named chunks of another object
        if verdict is False and options.verify_full:
            what = "chunks_sha256 and full_checksum mismatch" if full.manifest else "full_checksum mismatch"
            return IntegrityError(f"{info.bucket_id}/{info.key}: {what} (mixed versions?)",
                                  bucket_id=info.bucket_id, key=info.key)
        if verdict and full.computed and cache is not None and not single:
            # Only a version whose whole object hashed to full_checksum (or was proven by
            # the manifest) gets an index: a later read served entirely by it may skip the
            # pass (FullHash).
            cache.put_index(info.version, [f.checksum for f in fetched], size=info.size)
        return None

    def _drop_index(self, info: ObjectInfo) -> None:
        cache = self.cache
        if cache is not None:
            cache.drop_index(info.version)
