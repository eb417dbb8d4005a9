"""The client's value types: what ``Client`` methods return or take, never sent as such.

``GetResponse`` (an object read into memory), ``Ball`` and ``Bucket`` (objects as their
chunks' metadata describes them), ``BallK`` and ``BulkPutResult`` (``put_bulk`` items and
outcome). Plain dataclasses and a ``TypedDict``: no lax parsing, no ``to_dict``. Pure.

>>> Bucket("b").size()
'0 bytes'
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, TypedDict, Union

from ..sizes import format_size
from .wire import Metadata

__all__ = ["GetResponse", "AsyncGetResponse", "Ball", "Bucket", "BallK", "BulkPutResult"]


@dataclass(frozen=True)
class GetResponse:
    """An object read into memory: read-only ``data`` and the chunks' metadata in index order."""

    data: memoryview
    metadatas: List[Metadata]

    def __post_init__(self) -> None:
        data = self.data if isinstance(self.data, memoryview) else memoryview(self.data)
        if not data.readonly:
            data = data.toreadonly()
        object.__setattr__(self, "data", data)


AsyncGetResponse = GetResponse


def _tag_int(tags: Dict[str, str], name: str, default: int) -> int:
    try:
        return int(tags[name])
    except (KeyError, ValueError):
        return default


@dataclass
class Ball:
    """An object (ball) as the chunks' metadata describes it (R12, R2 grouped by ``ball_id``)."""

    bucket_id: str
    ball_id: str
    checksum: str
    size: int
    chunks: List[Metadata] = field(default_factory=list)
    fullname: str = ""
    extension: str = ""
    filename: str = ""
    full_path: str = ""
    bucket_relative_path: str = ""
    updated_at: int = -1

    @staticmethod
    def from_chunks(bucket_id: str, ball_id: str, chunks: Iterable[Metadata]) -> Ball:
        """Build from chunk metadata: sorted by ``tags.index``, tags read from chunk 0."""
        items = sorted(chunks, key=lambda m: (_tag_int(m.tags, "index", sys.maxsize), m.key))
        tags = items[0].tags if items else {}
        return Ball(
            bucket_id=bucket_id, ball_id=ball_id, checksum=tags.get("full_checksum", ""),
            size=sum(m.size for m in items), chunks=items, fullname=tags.get("fullname", ""),
            extension=tags.get("extension", ""), filename=tags.get("filename", ""),
            full_path=tags.get("full_path", ""), bucket_relative_path=tags.get("bucket_relative_path", ""),
            updated_at=_tag_int(tags, "updated_at", -1),
        )


@dataclass
class Bucket:
    """A bucket's objects keyed by ``ball_id``."""

    bucket_id: str
    balls: Dict[str, Ball] = field(default_factory=dict)

    def size_bytes(self) -> int:
        return sum(ball.size for ball in self.balls.values())

    def size(self) -> str:
        return format_size(self.size_bytes())

    def len(self) -> int:
        return len(self.balls)

    def __len__(self) -> int:
        return len(self.balls)

    def __iter__(self) -> Iterator[Ball]:
        return iter(list(self.balls.values()))



class _BallKRequired(TypedDict):
    bucket_id: str
    key: str
    source: Union[bytes, str, os.PathLike[str]]


class BallK(_BallKRequired, total=False):
    """One item of ``Client.put_bulk``."""

    ball_id: str
    tags: Dict[str, str]
    rf: int
    chunk_size: Union[int, str]
    timeout: float
    max_tries: int
    max_concurrency: int
    max_backoff: float
    update: bool


@dataclass
class BulkPutResult:
    """``Client.await_bulk``: successes ``[{"item"}]`` and failures ``[{"item", "error"}]``."""

    successes: List[Dict[str, Any]] = field(default_factory=list)
    failures: List[Dict[str, Any]] = field(default_factory=list)
