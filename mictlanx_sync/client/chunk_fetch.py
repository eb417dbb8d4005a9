"""Fetching one chunk: stream R11, verify count and SHA-256, fail over to other replicas.

A bad copy (another checksum or size, or a short body) sends the next attempt to another
replica with ``Peer-Id`` (client-api §8.6 step 3, :class:`_Replicas`).

A fetch reads the body into a chunk sink (:mod:`.sinks`) piece by piece, straight from the
socket into the sink's memory, and hashes the very bytes it placed there. Positions are
relative to the chunk start, so a retry simply overwrites what a broken attempt wrote.
The router's ``ETag`` is the chunk's checksum and ``Content-Length`` its size
(client-api §8.6).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Union

import attrs

from ..protocol.errors import IntegrityError, MictlanXError, NotFoundError, UpstreamProtocolError
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from ..protocol.stream import DataStream
from .dispatch import Dispatcher
from .read_options import ReadOptions
from .sinks import ChunkSink

__all__ = ["Fetched", "ChunkFetcher", "RestartWithoutIndex", "SHORT_BODY"]


@attrs.frozen
class Fetched:
    """One chunk read and verified: its size, the SHA-256 of the bytes that landed, who served it."""

    size: int
    checksum: str
    peer_id: Optional[str]
    #: served from the cache and re-hashed to the checksum the version's index names
    from_index: bool = False


class RestartWithoutIndex(Exception):
    """A chunk contradicted the cache's index of its version (another size or checksum than
    the index names): the read starts again, ignoring the index (which is dropped)."""

#: What a chunk's bytes must hash to: a checksum required *in addition* to the ``ETag``, or a
#: callable consulted only when the router sends no ``ETag`` (upstream routers; client-api §8.6 reads
#: R12 then). The callable may raise a ``MictlanXError``.
Expected = Union[None, str, Callable[[], Optional[str]]]


class ChunkFetcher:
    """Streams verified chunks through the client's routers (its dispatcher). Thread-safe."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def fetch(self, bucket_id: str, key: str, options: ReadOptions, sink: ChunkSink, size: int,
              expected_checksum: Expected = None, *, size_from_index: bool = False) -> Result[Fetched, MictlanXError]:
        """Chunk ``key`` (``size`` bytes) into ``sink``, through the retry layer; a bad copy moves
        the next attempt to another replica.

        An answer of another size is a bad copy, unless ``size_from_index`` (the size, or the
        checksum, came from the cache's index of the version): then the index is what is
        wrong, and ``RestartWithoutIndex`` is raised.

        A bad copy is a checksum mismatch (``IntegrityError``) or a short body (the body
        ended or the connection broke before ``Content-Length`` bytes). Either way the
        next attempt is pinned with ``Peer-Id`` to another replica (client-api §8.6 step 3); every
        attempt, pinned or not, counts against the one retry budget (``max_retries``,
        deadline). See :class:`_Replicas` for the order and the final error.
        """
        expect = _Expect(sink, size, size_from_index, expected_checksum)
        result = self._fetch(bucket_id, key, options, expect)
        if result.is_err and type(result.unwrap_err()) is NotFoundError and options.pinned:
            # No copy at the object's version: a chunk written as a put of its own (upstream's
            # layout, put_single_chunk) has a version of its own. Its newest copy is read
            # instead, still verified by its checksum and by full_checksum over the object.
            result = self._fetch(bucket_id, key, options.unpinned(), expect)
        return result

    def _fetch(self, bucket_id: str, key: str, options: ReadOptions, expect: _Expect) -> Result[Fetched, MictlanXError]:
        replicas = _Replicas(self, bucket_id, key, options, expect)
        result = self.dispatcher.call(f"get {bucket_id}/{key}", replicas.attempt, policy=options.policy)
        if result.is_err and isinstance(result.unwrap_err(), _BadCopy):
            return Err(replicas.final())  # the budget ran out with copies left to try
        return result

    def _stream(self, router: Router, bucket_id: str, key: str, options: ReadOptions, expect: _Expect,
                peer_id: Optional[str] = None) -> Result[Fetched, MictlanXError]:
        opened = router.open_stream(bucket_id, key, timeout=options.timeout, headers=options.request_headers(peer_id),
                                    direct=options.direct, direct_timeout=options.direct_timeout)
        if opened.is_err:
            return Err(opened.unwrap_err())
        context = {"bucket_id": bucket_id, "key": key, "router": router.base_url()}
        with opened.unwrap() as stream:
            try:
                return Ok(self._consume(stream, options, expect, context))
            except MictlanXError as error:  # the stream's own errors are typed already
                return Err(error)

    @staticmethod
    def _consume(stream: DataStream, options: ReadOptions, expect: _Expect, context: dict[str, Any]) -> Fetched:
        served_by = stream.peer_id
        length = stream.content_length
        if length is None:
            raise UpstreamProtocolError("data answer without a valid Content-Length", **context)
        if length < 0:
            raise UpstreamProtocolError(f"data answer with Content-Length {length}", **context)
        expected_checksum = expect.checksum
        fixed = expected_checksum.lower() if isinstance(expected_checksum, str) else None
        etag = stream.checksum
        if etag is None:
            etag = fixed
        if etag is None and callable(expected_checksum):  # an upstream router: no ETag
            found = expected_checksum()
            etag = found.lower() if found else None
        if etag is None:
            raise IntegrityError("data answer without an ETag: cannot verify", **context)
        sink = expect.sink_for(length, served_by, context)
        hasher = hashlib.sha256()
        received = 0
        try:
            while received < length:
                view = sink.region(received, min(options.read_piece, length - received))
                got = stream.readinto(view)
                if not got:
                    raise UpstreamProtocolError(f"short body: {received} of {length} bytes from peer {served_by}",
                                                **context)
                hasher.update(view[:got])  # exactly the bytes now in the sink's memory
                sink.commit(received, got)
                received += got
        except UpstreamProtocolError as error:
            # The body ended, or the connection broke, before Content-Length bytes: a short
            # body, which fails over to another replica like a mismatch (client-api §8.6 step 3). A
            # read timeout (RequestTimeoutError) is not one: it is retried per client-api §8.1.
            error.detail = {**(error.detail or {}), SHORT_BODY: {"received": received, "expected": length},
                            "peer_id": served_by}
            raise
        if stream.readinto(memoryview(bytearray(1))):  # a chunked body may run on: never accepted
            raise UpstreamProtocolError(f"more than the announced {length} bytes", **context)
        stream.release()
        actual = hasher.hexdigest()
        if actual != etag or (fixed is not None and actual != fixed):
            raise IntegrityError(f"checksum mismatch from peer {served_by}: got {actual}, expected {etag}",
                                 detail={"peer_id": served_by, "expected": etag, "received": actual}, **context)
        return Fetched(length, actual, served_by)


#: ``detail`` key of an ``UpstreamProtocolError`` raised mid-body (received/expected bytes).
SHORT_BODY = "short_body"


def _bad_copy(error: MictlanXError) -> Optional[str]:
    """``"corrupt"`` (a copy of other bytes or size), ``"short"`` (cut mid-body) or ``None``."""
    if isinstance(error, IntegrityError):
        return "corrupt"
    if isinstance(error, UpstreamProtocolError) and SHORT_BODY in (error.detail or {}):
        return "short"
    return None


class _BadCopy(MictlanXError):
    """A bad copy while another copy is left to try: ends the attempt so that the retry layer
    tries again, moving to another router (client-api §8.1). Its status and code are the bad copy's
    own; what the retry layer needs it states itself:

    - :attr:`retryable`: always (another copy is left);
    - :attr:`retry_after`: 0 with a fresh replica next (a replica that has not been asked has
      no reason to wait), else ``None`` (the backoff applies);
    - :attr:`router_fault`: when the copy was cut in transport (the router's breaker counts
      it, as it counts any broken transfer); not for a mismatch (the router answered; a
      peer's copy is bad).

    Never returned to callers: :meth:`_Replicas.final` replaces it.
    """

    def __init__(self, error: MictlanXError, immediate: bool) -> None:
        super().__init__(error.message, error.status_code, error.code, error.detail,
                         bucket_id=error.bucket_id, key=error.key, router=error.router)
        self.error = error
        self.immediate = immediate

    @property
    def retryable(self) -> bool:
        return True

    @property
    def retry_after(self) -> Optional[float]:
        return 0.0 if self.immediate else None

    @property
    def router_fault(self) -> bool:
        return _bad_copy(self.error) == "short"


@attrs.frozen
class _Expect:
    """What one chunk fetch expects: its sink and size, and the checksum it must hash to."""

    sink: ChunkSink
    size: int
    size_from_index: bool
    checksum: Expected

    def sink_for(self, length: int, served_by: Optional[str], context: dict[str, Any]) -> ChunkSink:
        """The sink for an answer of ``length`` bytes, if that is the chunk's size."""
        if length == self.size:
            return self.sink
        if self.size_from_index:
            raise RestartWithoutIndex()  # the index (or the size it gave) is wrong
        key = context.get("key")
        raise IntegrityError(f"{context.get('bucket_id')}/{key}: {length} bytes, layout expects {self.size}",
                             detail={"peer_id": served_by}, **context)  # a size the layout rules out: a bad copy


class _Replicas:
    """The attempts of one chunk read, moving across replicas on bad copies (client-api §8.6 step 3).

    Runs as the ``request`` of one :meth:`Dispatcher.call`, so every attempt shares the retry
    budget and each retry moves to another router. Until a bad copy, attempts are
    unpinned (the router picks the replica). After one, R1 (on the router that served
    it) lists the replicas, and each following attempt sends ``Peer-Id``:

    1. a replica not yet asked, in R1's ranking order, at once;
    2. when none is left, and this router has not listed them, R1 through it (other
       routers may know other replicas);
    3. then, with backoff, a replica asked already but not proven bad: its copy came
       *short* (a dropped connection is no proof of a bad copy), or a pinned attempt
       failed in transport or with a 5xx. A replica whose copy had another checksum or
       size (``corrupt``) or that answered 404 is never asked again.

    **Final error.** ``IntegrityError`` when every copy read was proven bad (another
    checksum or size). If some copy only came short, nothing proves the data bad: the
    honest error is that transport error (``UpstreamProtocolError``, retryable by the
    caller), not an ``IntegrityError`` that would claim corruption.
    """

    def __init__(self, fetcher: ChunkFetcher, bucket_id: str, key: str, options: ReadOptions,
                 expect: _Expect) -> None:
        self.fetcher = fetcher
        self.bucket_id = bucket_id
        self.key = key
        self.options = options
        self.expect = expect
        self.failing = False  # a bad copy was seen: attempts are pinned from now on
        self.replicas: list[str] = []  # listed by R1, ranking order, first listing first
        self.listed_via: set[str] = set()  # routers (base URLs) whose R1 succeeded
        self.asked: dict[str, int] = {}  # peer → attempt number it was last pinned in
        self.corrupt: set[str] = set()  # served another checksum or size: never asked again
        self.gone: set[str] = set()  # pinned, it answered 404: never asked again
        #: peer (None: unnamed) → its last short body, while no copy of it is proven bad
        self.short: dict[Optional[str], MictlanXError] = {}
        self.last_corrupt: Optional[MictlanXError] = None
        self.last_bad: Optional[MictlanXError] = None  # the last bad copy (or 404 when pinned)
        self.attempts = 0

    def attempt(self, router: Router) -> Result[Fetched, MictlanXError]:
        self.attempts += 1
        pin: Optional[str] = None
        if self.failing:
            pin = self._pick()
            if pin is None and not self.listed_via:
                self._list(router)  # every R1 so far failed: this router may list the replicas
                pin = self._pick()
            if pin is None:
                if not self.listed_via and self.last_bad is not None:
                    return Err(_BadCopy(self.last_bad, immediate=False))  # R1 failed again: retry
                return Err(self.final())
            self.asked[pin] = self.attempts
        result = self.fetcher._stream(router, self.bucket_id, self.key, self.options, self.expect, peer_id=pin)
        if result.is_ok:
            return result
        error = result.unwrap_err()
        kind = _bad_copy(error)
        if kind is None and not (pin is not None and type(error) is NotFoundError):
            return result  # a transport error or an answer: the retry layer decides (client-api §8.1)
        peer = pin if pin is not None else (error.detail or {}).get("peer_id")
        peer = peer if isinstance(peer, str) and peer else None  # None: the router named no peer
        self.failing = True
        self.last_bad = error
        if kind is None:
            self.gone.add(str(pin))
        elif kind == "corrupt":
            self.last_corrupt = error
            if peer is not None:
                self.short.pop(peer, None)  # proven bad after all
                self.corrupt.add(peer)
        else:
            self.short.pop(peer, None)
            self.short[peer] = error  # the most recent last
        if peer is not None and peer not in self.asked:
            self.asked[peer] = self.attempts
        if not self._fresh():
            self._list(router)  # first bad copy, or replicas used up: ask this router too
        if self._fresh():
            return Err(_BadCopy(error, immediate=True))
        if self._pick() is not None or not self.listed_via:
            # a copy left to try, or no R1 succeeded yet (another router may list the replicas)
            return Err(_BadCopy(error, immediate=False))
        return Err(self.final())  # not retryable: every copy proven bad

    def _fresh(self) -> list[str]:
        return [p for p in self.replicas if p not in self.asked]

    def _pick(self) -> Optional[str]:
        fresh = self._fresh()
        if fresh:
            return fresh[0]
        # Asked already, but not proven bad: a short body, or a transport error or 5xx on a
        # pinned attempt (a peer restarting) may not happen again. Least recently asked first.
        again = [p for p in self.asked if p not in self.corrupt and p not in self.gone]
        return min(again, key=lambda p: self.asked[p]) if again else None

    def _list(self, router: Router) -> None:
        if router.base_url() in self.listed_via:
            return
        listed = router.get_size(self.bucket_id, self.key, timeout=self.options.timeout,
                                 headers=self.options.headers or None)
        if listed.is_err:
            return  # the next attempt's router may list them
        self.listed_via.add(router.base_url())
        for replica in listed.unwrap():
            if replica.peer_id not in self.replicas:
                self.replicas.append(replica.peer_id)

    def final(self) -> MictlanXError:
        """The error once no copy is left to try, or the budget is spent (class docstring)."""
        if self.short:
            return next(reversed(self.short.values()))
        last = self.last_corrupt
        reason = f" ({last.message})" if last is not None else ""
        return IntegrityError(f"{self.bucket_id}/{self.key}: every replica failed verification{reason}",
                              detail={"bad_peers": sorted(self.corrupt)}, bucket_id=self.bucket_id, key=self.key)
