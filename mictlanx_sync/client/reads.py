"""Reads (client-api §8.6): locate with R3 on chunk 0, then verified parallel R11 fetches.

Chunk i lands at offset i x size(chunk 0) (both splitting layouts guarantee it), in a
buffer (``get``) or a ``.part`` file (``get_to_file``), in any order, through the transfer
loop of :mod:`.transfer` (cache first, then R11). The whole object is proven by chunk 0's
manifest of the verified chunk checksums (``chunks_sha256``: each byte hashed once), or
checked against ``full_checksum``, hashed in byte order as bytes land, or proven by the
cache's verified index (:class:`~.transfer.FullHash`, module docstring of
:mod:`.transfer`); a version's index is stored only after a pass or the manifest matched.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from typing import Any, Callable, Generator, Optional

import attrs

from ..protocol.atomic_file import AtomicFile
from ..protocol.direct import DIRECT_FIRST_BYTE_TIMEOUT, DIRECT_READ_MIN
from ..protocol.errors import (
    AlreadyExistsError,
    GetChunkError,
    IntegrityError,
    MictlanXError,
    NotFoundError,
    ValidationError,
)
from ..protocol.models import GetResponse, Metadata
from ..protocol.result import Err, Ok, Result
from .cache import ChunkCache
from .coordinator import TransferCoordinator
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .fetch import ChunkFetcher, Fetched, ReadOptions
from .files import HASH_PIECE, fd_region, file_sha256, local_error, target_name
from .layout import ObjectLayout, chunk_key
from .progress import announce_total
from .sinks import BufferSink, FileSink, Progress, Sink, unfilled_bytearray
from .transfer import ChunkChecksums, ChunkTransfer, FullHash, ObjectInfo, RestartWithoutIndex, chunk_error

__all__ = ["ObjectInfo", "Reader"]

#: A read pinned to a version that was retired meanwhile (superseded longer than the
#: peers' version grace) starts once more from the current version.
_VERSION_ATTEMPTS = 2


def _version_vanished(result: Result[Any, MictlanXError]) -> bool:
    """A chunk of the located version answered not found."""
    if result.is_ok:
        return False
    error = result.unwrap_err()
    return isinstance(error, GetChunkError) and "missing" in (error.detail or {})


class Reader:
    """The read operations of one client. Thread-safe: state lives in each call."""

    def __init__(self, dispatcher: Dispatcher, executor: BoundedExecutor, cache: Optional[ChunkCache],
                 logger: logging.Logger, direct_reads: bool = True,
                 direct_timeout: float = DIRECT_FIRST_BYTE_TIMEOUT) -> None:
        self.dispatcher = dispatcher
        self.executor = executor
        self.logger = logger
        #: read chunks of at least ``DIRECT_READ_MIN`` bytes straight from their peers
        self.direct_reads = direct_reads
        #: seconds a direct read waits for the peer's first byte (then: through the router)
        self.direct_timeout = direct_timeout
        self.fetcher = ChunkFetcher(dispatcher)
        self.transfer = ChunkTransfer(dispatcher, executor, cache, self.fetcher)

    @property
    def cache(self) -> Optional[ChunkCache]:
        return self.transfer.cache

    # --- locating --------------------------------------------------------------------------
    def stat(self, bucket_id: str, key: str, options: ReadOptions) -> Result[Metadata, MictlanXError]:
        """R3 for one ball; a disabled ball reads as not found (its data answers 404)."""
        return self._stat(bucket_id, key, options).map(lambda found: found[0])

    def _stat(self, bucket_id: str, key: str, options: ReadOptions) -> Result[tuple[Metadata, str], MictlanXError]:
        """R3 → the metadata and the version it belongs to (``""`` without versions)."""
        return self._stat_inline(bucket_id, key, options, inline=False).map(lambda found: found[:2])

    def _stat_inline(self, bucket_id: str, key: str, options: ReadOptions,
                     inline: bool) -> Result[tuple[Metadata, str, Optional[bytes]], MictlanXError]:
        """R3 → the metadata, its version and, with ``inline``, the ball's bytes when the
        router sent them (small enough; unverified)."""
        headers = options.metadata_headers(inline)
        found = self.dispatcher.call(
            f"stat {bucket_id}/{key}",
            lambda router: router.get_metadata(bucket_id, key, timeout=options.timeout, headers=headers),
            policy=options.policy)
        if found.is_err:
            return Err(found.unwrap_err())
        answer = found.unwrap()
        metadata = answer.metadata
        if metadata.is_disabled:
            return Err(NotFoundError(f"{bucket_id}/{key} is disabled", bucket_id=bucket_id, key=key))
        return Ok((metadata, answer.version, answer.inline_data if inline else None))

    def locate(self, bucket_id: str, key: str, options: ReadOptions,
               use_index: bool = False) -> Result[ObjectInfo, MictlanXError]:
        """R3 on chunk 0, then on the last chunk for the size, unless (``use_index``) the
        cache's index of this version, agreeing with chunk 0, gives the size."""
        first = self._stat_inline(bucket_id, chunk_key(key, 0), options, inline=True)
        if first.is_err:
            error = first.unwrap_err()
            if isinstance(error, NotFoundError):
                error.key = key
            return Err(error)
        chunk0, version, inline0 = first.unwrap()
        options = options.pinned_to(version)  # the last chunk's R3 names the same version
        try:
            layout = ObjectLayout.from_chunk0(chunk0.tags, chunk0.size, bucket_id=bucket_id, key=key)
        except MictlanXError as error:
            return Err(error)
        size = chunk0.size
        last_checksum = chunk0.checksum
        if layout.num_chunks == 1 and inline0 is not None:  # the whole object came with R3
            return Ok(ObjectInfo(bucket_id, key, chunk0, layout, size, last_checksum, object_version=version,
                                 inline0=inline0))
        indexed = self._indexed(bucket_id, key, chunk0, layout, options) if use_index else None
        if indexed is not None:
            return Ok(attrs.evolve(indexed, object_version=version))
        if layout.num_chunks > 1:
            last = self.stat(bucket_id, chunk_key(key, layout.num_chunks - 1), options)
            if last.is_err and type(last.unwrap_err()) is NotFoundError and options.pinned:
                # A chunk with a version of its own (ChunkFetcher.fetch says why).
                last = self.stat(bucket_id, chunk_key(key, layout.num_chunks - 1), options.unpinned())
            if last.is_err:
                missing = last.unwrap_err()
                if isinstance(missing, NotFoundError):
                    return Err(GetChunkError(f"{bucket_id}/{key}: last chunk missing",
                                             detail={"missing": [layout.num_chunks - 1]}, bucket_id=bucket_id, key=key))
                return Err(missing)
            size = layout.offset(layout.num_chunks - 1) + last.unwrap().size
            last_checksum = last.unwrap().checksum
        return Ok(ObjectInfo(bucket_id, key, chunk0, layout, size, last_checksum, object_version=version))

    def _indexed(self, bucket_id: str, key: str, chunk0: Metadata, layout: ObjectLayout,
                 options: ReadOptions) -> Optional[ObjectInfo]:
        """The object as the cache's index of its version knows it, with no R3 on the last chunk.

        The version is ``(bucket_id, key, full_checksum, N)`` from chunk 0's R3, and the
        index's first checksum must be chunk 0's: together they fix every chunk, hence the
        last chunk's size (an index is stored only after its version hashed to
        ``full_checksum``). The middle chunks' R3 are never asked for on a hit either. An
        index naming another chunk 0, or a size the layout cannot have, is dropped.
        """
        cache = None if options.force else self.cache
        n = layout.num_chunks
        entry = cache.get_index_entry((bucket_id, key, layout.full_checksum, n)) if cache is not None else None
        if cache is None or entry is None or entry.size is None:
            return None
        # A last chunk may be empty (the one chunk of an empty object): < not <=.
        if entry.checksums[0] != chunk0.checksum.lower() or entry.size < layout.offset(n - 1) or (
                n == 1 and entry.size != chunk0.size):
            cache.drop_index((bucket_id, key, layout.full_checksum, n))
            return None
        return ObjectInfo(bucket_id, key, chunk0, layout, entry.size, None, entry.checksums)

    def locate_single(self, bucket_id: str, key: str, options: ReadOptions) -> Result[ObjectInfo, MictlanXError]:
        """A raw ball read as an object of one chunk, checked against its own checksum."""
        found = self._stat_inline(bucket_id, key, options, inline=True)
        if found.is_err:
            return Err(found.unwrap_err())
        meta, version, inline = found.unwrap()
        layout = ObjectLayout(1, meta.checksum.lower(), meta.size)
        return Ok(ObjectInfo(bucket_id, key, meta, layout, meta.size, object_version=version, inline0=inline))

    @staticmethod
    def _inline_verified(info: ObjectInfo) -> Optional[bytes]:
        """The object's bytes when R3 sent them inline and they hash to chunk 0's checksum,
        which for one chunk is the object's ``full_checksum`` too (checked as well); None
        otherwise, and the read goes on through R11, whose replica failover then finds a
        good copy (an inline copy of other bytes is a bad copy like any other)."""
        data = info.inline0
        if data is None or info.layout.num_chunks != 1 or len(data) != info.size:
            return None
        checksum = hashlib.sha256(data).hexdigest()
        if checksum != info.chunk0.checksum.lower() or checksum != info.layout.full_checksum:
            return None
        return data

    def _object_options(self, options: ReadOptions, info: ObjectInfo) -> ReadOptions:
        """The options for the chunks of ``info``: pinned to its version and, for chunks large
        enough that the router's copy costs more than a redirect, read directly from the peers."""
        options = options.pinned_to(info.object_version)
        if self.direct_reads and info.layout.stride >= DIRECT_READ_MIN:
            options = attrs.evolve(options, direct=True, direct_timeout=self.direct_timeout)
        return options

    # --- the whole-object check and the index ---------------------------------------------------
    def _full_hash(self, info: ObjectInfo, options: ReadOptions, single: bool,
                   region: Callable[[int, int], object]) -> FullHash:
        """The ``full_checksum`` check; wanted with ``verify_full``, and also without it when
        an index could be stored after it (the cache is on)."""
        wanted = options.verify_full or (self.cache is not None and not single)
        return FullHash(info, region, wanted)

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

    # --- get ---------------------------------------------------------------------------------
    def get(self, bucket_id: str, key: str, options: ReadOptions, single: bool = False,
            progress: Optional[Callable[[int], None]] = None) -> Result[GetResponse, MictlanXError]:
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

    def _get(self, bucket_id: str, key: str, options: ReadOptions, single: bool,
             progress: Optional[Callable[[int], None]], started: float,
             use_index: bool) -> Result[GetResponse, MictlanXError]:
        located = (self.locate_single(bucket_id, key, options) if single
                   else self.locate(bucket_id, key, options, use_index=use_index))
        if located.is_err:
            return Err(located.unwrap_err())
        info = located.unwrap()
        announce_total(progress, info.size)
        inline = self._inline_verified(info)
        if inline is not None:  # one request in all: nothing to fetch
            if progress is not None:
                progress(len(inline))
            metadatas = [info.chunk_metadata(0, info.size, info.chunk0.checksum.lower())]
            self.logger.info("get bucket=%s key=%s bytes=%d chunks=1 inline s=%.3f", bucket_id, key, info.size,
                             time.monotonic() - started)
            return Ok(GetResponse(data=memoryview(inline), metadatas=metadatas))
        options = self._object_options(options, info)
        # Not zeroed: exposed only after every chunk has landed in full (transfer.run is Ok).
        try:
            buffer = unfilled_bytearray(info.size)
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
            cache = self.cache
            if cache is not None:
                cache.drop_index(info.version)
            raise RestartWithoutIndex() from None
        view = memoryview(buffer)

        def sink_for(i: int, size: int) -> Sink:
            start = info.layout.offset(i)
            return Progress(BufferSink(view[start:start + size]), progress)

        full = self._full_hash(info, options, single, lambda start, size: view[start:start + size])
        transferred = self.transfer.run(info, options, sink_for, full, single_key=single)
        if transferred.is_err:
            return Err(transferred.unwrap_err())
        fetched = transferred.unwrap()
        mismatch = self._check_full(info, options, full, fetched, single)
        if mismatch is not None:
            return Err(mismatch)
        metadatas = [info.chunk_metadata(i, f.size, f.checksum) for i, f in enumerate(fetched)]
        self.logger.info("get bucket=%s key=%s bytes=%d chunks=%d s=%.3f", bucket_id, key, info.size,
                         len(fetched), time.monotonic() - started)
        return Ok(GetResponse(data=view.toreadonly(), metadatas=metadatas))

    # --- get_to_file ---------------------------------------------------------------------------
    def get_to_file(self, bucket_id: str, key: str, output_path: str, fullname: str, options: ReadOptions,
                    overwrite: bool, progress: Optional[Callable[[int], None]] = None) -> Result[str, MictlanXError]:
        for attempt in range(_VERSION_ATTEMPTS):
            with self.dispatcher.lifecycle.scope():  # Ctrl-C or close() ends every request of this read at once
                result = self._get_to_file(bucket_id, key, output_path, fullname, options, overwrite, progress)
            if not _version_vanished(result) or attempt == _VERSION_ATTEMPTS - 1:
                return result
        raise AssertionError("unreachable")

    def _get_to_file(self, bucket_id: str, key: str, output_path: str, fullname: str, options: ReadOptions,
                     overwrite: bool, progress: Optional[Callable[[int], None]]) -> Result[str, MictlanXError]:
        located = self.locate(bucket_id, key, options)
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
        except OSError as exc:
            return Err(local_error(exc, target))
        try:
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
                   progress: Optional[Callable[[int], None]]) -> Optional[MictlanXError]:
        """Every verified byte of the object into ``fd`` (sized already); the error, or None."""
        inline = self._inline_verified(info)
        if inline is not None:
            written = 0
            while written < len(inline):
                written += os.pwrite(fd, memoryview(inline)[written:], written)
            if progress is not None:
                progress(len(inline))
            return None
        caching = self.cache is not None

        def sink_for(i: int, size: int) -> Sink:
            # With the cache on, the chunk is read into a buffer of its own (it fills
            # the cache after); else through one staging buffer of a piece.
            keep = bytearray(size) if caching else None
            return Progress(FileSink(fd, info.layout.offset(i), keep, options.read_piece), progress)

        hash_buffer = bytearray(min(HASH_PIECE, max(info.size, 1)))
        full = self._full_hash(info, options, False, lambda start, size: fd_region(fd, start, size, hash_buffer))
        transferred = self.transfer.run(info, options, sink_for, full)
        if transferred.is_err:
            return transferred.unwrap_err()
        return self._check_full(info, options, full, transferred.unwrap())

    # --- get_chunks ----------------------------------------------------------------------------
    def iter_chunks(self, bucket_id: str, key: str, options: ReadOptions,
                    order: bool) -> Generator[tuple[Metadata, memoryview], None, None]:
        """Verified chunks as they complete (or in index order); raises typed errors.

        With ``verify_full`` the object is checked after the last chunk: by chunk 0's
        manifest over the verified chunk checksums when it has one, or a single chunk's
        checksum (in either order; the bytes are not hashed again), else by ``full_checksum`` hashed in order (``order``
        only). The chunks are yielded already, so a manifest mismatch cannot fall back to
        a pass here: it is an ``IntegrityError``."""
        info = self.locate(bucket_id, key, options).unwrap()
        options = self._object_options(options, info)
        n = info.layout.num_chunks
        proof = options.verify_full and info.layout.provable
        full = hashlib.sha256() if (options.verify_full and order and not proof) else None
        ready: dict[int, tuple[Metadata, memoryview]] = {}
        next_yield = 0
        # The cache as get() uses it: chunk 0's checksum from R3, the others from the
        # version's index (force=True skips cache reads).
        cache = None if options.force else self.cache
        index = self.transfer.index_of(info, options) if cache is not None else None
        sums: list[Optional[str]] = [None] * n
        listing = ChunkChecksums(self.dispatcher, info, options)

        def one(i: int) -> tuple[Metadata, memoryview]:
            size = info.chunk_size(i)
            buffer = bytearray(size)
            sink = BufferSink(memoryview(buffer))
            expected = index[i] if index is not None else None
            if i == 0 and expected is None:
                expected = info.chunk0.checksum.lower()
            if cache is not None and expected is not None and cache.read_into(expected, size, sink):
                sums[i] = expected
                return info.chunk_metadata(i, size, expected), memoryview(buffer).toreadonly()

            def make_sink(length: int) -> Sink:
                if length != size:
                    raise IntegrityError(f"{bucket_id}/{chunk_key(key, i)}: {length} bytes, layout expects {size}",
                                         bucket_id=bucket_id, key=chunk_key(key, i))
                return sink

            fetched = self.fetcher.fetch(bucket_id, chunk_key(key, i), options, make_sink, listing.resolver(i))
            if fetched.is_err:
                raise chunk_error(fetched.unwrap_err(), info, i)
            got = fetched.unwrap()
            writable = self.cache
            if writable is not None:
                writable.put(got.checksum, buffer)
            sums[i] = got.checksum
            return info.chunk_metadata(i, got.size, got.checksum), memoryview(buffer).toreadonly()

        # Each chunk task holds one buffer of the client-wide budget while it runs (its
        # buffer is filled); at most max_parallel chunks are in flight or waiting in the
        # reorder window. An error ends the iteration at once, the other tasks aborted.
        coordinator = TransferCoordinator(self.executor, lambda: options.max_parallel - len(ready), fail_fast=True)
        outcomes = coordinator.run(functools.partial(one, i) for i in range(n))
        try:
            for task, item in outcomes:
                if not order:
                    next_yield += 1
                    yield item
                    continue
                ready[task.args[0]] = item
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
            if (full is not None or proof) and self.cache is not None and all(sums):
                self.cache.put_index(info.version, [c for c in sums if c], size=info.size)  # verified only
        finally:  # closing the generator early aborts the chunks in flight and waits for them
            outcomes.close()
