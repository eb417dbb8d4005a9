"""Metadata, listings and deletes (client-api §8.6, §8.7): the operations that move no chunk.

One-request calls (a stat, a delete) go through the dispatcher; listings walk keyset pages
of 1000 on one router and group chunks into ``Ball`` / ``Bucket``; :meth:`Buckets.walk_objects`
walks the same pages lazily, in bounded memory; ``delete_bucket`` lists, then deletes ball by
ball. A listing that finds an object whose writer died between its commit point and R26
finishes that commit first (docs/consistency.md §3.1). A delete is a versioned tombstone,
ordered after every write of the object this client can see.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, List, Optional

import attrs

from ..protocol.errors import MictlanXError, NotFoundError, ValidationError
from ..protocol.ids import validate_id
from ..protocol.models import (
    Ball,
    Bucket,
    DeleteBucketResponse,
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetMetadataResponse,
    GetRouterBucketMetadataResponse,
    Metadata,
)
from ..protocol.policies import RetryPolicy
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from ..protocol.timeouts import Timeout
from ..protocol.versions import VERSION_HEADER, HybridClock
from .dispatch import Dispatcher
from .layout import chunk_index, chunk_key

__all__ = ["Buckets"]

_LIST_PAGE = 1000
#: Observing a version before a delete is an optimisation of the order, not a requirement.
_OBSERVE_POLICY = RetryPolicy(retries=1, initial_delay=0.1, max_delay=0.2, deadline=10.0)

Headers = Optional[Dict[str, str]]


class Buckets:
    """The metadata, listing and delete operations of one client. Thread-safe."""

    def __init__(self, dispatcher: Dispatcher, clock: HybridClock, logger: logging.Logger) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.logger = logger

    # --- stat and listings -------------------------------------------------------------------------
    def stat(self, bucket_id: str, key: str, timeout: Timeout, headers: Headers,
             policy: Optional[RetryPolicy]) -> Result[GetMetadataResponse, MictlanXError]:
        """R3: the metadata of one ball."""
        return self.dispatcher.call(f"stat {bucket_id}/{key}",
                                    lambda r: r.get_metadata(bucket_id, key, timeout=timeout, headers=headers),
                                    policy=policy)

    def ball(self, bucket_id: str, ball_id: str, timeout: Timeout, headers: Headers,
             policy: Optional[RetryPolicy]) -> Result[Ball, MictlanXError]:
        """R12: an object's chunks as a ``Ball``; ``NotFoundError`` when it has none."""
        listed = self.dispatcher.call(
            f"chunks {bucket_id}/{ball_id}",
            lambda r: r.get_chunks_metadata(ball_id, bucket_id, timeout=timeout, headers=headers), policy=policy)
        if listed.is_err:
            return Err(listed.unwrap_err())
        chunks = listed.unwrap().chunks
        if not chunks:
            return Err(NotFoundError(f"{bucket_id}/{ball_id} has no chunks", bucket_id=bucket_id, key=ball_id))
        return Ok(Ball.from_chunks(bucket_id, ball_id, self._finish_commit(bucket_id, ball_id, chunks, timeout)))

    def list_bucket(self, bucket_id: str, timeout: Timeout, headers: Headers,
                    include_disabled: bool = False) -> Result[GetRouterBucketMetadataResponse, MictlanXError]:
        """R2 on one router: keyset pages of 1000 (``after`` = last key) until a short page; one
        entry per key."""
        try:
            validate_id(bucket_id, "bucket_id")
        except ValidationError as error:
            return Err(error)
        balls: Dict[str, Metadata] = {}
        after: Optional[str] = None
        first: Optional[GetRouterBucketMetadataResponse] = None
        while True:
            def list_page(r: Router, a: Optional[str] = after) -> Result[Any, MictlanXError]:
                return r.get_bucket_metadata(bucket_id, timeout=timeout, headers=headers, end=_LIST_PAGE, after=a,
                                             include_disabled=include_disabled)

            page = self.dispatcher.call(f"list {bucket_id}", list_page)
            if page.is_err:
                return Err(page.unwrap_err())
            answer = page.unwrap()
            first = first or answer
            for meta in answer.balls:
                balls.setdefault(meta.key, meta)
            if len(answer.balls) < _LIST_PAGE:
                break
            after = answer.balls[-1].key
        assert first is not None
        ordered = [balls[k] for k in sorted(balls)]
        return Ok(attrs.evolve(first, balls=ordered))

    def bucket(self, bucket_id: str, timeout: Timeout, headers: Headers) -> Result[Bucket, MictlanXError]:
        """R2 grouped by ``ball_id``."""
        listed = self.list_bucket(bucket_id, timeout, headers)
        if listed.is_err:
            return Err(listed.unwrap_err())
        groups: Dict[str, List[Metadata]] = {}
        for meta in listed.unwrap().balls:
            groups.setdefault(meta.ball_id or meta.key, []).append(meta)
        balls = {bid: Ball.from_chunks(bucket_id, bid, self._finish_commit(bucket_id, bid, metas, timeout))
                 for bid, metas in groups.items()}
        return Ok(Bucket(bucket_id, balls))

    def walk_objects(self, bucket_id: str, page_size: int, timeout: Timeout, headers: Headers) -> Iterator[Ball]:
        """Every object of the bucket, one R2 page of ``page_size`` chunk keys at a time, each
        yielded once, whole, when the walk has passed every key it can have (``Client.iter_objects``)."""
        pending: Dict[str, List[Metadata]] = {}  # objects whose key range the walk is still inside
        seen: set = set()  # chunk keys of the pending objects only (bounded like them)
        after: Optional[str] = None
        while True:
            def list_page(r: Router, a: Optional[str] = after) -> Result[Any, MictlanXError]:
                return r.get_bucket_metadata(bucket_id, timeout=timeout, headers=headers, end=page_size, after=a)

            page = self.dispatcher.call(f"list {bucket_id}", list_page)
            if page.is_err:
                raise page.unwrap_err()
            metas = page.unwrap().balls
            for meta in metas:
                if meta.key in seen:
                    continue
                seen.add(meta.key)
                pending.setdefault(meta.ball_id or meta.key, []).append(meta)
            last = metas[-1].key if metas else None
            finished = len(metas) < page_size or last is None or last == after
            closed = [ball_id for ball_id, chunks in pending.items()
                      if finished or _range_passed(ball_id, chunks, str(last))]
            for ball_id in sorted(closed):
                chunks = pending.pop(ball_id)
                seen.difference_update(m.key for m in chunks)
                yield Ball.from_chunks(bucket_id, ball_id, self._finish_commit(bucket_id, ball_id, chunks, timeout))
            if finished:
                return
            after = last

    def _finish_commit(self, bucket_id: str, ball_id: str, chunks: List[Metadata], timeout: Timeout) -> List[Metadata]:
        """``chunks`` of one object, after finishing its commit when a writer died between
        its commit point and R26 (docs/consistency.md §3.1).

        Chunk 0 is then current while the other chunks are still staged, so listings show
        only chunk 0: the object would be listed and statted as a partial although every
        chunk is stored and pinned reads return it whole. Chunk 0's commit already happened,
        so completing it (R26 at chunk 0's version, idempotent, and refused by the peers for
        anything older than what they hold) is always right; the chunks are then listed again.
        """
        chunk0 = _incomplete_chunk0(chunks, ball_id)
        if chunk0 is None:
            return chunks
        found = self.dispatcher.call(f"stat {bucket_id}/{ball_id}",
                                     lambda r: r.get_metadata(bucket_id, chunk_key(ball_id, 0), timeout=timeout))
        if found.is_err or not found.unwrap().version or found.unwrap().metadata.checksum != chunk0.checksum:
            return chunks
        version = found.unwrap().version
        committed = self.dispatcher.call(f"commit {bucket_id}/{ball_id}",
                                         lambda r: r.commit(bucket_id, ball_id, version, timeout=timeout))
        if committed.is_err:
            self.logger.warning("finishing the commit of %s/%s at version %s failed: %s", bucket_id, ball_id,
                                version, committed.unwrap_err())
            return chunks
        self.logger.info("finished the commit of %s/%s at version %s (its writer stopped before it)",
                         bucket_id, ball_id, version)
        again = self.dispatcher.call(f"chunks {bucket_id}/{ball_id}",
                                     lambda r: r.get_chunks_metadata(ball_id, bucket_id, timeout=timeout))
        return list(again.unwrap().chunks) if again.is_ok and again.unwrap().chunks else chunks

    # --- deletes -----------------------------------------------------------------------------------
    def delete_ball(self, ball_id: str, bucket_id: str, timeout: Timeout, force: bool,
                    headers: Headers) -> Result[DeletedByBallIdResponse, MictlanXError]:
        """R14: every chunk of the object, as a versioned tombstone (docs/consistency.md §3.3):
        it removes the versions written before it and never a write ordered after it."""
        hdrs = {**(headers or {}), "Force": "1" if force else "0"}
        if not any(name.lower() == VERSION_HEADER.lower() for name in hdrs):
            hdrs[VERSION_HEADER] = self.tombstone_version(bucket_id, ball_id, timeout)
        return self.dispatcher.call(f"delete {bucket_id}/{ball_id}",
                                    lambda r: r.delete_by_ball_id(ball_id, bucket_id, timeout=timeout, headers=hdrs))

    def delete_key(self, key: str, bucket_id: str, timeout: Timeout, force: bool,
                   headers: Headers) -> Result[DeletedByKeyResponse, MictlanXError]:
        """R13: one ball; a missing key is ``Ok`` with ``n_deletes=0``."""
        hdrs = {**(headers or {}), "Force": "1" if force else "0"}
        result = self.dispatcher.call(f"delete {bucket_id}/{key}",
                                      lambda r: r.delete(bucket_id, key, headers=hdrs, timeout=timeout))
        if result.is_err and type(result.unwrap_err()) is NotFoundError:
            return Ok(DeletedByKeyResponse(n_deletes=0, key=key))
        return result

    def delete_bucket(self, bucket_id: str, headers: Headers, timeout: Timeout,
                      force: bool) -> Result[DeleteBucketResponse, MictlanXError]:
        """List the whole bucket (disabled balls included), then R14 once per ``ball_id``."""
        started = time.monotonic()
        listed = self.list_bucket(bucket_id, timeout, headers, include_disabled=True)
        if listed.is_err:
            return Err(listed.unwrap_err())
        by_ball: Dict[str, List[str]] = {}
        for meta in listed.unwrap().balls:
            by_ball.setdefault(meta.ball_id or meta.key, []).append(meta.key)
        total = sum(len(keys) for keys in by_ball.values())
        deleted: List[str] = []
        for ball_id, keys in by_ball.items():
            if self.delete_ball(ball_id, bucket_id, timeout, force, headers).is_ok:
                deleted.extend(keys)
        return Ok(DeleteBucketResponse(bucket_id=bucket_id, deleted=len(deleted), failed=total - len(deleted),
                                       total=total, keys=deleted, response_time=time.monotonic() - started))

    def tombstone_version(self, bucket_id: str, ball_id: str, timeout: Timeout) -> str:
        """A version for deleting ``ball_id``, after every version of it this client can
        see: the clock first observes chunk 0's version (R3, best effort), so a delete is
        ordered after the write it was meant to remove even when that writer's clock leads."""
        found = self.dispatcher.call(
            f"delete {bucket_id}/{ball_id}",
            lambda router: router.get_metadata(bucket_id, chunk_key(ball_id, 0), timeout=timeout),
            policy=_OBSERVE_POLICY)
        if found.is_ok:
            self.clock.observe(found.unwrap().version)
        return self.clock.next()


def _range_passed(ball_id: str, chunks: List[Metadata], last: str) -> bool:
    """Whether a walk at ``last`` (keys sorted as strings) can meet no more chunk of the object.

    Chunk keys ``{ball_id}_{i}`` all start with ``{ball_id}_`` and so sort inside that
    prefix's range; the walk has left it once ``last`` sorts after the prefix without
    starting with it. Other keys (raw balls): once past the largest key seen.
    """
    prefix = f"{ball_id}_"
    if all(m.key.startswith(prefix) for m in chunks):
        return last > prefix and not last.startswith(prefix)
    return last > max(m.key for m in chunks)


def _incomplete_chunk0(chunks: List[Metadata], ball_id: str) -> Optional[Metadata]:
    """Chunk 0 of a listed object some of whose chunks (by chunk 0's ``num_chunks`` and
    ``full_checksum``) are not listed; None when the object is complete or not one of ours."""
    chunk0 = next((m for m in chunks if m.key == chunk_key(ball_id, 0)), None)
    if chunk0 is None:
        return None
    try:
        n = int(chunk0.tags.get("num_chunks", "1"))
    except ValueError:
        return None
    full = chunk0.tags.get("full_checksum")
    listed = {chunk_index(m.tags) for m in chunks if m.tags.get("full_checksum") == full}
    return None if all(i in listed for i in range(n)) else chunk0
