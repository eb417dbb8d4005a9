"""Uploading one ball: R5 then R7 on one router per attempt, retried through the dispatcher.

A chunk upload is one R5 (phase 1: metadata, a write group) followed by one R7 (phase 2: the
bytes) on the same router, because a write group lives on the router that created it
(protocol §P4.4); a retry starts again from R5, possibly on another router. A small chunk
(up to ``inline_max`` bytes) travels inside its R5, one request in all
(docs/protocol-extensions.md §2); a router without the extension answers a plain R5 and R7
follows as before.

Two kinds of balls are uploaded, each with its own entry point:

- :meth:`ChunkUploader.upload_object_chunk`: chunk i of an object, key ``{key}_{i}``, the
  five layout tags (and chunk 0's manifest), always at a version (docs/consistency.md §3.1);
- :meth:`ChunkUploader.upload_raw_ball`: ``put_single_chunk``'s raw ball, under its own key
  with the tags the caller gave, unversioned, as upstream writes it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import attrs

from ..protocol.errors import MictlanXError, NotFoundError, PutChunksError
from ..protocol.inline import IF_ABSENT_HEADER
from ..protocol.result import Err, Ok, Result
from ..protocol.router import Router
from ..protocol.versions import STAGE_HEADER, VERSION_HEADER
from .dispatch import Dispatcher
from .layout import MANIFEST_TAG, chunk_key, chunk_tags
from .sources import BytesLike
from .write_options import WritePlan

__all__ = ["ChunkUploader", "Written"]


@attrs.define
class Written:
    """What the router answered for one uploaded ball."""

    index: int
    group_id: str
    exists: bool
    #: the version the router reports (``""``: a router without versions)
    version: str = ""
    #: SHA-256 of the bytes this call sent
    checksum: str = ""
    #: a create-only write (``if_absent``) found the same content stored: nothing was written,
    #: and this is the stored object's chunk count
    identical_chunks: int = 0
    #: the bytes went with R5 and are stored (else a group awaits R7)
    committed: bool = False


class _GroupLost(MictlanXError):
    """R7 answered 404: the write group expired or its router restarted (protocol §P4.4).

    Internal only, with the 404's status and code: :attr:`retryable`, so the chunk upload
    starts again from R5 (client-api §8.1), but not a :attr:`router_fault` (the router
    answered), and no ``retry_after`` (the backoff applies). If attempts run out, the caller
    gets ``cause``, the R7 ``NotFoundError`` itself.
    """

    def __init__(self, cause: MictlanXError) -> None:
        super().__init__(cause.message, cause.status_code, cause.code, cause.detail, bucket_id=cause.bucket_id,
                         key=cause.key)
        self.cause = cause

    @property
    def retryable(self) -> bool:
        return True

    @property
    def router_fault(self) -> bool:
        return False


@attrs.frozen
class _Ball:
    """One ball to upload: where it goes and what it says of itself."""

    index: int
    key: str
    ball_id: str
    data: BytesLike
    checksum: str
    tags: dict[str, str]
    headers: Optional[dict[str, str]]
    update: bool
    if_absent: bool = False


class ChunkUploader:
    """The ball uploads of one client. Thread-safe."""

    def __init__(self, dispatcher: Dispatcher, inline_max: int) -> None:
        self.dispatcher = dispatcher
        #: balls up to this size go with their R5 (0: never)
        self.inline_max = inline_max

    def upload_object_chunk(self, plan: WritePlan, index: int, data: BytesLike, *, num_chunks: int,
                            full_checksum: str, version: str, staged: bool = False, manifest: Optional[str] = None,
                            checksum: Optional[str] = None, if_absent: bool = False) -> Result[Written, MictlanXError]:
        """Chunk ``index`` of the object ``plan.key`` at ``version``.

        ``staged`` stores it invisibly (chunks 1..N-1 before the commit point); ``manifest`` is
        chunk 0's ``chunks_sha256`` tag; ``checksum`` the SHA-256 of ``data`` when the caller
        hashed it already. ``if_absent`` (a small chunk 0 only) asks the router to write only
        if no version is visible; a router that answers without ``committed`` did not check,
        so then no R7 is sent and ``committed`` stays False.
        """
        tags = chunk_tags(plan.tags, plan.key, index, len(data), num_chunks, full_checksum)
        if manifest is not None:
            tags[MANIFEST_TAG] = manifest
        headers = {VERSION_HEADER: version, **({STAGE_HEADER: "1"} if staged else {}),
                   **({IF_ABSENT_HEADER: "1"} if if_absent else {})}
        # A versioned write is ordered by its version; create-only was checked by the put
        # itself (docs/consistency.md §3.1), never per chunk: always Update.
        ball = _Ball(index, chunk_key(plan.key, index), plan.key, data, checksum or hashlib.sha256(data).hexdigest(),
                     tags, headers, update=True, if_absent=if_absent)
        return self._upload(plan, ball)

    def upload_raw_ball(self, plan: WritePlan, index: int, data: BytesLike,
                        tags: dict[str, str]) -> Result[Written, MictlanXError]:
        """``put_single_chunk``'s ball: key ``plan.key`` (the chunk id), ``tags`` as given, in
        the group ``tags["group_id"]``, unversioned."""
        ball = _Ball(index, plan.key, tags.get("group_id", plan.key), data, hashlib.sha256(data).hexdigest(), tags,
                     None, update=plan.update)
        return self._upload(plan, ball)

    def _upload(self, plan: WritePlan, ball: _Ball) -> Result[Written, MictlanXError]:
        """R5 then R7 on one router per attempt, retried per the plan's policy."""
        size = len(ball.data)
        inline = ball.data if size <= self.inline_max else None

        def request(router: Router) -> Result[Written, MictlanXError]:
            metadata = router.put_metadata(
                ball.key, size, ball.checksum, plan.producer_id, plan.content_type, ball.ball_id, plan.bucket_id,
                ball.tags, timeout=plan.timeout, is_disabled=False, replication_factor=plan.rf,
                update=plan.update or ball.update, headers=ball.headers, inline=inline)
            if metadata.is_err:
                return Err(metadata.unwrap_err())
            answer = metadata.unwrap()
            version = str(answer.extra.get("version") or "")
            if inline is not None and answer.extra.get("committed") is True:
                return Ok(Written(ball.index, "", bool(answer.extra.get("exists")), version, ball.checksum,
                                  committed=True))
            if ball.if_absent and inline is not None:
                return Ok(_unchecked_or_identical(ball, answer.extra, version))
            if not answer.tasks_ids:
                return Err(PutChunksError(f"R5 for {ball.key} returned no group id", bucket_id=plan.bucket_id,
                                          key=ball.key))
            group_id = answer.tasks_ids[0]
            if bool(answer.extra.get("exists")):
                return Ok(Written(ball.index, group_id, True, version, ball.checksum))
            stored = router.put_chunked(group_id, ball.data, timeout=plan.timeout, replication_factor=plan.rf)
            if stored.is_err:
                error = stored.unwrap_err()
                return Err(_GroupLost(error) if type(error) is NotFoundError else error)
            return Ok(Written(ball.index, group_id, False, version, ball.checksum))

        result = self.dispatcher.call(f"put {plan.bucket_id}/{plan.key}", request, policy=plan.policy)
        if result.is_err:
            failure = result.unwrap_err()
            if isinstance(failure, _GroupLost):  # out of attempts: the R7 404 itself
                if failure.cause.router is None:
                    failure.cause.router = failure.router
                return Err(failure.cause)
        return result


def _unchecked_or_identical(ball: _Ball, extra: dict[str, Any], version: str) -> Written:
    """A create-only R5 that did not commit: the same content was there (``identical``), or a
    router without the extensions made a group without checking, whose R7 is never sent (the
    caller takes the checked path; the group expires unused)."""
    if extra.get("identical") is True:
        chunks = str(extra.get("num_chunks", "1"))
        return Written(ball.index, "", True, version, ball.checksum,
                       identical_chunks=int(chunks) if chunks.isdigit() else 0)
    return Written(ball.index, "", False, version, ball.checksum)
