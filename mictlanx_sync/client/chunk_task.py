"""The chunk task of every object read: cache first, else fetch, then store.

One :class:`ChunkTask` per chunk runs in the client's transfer pool, submitted by the object
read's coordinator. It asks the object sink where its bytes land, tries the chunk cache (a
hit is re-hashed as it is read into that memory), else fetches the chunk from R11 with
replica failover (:mod:`.chunk_fetch`), verified, and then stores the verified bytes in the
cache. What a task needs to know about its object is one :class:`ChunkRead`, shared by all
the chunks of a read.
"""

from __future__ import annotations

import threading
from typing import Optional

import attrs

from ..protocol.errors import GetChunkError, MictlanXError, NotFoundError
from .cache import ChunkCache
from .chunk_fetch import ChunkFetcher, Fetched, RestartWithoutIndex
from .full_hash import FullHash
from .layout import chunk_key
from .locate import ChunkChecksums, ObjectInfo
from .object_sinks import ObjectSink
from .read_options import ReadOptions
from .sinks import ChunkSink, Guarded

__all__ = ["ChunkRead", "ChunkTask", "chunk_error"]


@attrs.frozen
class ChunkRead:
    """What the chunk tasks of one object read share."""

    info: ObjectInfo
    options: ReadOptions
    fetcher: ChunkFetcher
    #: chunk checksums from R12, asked for only when an answer carries no ``ETag``
    listing: ChunkChecksums
    #: where the chunks land (memory, a file, or a buffer each)
    target: ObjectSink
    #: filled with every verified chunk fetched (``None``: the cache is off)
    cache: Optional[ChunkCache]
    #: chunks may be read from the cache (not ``force``)
    use_cache: bool
    #: the cache's index of this version, naming every chunk's checksum (``None``: not in play)
    index: Optional[list[str]] = None
    #: a chunk that contradicts the index restarts the whole read without it (``get``,
    #: ``get_to_file``); otherwise (``get_chunks``, which has yielded chunks already) the
    #: index only finds cache hits and the fetched chunk stands, verified by its ``ETag``
    index_binds: bool = True
    #: the object is a single raw ball, read under its own key
    single_key: bool = False
    #: the whole-object check, fed as bytes land (``None``: the caller checks the object)
    full: Optional[FullHash] = None
    #: set once a chunk needs the network (the read widens its window from the cache's)
    networked: threading.Event = attrs.field(factory=threading.Event)


class ChunkTask:
    """Chunk ``index`` of one read, as a task of its transfer coordinator."""

    def __init__(self, read: ChunkRead, index: int, aborted: threading.Event) -> None:
        self.read = read
        self.index = index
        self.aborted = aborted

    def __call__(self) -> Fetched:
        read, info, i = self.read, self.read.info, self.index
        expected = read.index[i] if read.index is not None else None
        if i == 0 and expected is None:
            expected = info.chunk0.checksum.lower()
        size = info.chunk_size(i)
        sink: ChunkSink = read.target.chunk(i, size)
        if read.full is not None:
            sink = read.full.tracked(i, sink)
        sink = Guarded(sink, self.aborted)  # stops at the next piece once the read is abandoned
        cache = read.cache
        # force=True skips cache reads (the fetched chunk still fills the cache).
        if read.use_cache and cache is not None and expected is not None and cache.read_into(expected, size, sink):
            if read.index is None and read.full is not None:
                read.full.require()
            return Fetched(size, expected, None, from_index=read.index is not None)
        if read.full is not None:
            read.full.require()
        read.networked.set()
        binding = read.index is not None and read.index_binds
        key = info.key if read.single_key else chunk_key(info.key, i)
        result = read.fetcher.fetch(info.bucket_id, key, read.options, sink, size, read.listing.resolver(i),
                                    size_from_index=binding)
        if result.is_err:
            raise result.unwrap_err() if read.single_key else chunk_error(result.unwrap_err(), info, i)
        got = result.unwrap()
        if binding and expected is not None and got.checksum != expected:
            raise RestartWithoutIndex()
        data = sink.data()
        if cache is not None and data is not None:
            cache.put(got.checksum, data)  # the verified bytes, from the sink's memory
        return got


def chunk_error(error: MictlanXError, info: ObjectInfo, index: int) -> MictlanXError:
    """A chunk of a located object that R11 does not find is a ``GetChunkError`` (client-api §8.6)."""
    if type(error) is not NotFoundError:
        return error
    missing = GetChunkError(f"{info.bucket_id}/{info.key}: chunk {index} missing ({error.message})",
                            detail={"missing": [index]}, bucket_id=info.bucket_id, key=info.key,
                            router=error.router)
    missing.__cause__ = error
    return missing
