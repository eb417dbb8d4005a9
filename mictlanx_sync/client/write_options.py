"""``WritePlan``: what one put decides before its first chunk, made here from upstream's arguments.

``put``, ``put_file``, ``put_chunks`` and ``put_single_chunk`` (and every bulk item) take
upstream's keyword arguments (client-api §8.5); the functions here validate them into one
frozen :class:`WritePlan` and a source factory (:mod:`.sources`: bytes, a file, or chunks the
caller cut). The put itself (:mod:`.object_write`) then only moves chunks.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Union

import attrs

from ..protocol.models import Chunk, Chunks
from ..protocol.policies import RetryPolicy
from ..protocol.timeouts import Timeout, TimeoutArg, resolve_timeout
from .content_types import DEFAULT_CONTENT_TYPE, content_type_for
from .layout import validate_object_key, validate_tags
from .options import chunk_size_bytes, positive_int, retry_policy
from .sources import BytesSource, ChunkSource, FileSource, IterableSource, ListSource, check_chunk_id

__all__ = ["CONTENT_TYPE", "WritePlan", "WriteDefaults", "SourceFactory", "write_plan", "bytes_put", "file_put",
           "chunks_put"]

#: What an object is stored as when nothing names its type.
CONTENT_TYPE = DEFAULT_CONTENT_TYPE

#: Opens the put's chunk source when the put starts (closed by the put).
SourceFactory = Callable[[], ChunkSource]


@attrs.frozen
class WritePlan:
    """Everything one put decides before sending its first chunk."""

    bucket_id: str
    key: str
    rf: int
    tags: dict[str, str]
    update: bool
    policy: RetryPolicy
    timeout: Timeout
    max_concurrency: int
    producer_id: str
    content_type: str = CONTENT_TYPE


@attrs.frozen
class WriteDefaults:
    """The client's defaults every put starts from."""

    #: sent as ``producer_id`` (the client's id)
    producer_id: str
    retry: RetryPolicy
    timeout: Timeout
    #: the default ``max_concurrency`` of ``put_file`` and ``put_chunks``
    max_workers: int


def write_plan(defaults: WriteDefaults, bucket_id: str, key: str, *, rf: int, tags: Any, update: bool,
               timeout: TimeoutArg, max_tries: Optional[int], max_backoff: Optional[float], max_concurrency: int,
               content_type: str = CONTENT_TYPE) -> WritePlan:
    """A plan from one call's arguments; ``ValidationError`` (or ``TypeError``) for a bad one."""
    validate_object_key(bucket_id, key)
    return WritePlan(
        bucket_id=bucket_id, key=key, rf=positive_int("rf", rf), tags=validate_tags(tags), update=bool(update),
        policy=retry_policy(defaults.retry, max_tries=max_tries, max_backoff=max_backoff),
        timeout=resolve_timeout(timeout, defaults.timeout),
        max_concurrency=positive_int("max_concurrency", max_concurrency), producer_id=defaults.producer_id,
        content_type=content_type)


def bytes_put(defaults: WriteDefaults, bucket_id: str, key: str, value: Union[bytes, bytearray, memoryview], *,
              chunk_size: Union[str, int] = "256kb", rf: int = 1, timeout: TimeoutArg = None,
              max_tries: Optional[int] = None, max_concurrency: int = 10, max_backoff: Optional[float] = None,
              tags: Optional[Mapping[str, str]] = None, update: bool = False,
              content_type: Optional[str] = None) -> tuple[WritePlan, SourceFactory]:
    """``put``: the value in ``chunk_size`` chunks (zero-copy slices); the content type guessed
    from the key."""
    plan = write_plan(defaults, bucket_id, key, rf=rf, tags=tags, update=update, timeout=timeout,
                      max_tries=max_tries, max_backoff=max_backoff, max_concurrency=max_concurrency,
                      content_type=content_type_for(content_type, key))
    size = chunk_size_bytes(chunk_size)
    return plan, lambda: BytesSource(value, size)


def file_put(defaults: WriteDefaults, bucket_id: str, key: str, path: Union[str, os.PathLike], *,
             tags: Optional[Mapping[str, str]] = None, chunk_size: Union[str, int] = "256kb", rf: int = 1,
             timeout: TimeoutArg = None, max_tries: Optional[int] = None, max_concurrency: Optional[int] = None,
             max_backoff: Optional[float] = None, update: bool = False,
             content_type: Optional[str] = None) -> tuple[WritePlan, SourceFactory]:
    """``put_file``: the file read in two passes; the tags ``fullname`` and ``extension`` added
    unless given; the content type guessed from the file's name."""
    name = os.path.basename(os.fspath(path))
    extra = {"fullname": name, "extension": os.path.splitext(name)[1].lstrip(".")}
    plan = write_plan(defaults, bucket_id, key, rf=rf, tags={**extra, **validate_tags(tags)}, update=update,
                      timeout=timeout, max_tries=max_tries, max_backoff=max_backoff,
                      max_concurrency=max_concurrency or defaults.max_workers,
                      content_type=content_type_for(content_type, name))
    size = chunk_size_bytes(chunk_size)
    return plan, lambda: FileSource(path, size)


def chunks_put(defaults: WriteDefaults, bucket_id: str, key: str, chunks: Any, *,
               tags: Optional[Mapping[str, str]] = None, rf: int = 1, timeout: TimeoutArg = None,
               max_tries: Optional[int] = None, max_concurrency: Optional[int] = None,
               max_backoff: Optional[float] = None, update: bool = False) -> tuple[WritePlan, SourceFactory]:
    """``put_chunks``: a lazy ``Chunks`` is read twice, never held whole; a sequence of bytes or
    ``Chunk`` items is taken as it is (a ``Chunk`` must be chunk i of ``key``)."""
    plan = write_plan(defaults, bucket_id, key, rf=rf, tags=tags, update=update, timeout=timeout,
                      max_tries=max_tries, max_backoff=max_backoff,
                      max_concurrency=max_concurrency or defaults.max_workers)
    if isinstance(chunks, Chunks):  # lazy (from_file): two passes, never all in memory
        return plan, lambda: IterableSource(chunks, key)
    items = list(chunks)
    for i, item in enumerate(items):
        if isinstance(item, Chunk):
            check_chunk_id(item, key, i)
    return plan, lambda: ListSource(items)
