"""Reads (client-api §8.6): locate with R3 on chunk 0, then verified parallel R11 fetches.

Chunk i lands at offset i x size(chunk 0) (both splitting layouts guarantee it), in a
buffer (``get``) or a ``.part`` file (``get_to_file``), in any order. The whole object is
then checked against ``full_checksum``. Chunks come from the cache when its per-version
index names them; the cache is filled with every verified chunk.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import os
import secrets
import threading
import time
from typing import Any, Callable, Generator, Iterator, Optional

import attrs

from ..protocol.errors import (
    AlreadyExistsError,
    GetChunkError,
    IntegrityError,
    LocalStorageError,
    MictlanXError,
    NotFoundError,
)
from ..protocol.models import GetResponse, Metadata
from ..protocol.result import Err, Ok, Result
from .cache import ChunkCache
from .engine import Engine, wait_in_slices
from .fetch import BufferSink, ChunkFetcher, Fetched, FileSink, ReadOptions, Sink
from .layout import ObjectLayout, chunk_key, select_chunks

__all__ = ["ObjectInfo", "Reader"]

_HASH_PIECE = 4 * 1024 * 1024


@attrs.frozen
class ObjectInfo:
    """What R3 told us about an object: chunk 0's metadata, the layout and the total size."""

    bucket_id: str
    key: str
    chunk0: Metadata
    layout: ObjectLayout
    size: int

    def chunk_metadata(self, index: int, size: int, checksum: str) -> Metadata:
        """Chunk 0's metadata with chunk ``index``'s key, size, checksum and index tags."""
        if index == 0:
            return self.chunk0
        tags = {**self.chunk0.tags, "index": str(index), "chunk_size": str(size)}
        return attrs.evolve(self.chunk0, key=chunk_key(self.key, index), size=size, checksum=checksum, tags=tags)

    def chunk_size(self, index: int) -> int:
        if index < self.layout.num_chunks - 1:
            return self.layout.stride
        return self.size - self.layout.offset(index)

    @property
    def version(self) -> tuple[str, str, str, int]:
        return (self.bucket_id, self.key, self.layout.full_checksum, self.layout.num_chunks)


class _ChunkChecksums:
    """Chunk checksums from one R12 listing, fetched on first need (thread-safe).

    Needed only behind a router that sends no ``ETag`` (upstream, client-api §8.6): then
    each chunk is checked against the listing (§P5 rules 1-3 applied, duplicates dropped).
    Chunk 0's checksum is R3's, so a listing is never needed for it.
    """

    def __init__(self, engine: Engine, info: ObjectInfo, options: ReadOptions, single_key: bool = False) -> None:
        self.engine = engine
        self.info = info
        self.options = options
        self.single_key = single_key
        self._lock = threading.Lock()
        self._sums: Optional[dict[int, str]] = None

    def resolver(self, index: int) -> Callable[[], Optional[str]]:
        return lambda: self.checksum(index)

    def checksum(self, index: int) -> Optional[str]:
        if index == 0 or self.single_key:
            return self.info.chunk0.checksum.lower()
        with self._lock:
            if self._sums is None:
                info, options = self.info, self.options
                listed = self.engine.call(
                    f"chunks {info.bucket_id}/{info.key}",
                    lambda router: router.get_chunks_metadata(info.key, info.bucket_id, timeout=options.timeout,
                                                              headers=options.headers),
                    policy=options.policy)
                if listed.is_err:
                    raise listed.unwrap_err()
                chunks = select_chunks(listed.unwrap().chunks, bucket_id=info.bucket_id, key=info.key)
                self._sums = {i: m.checksum.lower() for i, m in enumerate(chunks)}
            return self._sums.get(index)


class _RestartWithoutIndex(Exception):
    """The cache index contradicted an ETag: read again, ignoring the index."""


class Reader:
    """The read operations of one client. Thread-safe: state lives in each call."""

    def __init__(self, engine: Engine, logger: logging.Logger) -> None:
        self.engine = engine
        self.logger = logger
        self.fetcher = ChunkFetcher(engine)

    @property
    def cache(self) -> Optional[ChunkCache]:
        cache = self.engine.cache
        return cache if cache is not None and cache.enabled else None

    # --- locating --------------------------------------------------------------------------
    def stat(self, bucket_id: str, key: str, options: ReadOptions) -> Result[Metadata, MictlanXError]:
        """R3 for one ball; a disabled ball reads as not found (its data answers 404)."""
        found = self.engine.call(
            f"stat {bucket_id}/{key}",
            lambda router: router.get_metadata(bucket_id, key, timeout=options.timeout, headers=options.headers),
            policy=options.policy)
        if found.is_err:
            return Err(found.unwrap_err())
        metadata = found.unwrap().metadata
        if metadata.is_disabled:
            return Err(NotFoundError(f"{bucket_id}/{key} is disabled", bucket_id=bucket_id, key=key))
        return Ok(metadata)

    def locate(self, bucket_id: str, key: str, options: ReadOptions) -> Result[ObjectInfo, MictlanXError]:
        first = self.stat(bucket_id, chunk_key(key, 0), options)
        if first.is_err:
            error = first.unwrap_err()
            if isinstance(error, NotFoundError):
                error.key = key
            return Err(error)
        chunk0 = first.unwrap()
        try:
            layout = ObjectLayout.from_chunk0(chunk0.tags, chunk0.size, bucket_id=bucket_id, key=key)
        except MictlanXError as error:
            return Err(error)
        size = chunk0.size
        if layout.num_chunks > 1:
            last = self.stat(bucket_id, chunk_key(key, layout.num_chunks - 1), options)
            if last.is_err:
                missing = last.unwrap_err()
                if isinstance(missing, NotFoundError):
                    return Err(GetChunkError(f"{bucket_id}/{key}: last chunk missing",
                                             detail={"missing": [layout.num_chunks - 1]}, bucket_id=bucket_id, key=key))
                return Err(missing)
            size = layout.offset(layout.num_chunks - 1) + last.unwrap().size
        return Ok(ObjectInfo(bucket_id, key, chunk0, layout, size))

    def locate_single(self, bucket_id: str, key: str, options: ReadOptions) -> Result[ObjectInfo, MictlanXError]:
        """A raw ball read as an object of one chunk, checked against its own checksum."""
        found = self.stat(bucket_id, key, options)
        if found.is_err:
            return Err(found.unwrap_err())
        meta = found.unwrap()
        layout = ObjectLayout(1, meta.checksum.lower(), meta.size)
        return Ok(ObjectInfo(bucket_id, key, meta, layout, meta.size))

    # --- the chunk transfer loop ---------------------------------------------------------------
    def _transfer(self, info: ObjectInfo, options: ReadOptions, sink_for: Callable[[int, int], Sink],
                  single_key: bool = False,
                  on_ready: Optional[Callable[[int], None]] = None) -> Result[list[Fetched], MictlanXError]:
        """Fetch every chunk into ``sink_for(index, size)``; cache first, then R11, in parallel.

        ``on_ready(i)`` runs in the calling thread, in index order, once chunks 0..i have all
        landed, while later chunks are still in flight (the whole-object hash overlaps the
        transfer). A restart calls it again from 0.
        """
        cache = None if options.force else self.cache
        index = cache.get_index(info.version) if cache is not None else None
        try:
            return self._transfer_once(info, options, sink_for, index, single_key, cache is not None, on_ready)
        except _RestartWithoutIndex:
            if cache is not None:
                cache.drop_index(info.version)
            return self._transfer_once(info, options, sink_for, None, single_key, cache is not None, on_ready)

    def _transfer_once(self, info: ObjectInfo, options: ReadOptions, sink_for: Callable[[int, int], Sink],
                       index: Optional[list[str]], single_key: bool, use_cache: bool = True,
                       on_ready: Optional[Callable[[int], None]] = None) -> Result[list[Fetched], MictlanXError]:
        engine = self.engine
        n = info.layout.num_chunks
        fetched: list[Optional[Fetched]] = [None] * n
        next_ready = 0

        def advance() -> None:
            """Hand on, in index order, every chunk whose predecessors have all landed."""
            nonlocal next_ready
            while next_ready < n and fetched[next_ready] is not None and not failure:
                if on_ready is not None:
                    on_ready(next_ready)
                next_ready += 1

        failure: list[BaseException] = []
        in_flight: set[cf.Future] = set()
        listing = _ChunkChecksums(engine, info, options, single_key)
        aborted = threading.Event()

        def guarded_sink(i: int, size: int) -> Sink:
            return _Guarded(sink_for(i, size), aborted)

        def one(i: int) -> None:
            if aborted.is_set():
                return
            key_i = info.key if single_key else chunk_key(info.key, i)
            expected = index[i] if index is not None and len(index) == n else None
            if i == 0 and expected is None:
                expected = info.chunk0.checksum.lower()
            size = info.chunk_size(i)
            # force=True skips cache reads (the fetched chunk still fills the cache).
            if use_cache and expected is not None and self._from_cache(expected, size, guarded_sink(i, size)):
                fetched[i] = Fetched(size, expected, None)
                return
            keep = bytearray(size) if self.cache is not None else None
            target = guarded_sink(i, size) if keep is None else _Tee(guarded_sink(i, size), keep)

            def make_sink(length: int) -> Sink:
                if length != size:
                    raise IntegrityError(f"{info.bucket_id}/{key_i}: {length} bytes, layout expects {size}",
                                         bucket_id=info.bucket_id, key=key_i)
                return target

            result = self.fetcher.fetch(info.bucket_id, key_i, options, make_sink, listing.resolver(i))
            if result.is_err:
                raise result.unwrap_err() if single_key else _chunk_error(result.unwrap_err(), info, i)
            got = result.unwrap()
            if expected is not None and got.checksum != expected and index is not None:
                raise _RestartWithoutIndex()
            fetched[i] = got
            if keep is not None and self.cache is not None:
                self.cache.put(got.checksum, bytes(keep))

        try:
            for i in range(n):
                while len(in_flight) >= options.max_parallel and not failure:
                    _collect(wait_in_slices(in_flight)[0], in_flight, failure)
                    advance()
                if failure or not engine.acquire_buffer(lambda: bool(failure)):
                    break
                try:
                    future = engine.submit(one, i)
                except MictlanXError as closed:
                    engine.buffers.release()
                    failure.append(closed)
                    break
                future.add_done_callback(lambda _f: engine.buffers.release())
                in_flight.add(future)
            while in_flight:
                _collect(wait_in_slices(in_flight)[0], in_flight, failure)
                advance()
            advance()
        except BaseException:
            # An interrupt (KeyboardInterrupt) in the calling thread: chunk tasks already
            # running stop at their next write, and are waited for, so none touches the sink
            # after we return (get_to_file closes its file descriptor next, and the number
            # could be reused by another file).
            aborted.set()
            running = {f for f in in_flight if not f.cancel()}
            wait_in_slices(running, cf.ALL_COMPLETED)
            raise
        finally:
            for future in in_flight:
                future.cancel()
        if failure:
            if isinstance(failure[0], _RestartWithoutIndex):
                raise failure[0]
            error = failure[0]
            return Err(error if isinstance(error, MictlanXError) else LocalStorageError(str(error)))
        done = [f for f in fetched if f is not None]
        if len(done) != n:
            return Err(GetChunkError("client is closing", bucket_id=info.bucket_id, key=info.key))
        cache = self.cache
        if cache is not None and not single_key:
            cache.put_index(info.version, [f.checksum for f in done])
        return Ok(done)

    def _from_cache(self, checksum: str, size: int, sink: Sink) -> bool:
        cache = self.cache
        if cache is None:
            return False
        data = cache.get(checksum)
        if data is None or len(data) != size:
            return False
        sink.write(0, data)
        return True

    # --- get ---------------------------------------------------------------------------------
    def get(self, bucket_id: str, key: str, options: ReadOptions, single: bool = False,
            progress: Optional[Callable[[int], None]] = None) -> Result[GetResponse, MictlanXError]:
        started = time.monotonic()
        located = self.locate_single(bucket_id, key, options) if single else self.locate(bucket_id, key, options)
        if located.is_err:
            return Err(located.unwrap_err())
        info = located.unwrap()
        buffer = bytearray(info.size)
        view = memoryview(buffer)

        def sink_for(i: int, size: int) -> Sink:
            start = info.layout.offset(i)
            return _Progress(BufferSink(view[start:start + size]), progress)

        full = _OrderedHash(info, lambda start, size: view[start:start + size])
        transferred = self._transfer(info, options, sink_for, single_key=single,
                                     on_ready=full.add if options.verify_full else None)
        if transferred.is_err:
            return Err(transferred.unwrap_err())
        fetched = transferred.unwrap()
        if options.verify_full and full.hexdigest() != info.layout.full_checksum:
            return Err(IntegrityError(f"{bucket_id}/{key}: full_checksum mismatch (mixed versions?)",
                                      bucket_id=bucket_id, key=key))
        metadatas = [info.chunk_metadata(i, f.size, f.checksum) for i, f in enumerate(fetched)]
        self.logger.info("get bucket=%s key=%s bytes=%d chunks=%d s=%.3f", bucket_id, key, info.size,
                         len(fetched), time.monotonic() - started)
        return Ok(GetResponse(data=view.toreadonly(), metadatas=metadatas))

    # --- get_to_file ---------------------------------------------------------------------------
    def get_to_file(self, bucket_id: str, key: str, output_path: str, fullname: str, options: ReadOptions,
                    overwrite: bool, progress: Optional[Callable[[int], None]] = None) -> Result[str, MictlanXError]:
        located = self.locate(bucket_id, key, options)
        if located.is_err:
            return Err(located.unwrap_err())
        info = located.unwrap()
        directory = os.path.abspath(output_path or ".")
        target = os.path.join(directory, _target_name(fullname, info.chunk0.tags, key))
        try:
            os.makedirs(directory, exist_ok=True)
            if os.path.exists(target):
                if _file_sha256(target) == info.layout.full_checksum:
                    return Ok(target)
                if not overwrite:
                    return Err(AlreadyExistsError(f"{target} exists with other content (overwrite=True replaces it)",
                                                  bucket_id=bucket_id, key=key))
        except OSError as exc:
            return Err(_local_error(exc, target))
        part = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            return Err(_local_error(exc, part))
        committed = False
        try:
            os.ftruncate(fd, info.size)

            def sink_for(i: int, size: int) -> Sink:
                return _Progress(FileSink(fd, info.layout.offset(i)), progress)

            full = _OrderedHash(info, lambda start, size: _fd_region(fd, start, size))
            transferred = self._transfer(info, options, sink_for, on_ready=full.add if options.verify_full else None)
            if transferred.is_err:
                return Err(transferred.unwrap_err())
            if options.verify_full and full.hexdigest() != info.layout.full_checksum:
                return Err(IntegrityError(f"{bucket_id}/{key}: full_checksum mismatch", bucket_id=bucket_id, key=key))
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(part, target)
            committed = True
            _fsync_directory(directory)
            return Ok(target)
        except OSError as exc:
            return Err(_local_error(exc, target))
        finally:  # any failure or interrupt, KeyboardInterrupt included, leaves no .part behind
            if fd >= 0:
                os.close(fd)
            if not committed:
                try:
                    os.unlink(part)
                except FileNotFoundError:
                    pass

    # --- get_chunks ----------------------------------------------------------------------------
    def iter_chunks(self, bucket_id: str, key: str, options: ReadOptions,
                    order: bool) -> Generator[tuple[Metadata, memoryview], None, None]:
        """Verified chunks as they complete (or in index order); raises typed errors."""
        info = self.locate(bucket_id, key, options).unwrap()
        n = info.layout.num_chunks
        full = hashlib.sha256() if (options.verify_full and order) else None
        pending: dict[cf.Future, int] = {}
        ready: dict[int, tuple[Metadata, memoryview]] = {}
        next_submit = 0
        next_yield = 0
        # The cache as get() uses it: chunk 0's checksum from R3, the others from the
        # version's index (force=True skips cache reads).
        cache = None if options.force else self.cache
        index = cache.get_index(info.version) if cache is not None else None
        sums: list[Optional[str]] = [None] * n
        listing = _ChunkChecksums(self.engine, info, options)

        def one(i: int) -> tuple[Metadata, memoryview]:
            size = info.chunk_size(i)
            buffer = bytearray(size)
            sink = BufferSink(memoryview(buffer))
            expected = index[i] if index is not None and len(index) == n else None
            if i == 0 and expected is None:
                expected = info.chunk0.checksum.lower()
            cached = cache.get(expected) if (cache is not None and expected is not None) else None
            if expected is not None and cached is not None and len(cached) == size:
                sink.write(0, cached)
                sums[i] = expected
                return info.chunk_metadata(i, size, expected), memoryview(buffer).toreadonly()

            def make_sink(length: int) -> Sink:
                if length != size:
                    raise IntegrityError(f"{bucket_id}/{chunk_key(key, i)}: {length} bytes, layout expects {size}",
                                         bucket_id=bucket_id, key=chunk_key(key, i))
                return sink

            fetched = self.fetcher.fetch(bucket_id, chunk_key(key, i), options, make_sink, listing.resolver(i))
            if fetched.is_err:
                raise _chunk_error(fetched.unwrap_err(), info, i)
            got = fetched.unwrap()
            if self.cache is not None:
                self.cache.put(got.checksum, bytes(buffer))
            sums[i] = got.checksum
            return info.chunk_metadata(i, got.size, got.checksum), memoryview(buffer).toreadonly()

        try:
            while next_yield < n:
                while next_submit < n and len(pending) + len(ready) < options.max_parallel:
                    pending[self.engine.submit(one, next_submit)] = next_submit  # closed: ValidationError
                    next_submit += 1
                done, _ = wait_in_slices(list(pending))
                for future in done:
                    i = pending.pop(future)
                    item = future.result()  # raises the chunk's typed error
                    if not order:
                        next_yield += 1
                        yield item
                    else:
                        ready[i] = item
                while order and next_yield in ready:
                    item = ready.pop(next_yield)
                    if full is not None:
                        full.update(item[1])
                    next_yield += 1
                    yield item
            if full is not None and full.hexdigest() != info.layout.full_checksum:
                raise IntegrityError(f"{bucket_id}/{key}: full_checksum mismatch", bucket_id=bucket_id, key=key)
            if full is not None and self.cache is not None and all(sums):
                self.cache.put_index(info.version, [c for c in sums if c])  # only a fully verified version
        finally:  # closing the generator early cancels what has not started
            for future in pending:
                future.cancel()


class _Aborted(Exception):
    """The read was abandoned by its caller: a chunk task stops writing."""


class _Guarded:
    """A sink that refuses writes once the read is abandoned."""

    def __init__(self, sink: Sink, aborted: threading.Event) -> None:
        self.sink = sink
        self.aborted = aborted

    def write(self, position: int, piece: bytes) -> None:
        if self.aborted.is_set():
            raise _Aborted()
        self.sink.write(position, piece)


class _Tee:
    """Writes to the real sink and keeps a copy for the cache."""

    def __init__(self, sink: Sink, keep: bytearray) -> None:
        self.sink = sink
        self.keep = keep

    def write(self, position: int, piece: bytes) -> None:
        self.sink.write(position, piece)
        self.keep[position:position + len(piece)] = piece


class _Progress:
    """Reports bytes written (a retry may report a chunk twice; bars are approximate)."""

    def __init__(self, sink: Sink, progress: Optional[Callable[[int], None]]) -> None:
        self.sink = sink
        self.progress = progress

    def write(self, position: int, piece: bytes) -> None:
        self.sink.write(position, piece)
        if self.progress is not None:
            self.progress(len(piece))


def _collect(done: set[cf.Future], in_flight: set[cf.Future], failure: list[BaseException]) -> None:
    for future in done:
        in_flight.discard(future)
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None:
            if not isinstance(error, (MictlanXError, _RestartWithoutIndex)):
                raise error
            failure.append(error)


def _chunk_error(error: MictlanXError, info: ObjectInfo, index: int) -> MictlanXError:
    """A chunk of a located object that R11 does not find is a ``GetChunkError`` (§8.6)."""
    if type(error) is not NotFoundError:
        return error
    missing = GetChunkError(f"{info.bucket_id}/{info.key}: chunk {index} missing ({error.message})",
                            detail={"missing": [index]}, bucket_id=info.bucket_id, key=info.key,
                            router=error.router)
    missing.__cause__ = error
    return missing


def _target_name(fullname: str, tags: dict[str, str], ball_id: str) -> str:
    """The argument, else tag ``fullname``, else ``ball_id`` + ``.extension``; last component only."""
    extension = tags.get("extension", "")
    name = fullname or tags.get("fullname", "") or (f"{ball_id}.{extension}" if extension else ball_id)
    name = os.path.basename(name.replace("\\", "/").rstrip("/"))
    return ball_id if name in ("", ".", "..") else name


def _file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(_HASH_PIECE):
            hasher.update(piece)
    return hasher.hexdigest()


def _fd_region(fd: int, start: int, size: int) -> Iterator[bytes]:
    """The bytes of ``[start, start + size)`` of an open file, in pieces (page cache reads)."""
    offset, end = start, start + size
    while offset < end:
        piece = os.pread(fd, min(_HASH_PIECE, end - offset), offset)
        if not piece:
            return
        yield piece
        offset += len(piece)


class _OrderedHash:
    """SHA-256 of the whole object, fed chunk by chunk in index order as chunks land.

    ``region(start, size)`` returns the chunk's landed bytes (a buffer, or pieces of a
    file). Chunk 0 starts the hash afresh, so a restarted transfer hashes from scratch.
    """

    def __init__(self, info: ObjectInfo, region: Callable[[int, int], Any]) -> None:
        self.info = info
        self.region = region
        self.hasher = hashlib.sha256()

    def add(self, index: int) -> None:
        if index == 0:
            self.hasher = hashlib.sha256()
        data = self.region(self.info.layout.offset(index), self.info.chunk_size(index))
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.hasher.update(data)
        else:
            for piece in data:
                self.hasher.update(piece)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _local_error(exc: OSError, path: str) -> LocalStorageError:
    error = LocalStorageError(f"{path}: {exc.strerror or exc}")
    error.__cause__ = exc
    return error
