"""The chunk cache (client-api §8.3): content-addressed chunks on disk, through diskcache.

- A chunk's key is its SHA-256, so an entry is never stale; a hit is re-hashed anyway and
  deleted on a mismatch (disk corruption, tampering). :meth:`ChunkCache.read_into` reads
  an entry's file straight into the reader's memory and hashes exactly those bytes.
- Per object version ``(bucket_id, key, full_checksum, N)`` the cache also keeps the list of
  its chunk checksums (the *index*), so a read knows which chunks it may take from here.
- Safe across threads and processes (diskcache: SQLite plus files). Any cache failure is
  logged at WARNING and the operation continues as a miss: the cache never fails a read.
- The directory is created on first use, not at construction. After ``fork`` the child
  reopens the cache by itself on first use (or call :meth:`ChunkCache.reopen`).

>>> import hashlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp, ChunkCache(tmp, "10MB", "LRU") as cache:
...     digest = hashlib.sha256(b"abc").hexdigest()
...     cache.put(digest, b"abc"), cache.get(digest)
(True, b'abc')
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import sqlite3
import threading
import time
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import diskcache
import platformdirs

from ..protocol.errors import ValidationError
from ..protocol.etag import etag_checksum
from ..protocol.sizes import parse_size
from .sinks import ChunkSink

__all__ = ["ChunkCache", "EVICTION_POLICIES", "IndexKey", "IndexEntry", "eviction_policy_name", "default_cache_path"]

EVICTION_POLICIES: dict[str, Optional[str]] = {
    "LRU": "least-recently-used",
    "LFU": "least-frequently-used",
    "FIFO": "least-recently-stored",
    "LRS": "least-recently-stored",
    "NONE": None,
}
"""Our policy names (case-insensitive) → diskcache's; ``None`` means no cache."""

IndexKey = Tuple[str, str, str, int]
"""An object version: ``(bucket_id, key, full_checksum, number_of_chunks)``."""

BytesLike = Union[bytes, bytearray, memoryview]


class IndexEntry(NamedTuple):
    """A version's index: its chunk checksums in index order, and the object's size when known."""

    checksums: list[str]
    size: Optional[int] = None

SQLITE_TIMEOUT = 2.0
"""Seconds a cache operation may wait for SQLite's lock; then it is a miss, not a hang."""

CULL_LIMIT = 2
"""Entries diskcache evicts per write when over the limit (its default, 10, empties a small
cache at once); a write that leaves the cache still over its limit culls further."""

STORE_PIECE = 4 * 1024 * 1024
"""Bytes diskcache writes to an entry's file at a time."""

READ_PIECE = 1024 * 1024
"""Bytes of a hit read (and hashed) at a time."""

INDEX_FORMAT = "v2"
"""First line of a stored index: ``v2`` or ``v2 <object size>``, then one checksum a line.
Entries of an older format (no such line) are ignored, as if absent."""

REOPEN_AFTER = 30.0
"""Seconds between attempts to open a cache that failed to open (and one WARNING each)."""

_CACHE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout, pickle.UnpicklingError, EOFError)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def eviction_policy_name(policy: str) -> Optional[str]:
    """diskcache's name for one of ours (``"lru"`` → ``"least-recently-used"``), ``None`` for ``NONE``."""
    if not isinstance(policy, str):
        raise TypeError(f"eviction_policy must be a str, got {type(policy).__name__}")
    try:
        return EVICTION_POLICIES[policy.strip().upper()]
    except KeyError:
        raise ValidationError(
            f"unknown eviction_policy {policy!r}; expected one of {', '.join(EVICTION_POLICIES)}"
        ) from None


def default_cache_path() -> str:
    """``platformdirs.user_cache_dir("mictlanx_sync")/chunks`` (not created here)."""
    return os.path.join(platformdirs.user_cache_dir("mictlanx_sync"), "chunks")


class ChunkCache:
    """A size-bounded, content-addressed cache of chunks shared by threads and processes.

    ``capacity_storage`` is a size (``"1GB"``, ``"512MiB"``, bytes as int); ``"0"`` or the
    policy ``"NONE"`` disable the cache (every ``get`` misses, every ``put`` is dropped).
    Disk use stays within ``size_limit``: diskcache evicts by ``eviction_policy`` on each
    write, and a write that leaves the cache over its limit culls further. A chunk larger
    than the whole cache is not stored.

    Bad arguments raise ``ValidationError`` (``TypeError`` for a wrong type).
    """

    def __init__(
        self,
        path: Optional[Union[str, os.PathLike]] = None,
        capacity_storage: Union[str, int] = "1GB",
        eviction_policy: str = "LRU",
        *,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        self.eviction_policy = eviction_policy_name(eviction_policy)
        self.size_limit = parse_size(capacity_storage)
        self.enabled = self.eviction_policy is not None and self.size_limit > 0
        self.path = os.fspath(path) if path is not None else default_cache_path()
        self.logger = logger if logger is not None else logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._lookup_lock = threading.Lock()
        self._disk: Optional[diskcache.Cache] = None
        self._pid = os.getpid()
        self._retry_open_at = 0.0
        self._closed = False

    # -- chunks -------------------------------------------------------------------------

    def get(self, checksum: str) -> Optional[bytes]:
        """The chunk whose SHA-256 is ``checksum``, or ``None`` (miss, disabled or failure).

        A hit is re-hashed; an entry that does not match is deleted and reported as a miss.
        """
        digest = _normalize(checksum)
        disk = self._open() if digest else None
        if disk is None or digest is None:
            return None
        try:
            value = disk.get(_chunk_key(digest), default=None, retry=False)
            if value is None:
                return None
            if isinstance(value, bytes) and hashlib.sha256(value).hexdigest() == digest:
                return value
            self.logger.warning("chunk cache: entry %s failed its SHA-256 check; deleted", digest)
            disk.delete(_chunk_key(digest), retry=False)
        except _CACHE_ERRORS as error:
            self._warn("get", error)
        return None

    def read_into(self, checksum: str, size: int, sink: ChunkSink) -> bool:
        """Fill ``sink`` with the chunk whose SHA-256 is ``checksum``; ``False`` on a miss.

        The entry must hold exactly ``size`` bytes. An entry stored as a file (every chunk
        of 32 KiB or more) is read with ``readinto`` straight into ``sink``'s memory, and
        exactly those bytes are hashed: on a mismatch the entry is deleted and this is a
        miss, with ``sink`` partly filled (the download that follows refills it all).
        """
        digest = _normalize(checksum)
        disk = self._open() if digest else None
        if disk is None or digest is None:
            return False
        try:
            # read=True: a file handle, opened inside diskcache's short transaction (it
            # updates the entry's access time); the bytes are read after it. Lookups of
            # this process take turns on a lock: SQLite's own busy wait sleeps in steps of
            # milliseconds, which parallel chunk tasks would otherwise pay on every hit.
            with self._lookup_lock:
                value: Any = disk.get(_chunk_key(digest), default=None, read=True, retry=False)
        except _CACHE_ERRORS as error:
            self._warn("get", error)
            return False
        if value is None:
            return False
        try:
            if isinstance(value, bytes):  # a small entry, kept inside SQLite
                available, source = len(value), io.BytesIO(value)
            else:
                available, source = os.fstat(value.fileno()).st_size, value
            if available != size:
                return False  # corrupt, or another cut of the object: a miss; the refetch replaces it
            hasher = hashlib.sha256()
            position = 0
            while position < size:
                # 1 MiB pieces: each is hashed while it is still in the CPU's cache.
                view = sink.region(position, min(READ_PIECE, size - position))
                got = source.readinto(view)
                if not got:
                    return False  # truncated meanwhile
                hasher.update(view[:got])  # exactly the bytes now in the sink's memory
                sink.commit(position, got)
                position += got
            if hasher.hexdigest() == digest:
                return True
            self.logger.warning("chunk cache: entry %s failed its SHA-256 check; deleted", digest)
            disk.delete(_chunk_key(digest), retry=False)
        except _CACHE_ERRORS as error:
            self._warn("get", error)
        finally:
            if not isinstance(value, bytes):
                value.close()
        return False

    def put(self, checksum: str, data: BytesLike, *, verified: bool = True) -> bool:
        """Store ``data`` under ``checksum``; ``True`` if stored.

        Callers pass data already checked against ``checksum`` (a read verifies every
        chunk against its ``ETag``), so by default it is not hashed again here; with
        ``verified=False`` it is, and a mismatch is not stored. A bad entry could only
        cost a miss anyway: every hit is re-hashed. ``data`` is written to the entry's
        file as it is, without a copy in memory.
        """
        digest = _normalize(checksum)
        view = memoryview(data).cast("B")
        if digest is None or view.nbytes > self.size_limit:
            return False
        if not verified and hashlib.sha256(view).hexdigest() != digest:
            self.logger.warning("chunk cache: data does not match checksum %s; not stored", digest)
            return False
        return self._set(_chunk_key(digest), view)

    # -- per-version index of chunk checksums --------------------------------------------

    def get_index(self, version: IndexKey) -> Optional[list[str]]:
        """The chunk checksums of an object version, in index order, or ``None``."""
        entry = self.get_index_entry(version)
        return entry.checksums if entry is not None else None

    def get_index_entry(self, version: IndexKey) -> Optional[IndexEntry]:
        """The index of an object version (checksums, and the object's size if stored)."""
        disk = self._open()
        if disk is None:
            return None
        key = _index_key(version)
        try:
            value = disk.get(key, default=None, retry=False)
            if value is None:
                return None
            lines = value.split("\n") if isinstance(value, str) else []
            head = lines[0].split(" ") if lines else []
            if not head or head[0] != INDEX_FORMAT:
                return None  # an older format: ignored (a verified read replaces it)
            checksums = lines[1:]
            size = int(head[1]) if len(head) == 2 and head[1].isdigit() else None
            if (len(head) <= 2 and (len(head) == 1 or size is not None) and len(checksums) == version[3]
                    and all(_SHA256_HEX.fullmatch(c) for c in checksums)):
                return IndexEntry(checksums, size)
            self.logger.warning("chunk cache: malformed index for %s; deleted", key)
            disk.delete(key, retry=False)
        except _CACHE_ERRORS as error:
            self._warn("get_index", error)
        return None

    def put_index(self, version: IndexKey, checksums: Sequence[str], size: Optional[int] = None) -> bool:
        """Remember the chunk checksums (and the size) of an object version; ``True`` if stored."""
        digests = [_normalize(c) for c in checksums]
        if len(digests) != version[3] or not digests or any(d is None for d in digests) or (
                size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0)):
            self.logger.debug("chunk cache: index for %r not stored (bad checksums)", version)
            return False
        head = INDEX_FORMAT if size is None else f"{INDEX_FORMAT} {size}"
        return self._set(_index_key(version), "\n".join([head, *(d for d in digests if d)]))

    def drop_index(self, version: IndexKey) -> None:
        """Forget an object version's index (an ``ETag`` contradicted it)."""
        disk = self._open()
        if disk is None:
            return
        try:
            disk.delete(_index_key(version), retry=False)
        except _CACHE_ERRORS as error:
            self._warn("drop_index", error)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def disk(self) -> Optional[diskcache.Cache]:
        """The underlying ``diskcache.Cache`` (opened, and its directory created, on first
        use), or ``None`` when disabled, closed or failing."""
        return self._open()

    def volume(self) -> int:
        """Estimated bytes on disk (0 when disabled or failing)."""
        disk = self._open()
        if disk is None:
            return 0
        try:
            return int(disk.volume())
        except _CACHE_ERRORS as error:
            self._warn("volume", error)
            return 0

    def reopen(self) -> None:
        """Forget this process's handle; the next use opens the cache again (after ``fork``)."""
        self._lock = threading.Lock()  # the parent's locks may have been held at fork time
        self._lookup_lock = threading.Lock()
        self._disk = None  # its SQLite connections belong to the parent: not closed here
        self._pid = os.getpid()
        self._retry_open_at = 0.0

    def close(self) -> None:
        """Close the cache; afterwards every ``get`` misses and every ``put`` is dropped. Idempotent."""
        with self._lock:
            self._closed = True
            disk, self._disk = self._disk, None
        if disk is not None:
            try:
                disk.close()
            except _CACHE_ERRORS as error:
                self._warn("close", error)

    def __enter__(self) -> ChunkCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ChunkCache(path={self.path!r}, size_limit={self.size_limit}, "
                f"eviction_policy={self.eviction_policy!r}, enabled={self.enabled})")

    # -- internals ----------------------------------------------------------------------

    def _open(self) -> Optional[diskcache.Cache]:
        if not self.enabled or self._closed:
            return None
        if self._pid != os.getpid():
            self.reopen()
        disk = self._disk
        if disk is not None:
            return disk
        with self._lock:
            if self._disk is not None or self._closed:
                return self._disk
            now = time.monotonic()
            if now < self._retry_open_at:
                return None
            try:
                self._disk = diskcache.Cache(
                    self.path, timeout=SQLITE_TIMEOUT, size_limit=self.size_limit,
                    eviction_policy=self.eviction_policy, cull_limit=CULL_LIMIT,
                )
            except _CACHE_ERRORS as error:
                self._retry_open_at = now + REOPEN_AFTER
                self._warn("open", error)
            return self._disk

    def _set(self, key: str, value: Union[memoryview, str]) -> bool:
        disk = self._open()
        if disk is None:
            return False
        try:
            if isinstance(value, memoryview):
                if value.nbytes < getattr(disk, "disk_min_file_size", 1 << 15):
                    disk.set(key, value.tobytes(), retry=False)  # kept inside SQLite
                else:
                    # As a file, written piece by piece from our memory (given bytes,
                    # diskcache would copy them and write them line by line).
                    disk.set(key, _ViewReader(value), read=True, retry=False)
            else:
                disk.set(key, value, retry=False)
            # diskcache culls at most a few entries per write; finish the job so the
            # cache never stays over its limit.
            if disk.volume() > self.size_limit:
                disk.cull(retry=False)
            return True
        except _CACHE_ERRORS as error:
            self._warn("put", error)
            return False

    def _warn(self, operation: str, error: BaseException) -> None:
        message = " ".join(str(error).split())
        self.logger.warning("chunk cache %s failed at %s (%s: %s); continuing without it",
                            operation, self.path, type(error).__name__, message)


class _ViewReader:
    """A file-like ``read`` over a memoryview, in slices (diskcache's ``set(read=True)``)."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.position = 0

    def read(self, size: int = -1) -> Union[memoryview, bytes]:
        size = min(size if size >= 0 else self.view.nbytes, STORE_PIECE)
        piece = self.view[self.position:self.position + size]
        self.position += piece.nbytes
        return piece if piece.nbytes else b""


def _normalize(checksum: str) -> Optional[str]:
    if not isinstance(checksum, str):
        return None
    digest = etag_checksum(checksum)  # a checksum may arrive as an ETag, quoted
    return digest if digest is not None and _SHA256_HEX.fullmatch(digest) else None


def _chunk_key(digest: str) -> str:
    return f"chunk:{digest}"


def _index_key(version: IndexKey) -> str:
    bucket_id, key, full_checksum, count = version
    return "index:" + json.dumps([bucket_id, key, full_checksum, int(count)], separators=(",", ":"))
