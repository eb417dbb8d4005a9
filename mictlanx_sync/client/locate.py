"""Locating an object: what R3 (and the cache's index) say of it before any chunk moves.

:class:`Locator` asks R3 for chunk 0 (its tags give the layout, its version pins every later
request, and a small object's bytes may come with it), then R3 for the last chunk to learn
the size, unless the cache's verified index of this version, agreeing with chunk 0, gives it.
The answer is an :class:`ObjectInfo`. :class:`ChunkChecksums` holds the chunk checksums of one
R12 listing, needed only behind an upstream router that sends no ``ETag`` (client-api §8.6).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable, Optional

import attrs

from ..protocol.errors import GetChunkError, MictlanXError, NotFoundError
from ..protocol.models import Metadata
from ..protocol.result import Err, Ok, Result
from .cache import ChunkCache
from .dispatch import Dispatcher
from .layout import MANIFEST_TAG, ObjectLayout, chunk_key, select_chunks
from .read_options import ReadOptions

__all__ = ["ObjectInfo", "ChunkChecksums", "Locator", "inline_verified"]


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
        """The cache index's key of this object version."""
        return (self.bucket_id, self.key, self.layout.full_checksum, self.layout.num_chunks)

    def agrees_with(self, index: list[str]) -> bool:
        """An index of this version names the chunk checksums R3 gave (first and last)."""
        return (len(index) == self.layout.num_chunks and index[0] == self.chunk0.checksum.lower()
                and (self.last_checksum is None or index[-1] == self.last_checksum.lower()))


def inline_verified(info: ObjectInfo) -> Optional[bytes]:
    """The object's bytes when R3 sent them inline and they hash to chunk 0's checksum, which
    for one chunk is the object's ``full_checksum`` too (checked as well); None otherwise, and
    the read goes on through R11, whose replica failover then finds a good copy (an inline
    copy of other bytes is a bad copy like any other)."""
    data = info.inline0
    if data is None or info.layout.num_chunks != 1 or len(data) != info.size:
        return None
    checksum = hashlib.sha256(data).hexdigest()
    if checksum != info.chunk0.checksum.lower() or checksum != info.layout.full_checksum:
        return None
    return data


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
        """What the fetch of chunk ``index`` consults only if its answer carries no ``ETag``."""
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


class Locator:
    """R3 lookups of the objects one client reads, and the cache's index of their versions."""

    def __init__(self, dispatcher: Dispatcher, cache: Optional[ChunkCache]) -> None:
        self.dispatcher = dispatcher
        self._cache = cache

    @property
    def cache(self) -> Optional[ChunkCache]:
        """The chunk cache when it is on, else ``None``."""
        cache = self._cache
        return cache if cache is not None and cache.enabled else None

    def stat(self, bucket_id: str, key: str, options: ReadOptions) -> Result[Metadata, MictlanXError]:
        """R3 for one ball; a disabled ball reads as not found (its data answers 404)."""
        return self._stat(bucket_id, key, options, inline=False).map(lambda found: found[0])

    def _stat(self, bucket_id: str, key: str, options: ReadOptions,
              inline: bool) -> Result[tuple[Metadata, str, Optional[bytes]], MictlanXError]:
        """R3 → the metadata, its version (``""`` without versions) and, with ``inline``, the
        ball's bytes when the router sent them (small enough; unverified)."""
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
        first = self._stat(bucket_id, chunk_key(key, 0), options, inline=True)
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

    def locate_single(self, bucket_id: str, key: str, options: ReadOptions) -> Result[ObjectInfo, MictlanXError]:
        """A raw ball read as an object of one chunk, checked against its own checksum."""
        found = self._stat(bucket_id, key, options, inline=True)
        if found.is_err:
            return Err(found.unwrap_err())
        meta, version, inline = found.unwrap()
        layout = ObjectLayout(1, meta.checksum.lower(), meta.size)
        return Ok(ObjectInfo(bucket_id, key, meta, layout, meta.size, object_version=version, inline0=inline))

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
