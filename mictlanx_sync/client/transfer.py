"""The chunk transfer loop of reads (client-api §8.3, §8.6): cache first, then R11, in parallel.

Every chunk is a task in the transfer pool, holding one buffer of the client-wide budget
while it runs; a task never waits on another one (§8.2). A hit is read from the cache
straight into the chunk's sink and re-hashed there; a miss is streamed from R11 and
verified, then stored in the cache.

The whole-object check is done here (:class:`FullHash`): proven from the chunk checksums
by chunk 0's manifest (``chunks_sha256``, :mod:`.layout`) when the object has one, so each
byte is hashed once; else ``full_checksum`` hashed in byte order as bytes land, or proven
by the cache's verified index.

**One hash per byte** (issue 13). Every chunk a read accepts was hashed once, as it landed,
and matched the checksum something trusted named (the ``ETag``/R3/R12 checksum of a
fetch, or the cache index's entry for a hit): ``Fetched.checksum`` is that hash of the
landed bytes, never a checksum taken on trust. When chunk 0 carries the manifest M, the
object check is SHA-256(c_0 ‖ … ‖ c_{N-1}) == M over those N checksums (64·N bytes):
chunk 0's checksum, the chunk order, N and each chunk's bytes are all bound by it, so it
holds only for the chunks the writer hashed (which the writer's source checked against
``full_checksum``) barring a SHA-256 collision. A chunk read unpinned, another version's
chunk, or a chunk replaced on the peers by another self-consistent ball all give another
c_i, hence a mismatch. A mismatch is never trusted alone: the ``full_checksum`` pass then
runs over the landed bytes and decides (so a foreign tag of that name, e.g. set by an
upstream writer, can cost a pass but never fail a good read), and ``verify_full`` keeps
its meaning: the object is checked whole, by proof or by hashing. Objects without the tag
(upstream's writers, older clients) get the pass as before; a single-chunk object needs
no tag: its verified c_0 is compared with ``full_checksum``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from typing import Any, Callable, Optional

import attrs

from ..protocol.errors import (
    GetChunkError,
    IntegrityError,
    MictlanXError,
    NotFoundError,
)
from ..protocol.models import Metadata
from ..protocol.result import Err, Ok, Result
from .cache import ChunkCache
from .coordinator import TransferCoordinator
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .fetch import ChunkFetcher, Fetched, ReadOptions
from .layout import MANIFEST_TAG, ObjectLayout, chunk_key, select_chunks
from .sinks import Guarded, Sink

__all__ = ["ObjectInfo", "ChunkChecksums", "RestartWithoutIndex", "FullHash", "ChunkTransfer", "chunk_error"]


@attrs.frozen
class ObjectInfo:
    """What R3 told us about an object: chunk 0's metadata, the layout and the total size."""

    bucket_id: str
    key: str
    chunk0: Metadata
    layout: ObjectLayout
    size: int
    #: the last chunk's checksum (R3), when it was looked up
    last_checksum: Optional[str] = None
    #: the cache's index of this version when it gave ``size`` instead of an R3 on the last
    #: chunk (it agreed with chunk 0); any contradiction then restarts the whole read
    index: Optional[list[str]] = None
    #: the version chunk 0 was read at; every further request is pinned to it (``""``: a
    #: router without versions, reads are not pinned)
    object_version: str = ""
    #: chunk 0's bytes as R3 sent them inline (unverified), for an object of one small chunk
    inline0: Optional[bytes] = attrs.field(default=None, repr=False, eq=False)

    def chunk_metadata(self, index: int, size: int, checksum: str) -> Metadata:
        """Chunk 0's metadata with chunk ``index``'s key, size, checksum and index tags (and
        without chunk 0's manifest, which only chunk 0 carries)."""
        if index == 0:
            return self.chunk0
        tags = {**self.chunk0.tags, "index": str(index), "chunk_size": str(size)}
        tags.pop(MANIFEST_TAG, None)
        return attrs.evolve(self.chunk0, key=chunk_key(self.key, index), size=size, checksum=checksum, tags=tags)

    def chunk_size(self, index: int) -> int:
        if index < self.layout.num_chunks - 1:
            return self.layout.stride
        return self.size - self.layout.offset(index)

    @property
    def version(self) -> tuple[str, str, str, int]:
        return (self.bucket_id, self.key, self.layout.full_checksum, self.layout.num_chunks)

    def agrees_with(self, index: list[str]) -> bool:
        """An index of this version names the chunk checksums R3 gave (first and last)."""
        return (len(index) == self.layout.num_chunks and index[0] == self.chunk0.checksum.lower()
                and (self.last_checksum is None or index[-1] == self.last_checksum.lower()))


class ChunkChecksums:
    """Chunk checksums from one R12 listing, fetched on first need (thread-safe).

    Needed only behind a router that sends no ``ETag`` (upstream, client-api §8.6): then
    each chunk is checked against the listing (§P5 rules 1-3 applied, duplicates dropped).
    Chunk 0's checksum is R3's, so a listing is never needed for it.
    """

    def __init__(self, dispatcher: Dispatcher, info: ObjectInfo, options: ReadOptions,
                 single_key: bool = False) -> None:
        self.dispatcher = dispatcher
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
                listed = self.dispatcher.call(
                    f"chunks {info.bucket_id}/{info.key}",
                    lambda router: router.get_chunks_metadata(info.key, info.bucket_id, timeout=options.timeout,
                                                              headers=options.headers),
                    policy=options.policy)
                if listed.is_err:
                    raise listed.unwrap_err()
                chunks = select_chunks(listed.unwrap().chunks, bucket_id=info.bucket_id, key=info.key)
                self._sums = {i: m.checksum.lower() for i, m in enumerate(chunks)}
            return self._sums.get(index)


#: Chunks one read takes from the cache at once (CPU-bound work): twice the CPUs. On 2 CPUs,
#: reading and hashing 64 MiB of cache files took ~30 ms with 2 threads against 33-80 ms
#: with 10; in full hits under another process's load, 4 did as well as 10.
HIT_PARALLEL = 2 * max(1, os.cpu_count() or 1)


class RestartWithoutIndex(Exception):
    """The cache index contradicted an ETag: read again, ignoring the index."""


class FullHash:
    """The ``full_checksum`` check: SHA-256 of the object in byte order, fed as bytes land.

    ``region(start, size)`` returns landed bytes of the object (a buffer, or pieces of a
    file). Each chunk task reports its progress through :meth:`tracked` (chunks fill from
    their start, and every attempt starts again at 0); the bytes just past the hashed
    prefix are fed to the hash by whichever thread finds the hasher free (:meth:`pump`
    never waits: a task in the transfer pool never waits on another). So the hash follows
    the transfer instead of starting when chunk 0 is complete, and little is left for
    :meth:`verdict` in the calling thread. Bytes of an attempt that is later refilled (a
    retry, a bad copy, a corrupt cache entry) may have been hashed: a refill of a chunk
    the hash has reached starts the hash again from byte 0, so only final bytes count.

    **Proof instead of hashing.** A version's index ``(bucket_id, key, full_checksum, N)``
    → chunk checksums is stored only after a read of that version hashed the whole object
    to ``full_checksum``, with each chunk hashing to the index's entry. When *every*
    chunk of a read comes from the cache by that index, each one re-hashed (in the very
    memory it was read into) to its entry and of the layout's size, the object is,
    barring a SHA-256 collision, byte for byte the one that was verified, so hashing it
    again would prove nothing more: :meth:`verdict` is then ``True`` without a pass. Any
    chunk from the network (or from the cache without the index) calls :meth:`require`,
    and the pass runs from byte 0. The index itself is local state with the trust of the
    cache directory; one that contradicts R3 (first or last chunk checksum) or an
    ``ETag`` is dropped.

    **Proof by the manifest.** When chunk 0 carries ``chunks_sha256`` (module docstring),
    or the object is one chunk, no pass runs while the chunks land (:meth:`require` is a
    no-op): :meth:`verdict` hashes the N verified chunk checksums instead (one chunk: its
    checksum is ``full_checksum``), and runs the pass only when they do not match.
    """

    def __init__(self, info: ObjectInfo, region: Callable[[int, int], Any], wanted: bool = True) -> None:
        self.info = info
        self.region = region
        self.wanted = wanted  # False: nobody needs the check (verify_full=False, no index to store)
        self.manifest = info.layout.manifest  # None: no manifest, or one chunk
        self.provable = info.layout.provable  # a manifest, or one chunk (its checksum is full_checksum)
        self.proven = False  # the manifest matched the verified chunk checksums
        self.touched = False  # a chunk did not come from the verified index
        self._state = threading.Lock()  # guards the fields below; held only briefly
        self._feeding = threading.Lock()  # held by the one thread feeding the hasher
        self._epoch = 0
        self.begin(lazy=False)

    def begin(self, lazy: bool) -> None:
        """A new attempt (no chunk task running): ``lazy`` when every chunk may come from
        the verified index."""
        with self._state:
            self.required = self.wanted and not lazy and not self.provable
            self.lazy = lazy
            self.touched = False
            self._checksums: Optional[list[str]] = None
            self.proven = False
            self._restart()
            self._landed = [0] * self.info.layout.num_chunks  # bytes landed from each chunk's start

    def _restart(self) -> None:
        self.hasher = hashlib.sha256()
        self._chunk = 0  # the hash covers chunks < _chunk, and _offset bytes of chunk _chunk
        self._offset = 0
        self._claimed = 0  # ... and a feeder may be hashing chunk _chunk up to _claimed
        self._epoch += 1

    def require(self) -> None:
        """A chunk did not come from the verified index: the pass is needed (any thread),
        unless the manifest can prove the object."""
        self.touched = True
        if self.wanted and not self.provable:
            self.required = True
            self.pump()

    def tracked(self, index: int, sink: Sink) -> Sink:
        return _Tracked(self, index, sink)

    def refill(self, index: int) -> None:
        """Chunk ``index`` is filled again from its start (a new attempt)."""
        with self._state:
            self._landed[index] = 0
            if self._chunk > index or (self._chunk == index and max(self._offset, self._claimed) > 0):
                self._restart()  # the hash has taken (or is taking) bytes that are being replaced

    def landed(self, index: int, upto: int) -> None:
        """Chunk ``index`` holds ``upto`` bytes from its start."""
        with self._state:
            self._landed[index] = max(self._landed[index], upto)
        self.pump()

    def pump(self) -> None:
        """Feed the hash with landed bytes past its prefix, unless another thread is."""
        while self.required and self._feeding.acquire(blocking=False):
            try:
                self._feed()
            finally:
                self._feeding.release()
            if not self._ready():  # else bytes landed while we held the hasher: go again
                return

    def _ready(self) -> bool:
        with self._state:
            n = self.info.layout.num_chunks
            return self._chunk < n and self._landed[self._chunk] > self._offset

    def _feed(self) -> None:
        layout, n = self.info.layout, self.info.layout.num_chunks
        while True:
            with self._state:
                landed = self._landed
                while self._chunk < n and self._offset == landed[self._chunk] == self.info.chunk_size(self._chunk):
                    self._chunk, self._offset = self._chunk + 1, 0
                if self._chunk >= n or landed[self._chunk] <= self._offset:
                    return
                chunk, start, end = self._chunk, self._offset, landed[self._chunk]
                epoch, hasher = self._epoch, self.hasher
                self._claimed = end
            data = self.region(layout.offset(chunk) + start, end - start)
            if isinstance(data, (bytes, bytearray, memoryview)):
                hasher.update(data)
            else:
                for piece in data:
                    hasher.update(piece)
            with self._state:
                if self._epoch == epoch:
                    self._offset, self._claimed = end, 0
                # else: restarted meanwhile (a refill); what was just hashed is dropped

    def verified_chunks(self, checksums: list[str]) -> None:
        """After the transfer: each chunk's SHA-256 as it was verified when it landed (in
        index order), for the manifest's proof in :meth:`verdict`."""
        self._checksums = list(checksums)

    def verdict(self) -> Optional[bool]:
        """After the transfer (every chunk landed, no task running): ``True`` verified
        (hashed or proven), ``False`` mismatch, ``None`` not checked (not wanted)."""
        if not self.wanted:
            return None
        if self.provable and not self.required:
            checksums = self._checksums
            if checksums is not None and self.info.layout.proves(checksums):
                self.proven = True
                return True
            # No proof: the data pass decides (module docstring), over the landed bytes.
            self.required = True
        if not self.required:
            return True  # every chunk from the verified index: see the class docstring
        with self._feeding:
            self._feed()
            with self._state:
                complete = self._chunk >= self.info.layout.num_chunks
        return complete and self.hasher.hexdigest() == self.info.layout.full_checksum

    @property
    def computed(self) -> bool:
        """Whether the whole object was checked by this read, hashed or proven by the
        manifest (an index may be stored after a match); ``False`` when the verified
        index alone served it."""
        return self.wanted and (self.required or (self.proven and (self.touched or not self.lazy)))


class _Tracked:
    """Reports a chunk's refills and landed bytes to the :class:`FullHash`."""

    def __init__(self, full: FullHash, index: int, sink: Sink) -> None:
        self.full = full
        self.index = index
        self.sink = sink

    def region(self, position: int, size: int) -> memoryview:
        if position == 0:
            self.full.refill(self.index)
        return self.sink.region(position, size)

    def commit(self, position: int, size: int) -> None:
        self.sink.commit(position, size)
        self.full.landed(self.index, position + size)

    def data(self) -> Optional[memoryview]:
        return self.sink.data()


class ChunkTransfer:
    """Moves every chunk of one object into its sink: cache first, then R11, in parallel."""

    def __init__(self, dispatcher: Dispatcher, executor: BoundedExecutor, cache: Optional[ChunkCache],
                 fetcher: ChunkFetcher) -> None:
        self.dispatcher = dispatcher
        self.executor = executor
        self._cache = cache
        self.fetcher = fetcher

    @property
    def cache(self) -> Optional[ChunkCache]:
        cache = self._cache
        return cache if cache is not None and cache.enabled else None

    def index_of(self, info: ObjectInfo, options: ReadOptions) -> Optional[list[str]]:
        """The cache's index of this version, unless ``force`` or it contradicts R3."""
        if info.index is not None:
            return info.index  # looked up (and checked) by the locate
        cache = None if options.force else self.cache
        index = cache.get_index(info.version) if cache is not None else None
        if index is not None and not info.agrees_with(index):
            assert cache is not None
            cache.drop_index(info.version)
            return None
        return index

    def run(self, info: ObjectInfo, options: ReadOptions, sink_for: Callable[[int, int], Sink],
            full: FullHash, single_key: bool = False) -> Result[list[Fetched], MictlanXError]:
        """Fetch every chunk into ``sink_for(index, size)``; feeds ``full`` as bytes land."""
        index = None if single_key else self.index_of(info, options)
        use_cache = not options.force and self.cache is not None
        try:
            return self._once(info, options, sink_for, index, single_key, use_cache, full)
        except RestartWithoutIndex:
            cache = self.cache
            if cache is not None:
                cache.drop_index(info.version)
            if info.index is not None:
                raise  # the size came from the index too: the caller locates the object again
            return self._once(info, options, sink_for, None, single_key, use_cache, full)

    def _once(self, info: ObjectInfo, options: ReadOptions, sink_for: Callable[[int, int], Sink],
              index: Optional[list[str]], single_key: bool, use_cache: bool,
              full: FullHash) -> Result[list[Fetched], MictlanXError]:
        n = info.layout.num_chunks
        full.begin(lazy=index is not None)
        listing = ChunkChecksums(self.dispatcher, info, options, single_key)
        # Chunks expected from the cache (the index names them all) are CPU work: reading a
        # file and hashing it. Many more of them at once than there are CPUs only thrash
        # caches and memory bandwidth, so at most ``HIT_PARALLEL`` are in flight until a
        # chunk needs the network; then ``max_parallel`` applies.
        networked = threading.Event()
        hit_limit = min(options.max_parallel, HIT_PARALLEL) if index is not None else options.max_parallel
        coordinator = TransferCoordinator(
            self.executor, lambda: options.max_parallel if networked.is_set() else hit_limit)
        aborted = coordinator.aborted

        def one(i: int) -> tuple[int, Fetched]:
            key_i = info.key if single_key else chunk_key(info.key, i)
            expected = index[i] if index is not None else None
            if i == 0 and expected is None:
                expected = info.chunk0.checksum.lower()
            size = info.chunk_size(i)
            sink = Guarded(full.tracked(i, sink_for(i, size)), aborted)
            cache = self.cache
            # force=True skips cache reads (the fetched chunk still fills the cache).
            if use_cache and cache is not None and expected is not None and cache.read_into(expected, size, sink):
                if index is None:
                    full.require()
                return i, Fetched(size, expected, None, from_index=index is not None)
            full.require()
            networked.set()

            def make_sink(length: int) -> Sink:
                if length != size and index is not None:
                    raise RestartWithoutIndex()  # the index (or the size it gave) is wrong
                if length != size:
                    raise IntegrityError(f"{info.bucket_id}/{key_i}: {length} bytes, layout expects {size}",
                                         bucket_id=info.bucket_id, key=key_i)
                return sink

            result = self.fetcher.fetch(info.bucket_id, key_i, options, make_sink, listing.resolver(i))
            if result.is_err:
                raise result.unwrap_err() if single_key else chunk_error(result.unwrap_err(), info, i)
            got = result.unwrap()
            if expected is not None and got.checksum != expected and index is not None:
                raise RestartWithoutIndex()
            data = sink.data()
            if cache is not None and data is not None:
                cache.put(got.checksum, data)  # the verified bytes, from the sink's memory
            return i, got

        fetched: list[Optional[Fetched]] = [None] * n
        try:
            for _task, (i, got) in coordinator.run(functools.partial(one, i) for i in range(n)):
                fetched[i] = got
        except MictlanXError as error:
            return Err(error)
        return Ok([f for f in fetched if f is not None])


def chunk_error(error: MictlanXError, info: ObjectInfo, index: int) -> MictlanXError:
    """A chunk of a located object that R11 does not find is a ``GetChunkError`` (§8.6)."""
    if type(error) is not NotFoundError:
        return error
    missing = GetChunkError(f"{info.bucket_id}/{info.key}: chunk {index} missing ({error.message})",
                            detail={"missing": [index]}, bucket_id=info.bucket_id, key=info.key,
                            router=error.router)
    missing.__cause__ = error
    return missing
