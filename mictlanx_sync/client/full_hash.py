"""The whole-object check of a read: ``full_checksum``, proven or hashed as bytes land.

:class:`FullHash` proves the object from the chunk checksums by chunk 0's manifest
(``chunks_sha256``, :mod:`.layout`) when the object has one, so each byte is hashed once;
else it hashes ``full_checksum`` in byte order as the bytes land, or lets the cache's
verified index prove it.

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

import hashlib
import threading
from typing import Any, Callable, Optional

from .locate import ObjectInfo
from .sinks import ChunkSink

__all__ = ["FullHash"]


class FullHash:
    """The ``full_checksum`` check: SHA-256 of the object in byte order, fed as bytes land.

    ``region(start, size)`` returns landed bytes of the object (the object sink's
    ``landed``: a region of the buffer, or pieces of a
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

    def tracked(self, index: int, sink: ChunkSink) -> ChunkSink:
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

    def __init__(self, full: FullHash, index: int, sink: ChunkSink) -> None:
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
