"""Wire models (client-api §5, protocol §P3.3 and §P4.5), plus the client's value types.

Every JSON shape is an ``attrs`` frozen class with ``from_json(obj)`` and ``to_dict()``.
Parsing is lax the way upstream clients are (pydantic's lax mode):

- an ``int`` field accepts ``5``, ``5.0`` and ``"5"``; it rejects ``5.5`` and booleans;
- a ``float`` field accepts ints, floats and numeric strings; a ``str`` field rejects numbers;
- unknown fields are ignored; missing optional fields take their defaults.

A body that is not JSON, lacks a required field or holds a rejected value raises
:class:`~mictlanx_sync.protocol.errors.ResponseFormatError`.

>>> m = Metadata.from_json({"key": "k", "size": "3", "checksum": "c", "tags": {},
...                         "content_type": "a/b", "producer_id": "", "ball_id": "k", "extra": 1})
>>> m.size, m.is_disabled
(3, False)

This module is pure (no ``requests``): the servers import it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TypedDict, Union

import attrs

from .errors import LocalStorageError, ResponseFormatError, ValidationError
from .sizes import format_size, parse_size

__all__ = [
    "Model", "parse_as", "loads", "Metadata", "PeerPutMetadataResponse", "PutMetadataResponse",
    "PeerPutChunkedResponse", "RouterPutChunkedResponse", "GetMetadataResponse", "BallMetadata",
    "GroupedBallResponse", "GetBucketMetadataResponse", "GetRouterBucketMetadataResponse",
    "DeletedByKeyResponse", "DeletedByBallIdResponse", "DeleteBucketResponse", "PeerHealthResponse",
    "RouterHealthResponse", "GetSizeByKey", "ReplicateResponse", "PeerStatsResponse", "GetUFSResponse",
    "BallBasicData", "PeerData", "BallContext", "PeerCurrentState", "StoragePeerResponse", "PeerInfo",
    "PeersResponse", "CacheKeysResponse", "CacheStatsResponse", "BallsLenResponse",
    "GetResponse", "AsyncGetResponse", "Ball", "Bucket", "Chunk", "Chunks", "BallK", "BulkPutResult",
]

_ALIASES = "mictlanx_aliases"


def _alias(*names: str) -> dict[str, tuple[str, ...]]:
    return {_ALIASES: names}


# --- lax conversion ------------------------------------------------------------------
class _Reject(Exception):
    """A value rejected during conversion; ``path`` locates it."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path or '<root>'}: {msg}")


def _to_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise _Reject(path, "expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise _Reject(path, f"expected an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 10)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise _Reject(path, f"expected an integer, got {value!r}") from None
            if as_float.is_integer():
                return int(as_float)
            raise _Reject(path, f"expected an integer, got {value!r}") from None
    raise _Reject(path, f"expected an integer, got {type(value).__name__}")


def _to_float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _Reject(path, "expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Reject(path, f"expected a number, got {value!r}") from None
    raise _Reject(path, f"expected a number, got {type(value).__name__}")


def _to_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    raise _Reject(path, f"expected a string, got {type(value).__name__}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _to_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Reject(path, f"expected a boolean, got {value!r}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        last: Optional[_Reject] = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except _Reject as exc:
                last = exc
        raise last or _Reject(path, "no matching type")
    if origin in (list, List):
        if not isinstance(value, list):
            raise _Reject(path, f"expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _Reject(path, f"expected an object, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(key_tp, k, path): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        return _to_bool(value, path)
    if tp is int:
        return _to_int(value, path)
    if tp is float:
        return _to_float(value, path)
    if tp is str:
        return _to_str(value, path)
    if isinstance(tp, type) and attrs.has(tp):
        return _build(tp, value, path)
    raise _Reject(path, f"unsupported type {tp!r}")  # pragma: no cover - a programming error


_FIELDS_CACHE: dict[type, list[tuple[str, Any, tuple[str, ...], bool]]] = {}


def _fields(cls: type) -> list[tuple[str, Any, tuple[str, ...], bool]]:
    cached = _FIELDS_CACHE.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = [
            (f.name, hints[f.name], f.metadata.get(_ALIASES, ()), f.default is attrs.NOTHING)
            for f in attrs.fields(cls)
        ]
        _FIELDS_CACHE[cls] = cached
    return cached


def _build(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _Reject(path, f"expected an object for {cls.__name__}, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for name, tp, aliases, required in _fields(cls):
        for candidate in (name, *aliases):
            if candidate in value:
                kwargs[name] = _convert(tp, value[candidate], f"{path}.{candidate}" if path else candidate)
                break
        else:
            if required:
                raise _Reject(path, f"missing field {name!r} of {cls.__name__}")
    return cls(**kwargs)


def loads(body: Union[bytes, bytearray, str]) -> Any:
    """JSON-decode a response body, raising ``ResponseFormatError`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, TypeError) as exc:
        text = body[:200] if isinstance(body, str) else bytes(body[:200]).decode("utf-8", "replace")
        raise ResponseFormatError(f"response is not JSON: {text!r}") from exc


def parse_as(tp: Any, obj: Any) -> Any:
    """Convert parsed JSON ``obj`` to ``tp`` (a model, ``List[Model]``, ``Dict[str, Model]``, ``int``...).

    ``obj`` may also be raw bytes or text, which are JSON-decoded first.
    Raises ``ResponseFormatError``.
    """
    if isinstance(obj, (bytes, bytearray)):
        obj = loads(obj)
    try:
        return _convert(tp, obj, "")
    except _Reject as exc:
        name = getattr(tp, "__name__", None) or str(tp)
        raise ResponseFormatError(f"invalid {name}: {exc}") from None


def _as_dict(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _as_dict(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {k: _as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_dict(v) for v in value]
    return value


class Model:
    """Mixin of every wire model: ``from_json`` (lax) and ``to_dict`` (JSON-ready)."""

    __slots__ = ()

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        """Parse a JSON object (or raw JSON bytes/text); raises ``ResponseFormatError``."""
        return parse_as(cls, obj)

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)  # type: ignore[no-any-return]


def _list() -> Any:
    return attrs.field(factory=list)


def _dict() -> Any:
    return attrs.field(factory=dict)


# --- metadata ------------------------------------------------------------------------
@attrs.frozen
class Metadata(Model):
    """The metadata of one ball (§P2.3). ``is_disable`` is accepted on input."""

    key: str
    size: int
    checksum: str
    tags: Dict[str, str] = _dict()
    content_type: str = "application/octet-stream"
    producer_id: str = ""
    ball_id: str = ""
    bucket_id: str = ""
    is_disabled: bool = attrs.field(default=False, metadata=_alias("is_disable"))


# --- peer answers --------------------------------------------------------------------
@attrs.frozen
class PeerPutMetadataResponse(Model):
    """P1."""

    key: str
    service_time: int
    task_id: str
    node_id: str
    exists: bool = False


@attrs.frozen
class PeerPutChunkedResponse(Model):
    """P2, P3."""

    node_id: str
    combined_key: str
    bucket_id: str
    key: str
    size: int
    throughput: float
    service_time: float


@attrs.frozen
class GetMetadataResponse(Model):
    """P4, R3."""

    service_time: int
    peer_id: str
    local_peer_id: str
    metadata: Metadata


@attrs.frozen
class GroupedBallResponse(Model):
    """P7."""

    bucket_id: str
    ball_id: str
    size: int
    balls: List[Metadata] = _list()


@attrs.frozen
class GetBucketMetadataResponse(Model):
    """P6."""

    peer_id: str
    balls: List[Metadata] = _list()

    def __str__(self) -> str:
        return f"Bucket(n={len(self.balls)})"


@attrs.frozen
class DeletedByKeyResponse(Model):
    """P8, R13."""

    n_deletes: int
    key: str
    failed_peers: List[str] = _list()
    pending_peers: List[str] = _list()


@attrs.frozen
class DeletedByBallIdResponse(Model):
    """P9, R14."""

    n_deletes: int
    ball_id: str
    failed_peers: List[str] = _list()
    pending_peers: List[str] = _list()


@attrs.frozen
class GetSizeByKey(Model):
    """P11, R1 items."""

    bucket_id: str
    key: str
    peer_id: str
    size: int


@attrs.frozen
class ReplicateResponse(Model):
    """P12."""

    peer_id: str
    replica_peer_id: str
    bucket_id: str
    key: str
    size: int
    ok: bool
    response_time: int


@attrs.frozen
class PeerStatsResponse(Model):
    """P13, R20 values: exactly seven keys on the wire."""

    peer_id: str
    used_disk: int
    total_disk: int
    available_disk: int
    disk_uf: float
    balls: List[Metadata] = _list()
    peers: List[str] = _list()

    @staticmethod
    def empty() -> PeerStatsResponse:
        return PeerStatsResponse("global", 0, 0, 0, 0.0, [], [])

    def __add__(self, other: PeerStatsResponse) -> PeerStatsResponse:
        seen: set[tuple[str, str]] = set()
        balls: list[Metadata] = []
        for ball in [*self.balls, *other.balls]:
            if (ball.bucket_id, ball.key) not in seen:
                seen.add((ball.bucket_id, ball.key))
                balls.append(ball)
        return PeerStatsResponse(
            "global", self.used_disk + other.used_disk, self.total_disk + other.total_disk,
            self.available_disk + other.available_disk, balls=balls,
            disk_uf=(self.disk_uf + other.disk_uf) / 2, peers=sorted(set(self.peers) | set(other.peers)),
        )


@attrs.frozen
class GetUFSResponse(Model):
    """P14."""

    total_disk: int
    used_disk: int
    disk_uf: float


@attrs.frozen
class BallBasicData(Model):
    """P15 items (P16 arrays are converted to it)."""

    bucket_id: str
    key: str
    size: int


@attrs.frozen
class BallsLenResponse(Model):
    """P17."""

    len: int


@attrs.frozen
class PeerData(Model):
    """P18 ``nodes`` items."""

    node_id: str
    ip_addr: str
    port: int


@attrs.frozen
class BallContext(Model):
    """P18 ``balls`` values."""

    locations: List[str]
    size: int


@attrs.frozen
class PeerCurrentState(Model):
    """P18."""

    nodes: List[PeerData] = _list()
    balls: Dict[str, BallContext] = _dict()


@attrs.frozen
class StoragePeerResponse(Model):
    """P19."""

    id: str
    disk: int
    memory: int
    ip_addr: str
    port: int
    weight: float
    used_disk: int = 0
    used_memory: int = 0


@attrs.frozen
class PeerHealthResponse(Model):
    """P21."""

    status: str
    peer_id: str = ""


# --- router answers ------------------------------------------------------------------
@attrs.frozen
class PutMetadataResponse(Model):
    """R5."""

    key: str
    service_time: float
    tasks_ids: List[str] = _list()
    bucket_id: str = ""
    replicas: List[str] = _list()
    extra: Dict[str, Any] = _dict()


@attrs.frozen
class RouterPutChunkedResponse(Model):
    """R6, R7."""

    peer_ids: List[str]
    combined_key: str
    bucket_id: str
    key: str
    size: int


@attrs.frozen
class BallMetadata(Model):
    """R12."""

    bucket_id: str
    ball_id: str
    size: str
    size_bytes: int
    checksum: str
    chunks: List[Metadata] = _list()


@attrs.frozen
class GetRouterBucketMetadataResponse(Model):
    """R2; ``peer_ids`` is also read from upstream's ``peers_ids``."""

    bucket_id: str
    peer_ids: List[str] = attrs.field(factory=list, metadata=_alias("peers_ids"))
    balls: List[Metadata] = _list()
    extra: Dict[str, Any] = _dict()

    def __str__(self) -> str:
        return f"Bucket(n={len(self.balls)})"


@attrs.frozen
class DeleteBucketResponse(Model):
    """``Client.delete_bucket``; ``response_time`` in seconds."""

    bucket_id: str
    deleted: int
    failed: int
    total: int
    keys: List[str] = _list()
    response_time: float = 0.0


@attrs.frozen
class RouterHealthResponse(Model):
    """R24."""

    status: str
    available_peers: int = 0


@attrs.frozen
class PeerInfo(Model):
    """R15, R16, R17 items."""

    peer_id: str
    hostname: str
    port: int
    protocol: str = "http"


@attrs.frozen
class PeersResponse(Model):
    """R16."""

    available: List[PeerInfo] = _list()
    unavailable: List[PeerInfo] = _list()


@attrs.frozen
class CacheKeysResponse(Model):
    """R21."""

    keys: List[str] = _list()


@attrs.frozen
class CacheStatsResponse(Model):
    """R22."""

    total: int = 0
    used: int = 0
    available: int = 0
    uf: float = 0.0


# --- client value types --------------------------------------------------------------
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


BytesLike = Union[bytes, bytearray, memoryview]


class Chunk:
    """One chunk of an object: ``chunk_id`` defaults to ``f"{group_id}_{index}"``.

    ``size`` defaults to ``len(data)``; ``checksum`` (SHA-256 hex) is computed on first use.
    """

    __slots__ = ("group_id", "index", "data", "chunk_id", "size", "_checksum")

    def __init__(self, group_id: str, index: int, data: BytesLike, chunk_id: Optional[str] = None,
                 size: Optional[int] = None, checksum: Optional[str] = None) -> None:
        self.group_id = group_id
        self.index = index
        self.data = data
        self.chunk_id = chunk_id if chunk_id is not None else f"{group_id}_{index}"
        self.size = size if size is not None else memoryview(data).nbytes
        self._checksum = checksum

    @property
    def checksum(self) -> str:
        if self._checksum is None:
            self._checksum = hashlib.sha256(self.data).hexdigest()
        return self._checksum

    @checksum.setter
    def checksum(self, value: str) -> None:
        self._checksum = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chunk):
            return NotImplemented
        return (self.group_id, self.index, self.chunk_id, self.size) == (
            other.group_id, other.index, other.chunk_id, other.size) and bytes(self.data) == bytes(other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Chunk(chunk_id={self.chunk_id!r}, index={self.index}, size={self.size})"


def _chunk_size(chunk_size: Union[int, str]) -> int:
    size = parse_size(chunk_size)
    if size <= 0:
        raise ValidationError(f"chunk_size must be > 0, got {chunk_size!r}")
    return size


class Chunks:
    """The chunks of one object, split strictly (§P5): chunk i holds ``[i*C, min((i+1)*C, n))``.

    Lazy: :meth:`from_bytes` yields zero-copy ``memoryview`` slices, :meth:`from_file` reads
    each chunk only when iteration reaches it. Empty data gives one empty chunk.

    >>> [bytes(c.data) for c in Chunks.from_bytes(b"abcde", 2, "g")]
    [b'ab', b'cd', b'e']
    """

    def __init__(self, group_id: str, n: int, total_size: int, factory: Callable[[], Iterator[Chunk]]) -> None:
        self.group_id = group_id
        self.n = n
        self.total_size = total_size
        self._factory = factory

    @staticmethod
    def count(total_size: int, chunk_size: int) -> int:
        """Number of chunks of a ``total_size``-byte object (1 for an empty one)."""
        return max(1, -(-total_size // chunk_size))

    @classmethod
    def from_bytes(cls, data: BytesLike, chunk_size: Union[int, str], group_id: str) -> Chunks:
        size = _chunk_size(chunk_size)
        view = memoryview(data).cast("B")
        total = view.nbytes
        n = cls.count(total, size)

        def gen() -> Iterator[Chunk]:
            for i in range(n):
                yield Chunk(group_id, i, view[i * size:min((i + 1) * size, total)])

        return cls(group_id, n, total, gen)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike[str]], chunk_size: Union[int, str], group_id: str) -> Chunks:
        size = _chunk_size(chunk_size)
        try:
            total = os.stat(path).st_size
        except OSError as exc:
            raise LocalStorageError(f"cannot stat {path}: {exc}") from exc
        n = cls.count(total, size)

        def gen() -> Iterator[Chunk]:
            try:
                with open(path, "rb") as fh:
                    for i in range(n):
                        expected = min(size, total - i * size)
                        data = fh.read(expected)
                        if len(data) != expected:
                            raise LocalStorageError(f"{path} changed while being read (chunk {i})")
                        yield Chunk(group_id, i, data)
            except OSError as exc:
                raise LocalStorageError(f"cannot read {path}: {exc}") from exc

        return cls(group_id, n, total, gen)

    @classmethod
    def from_list(cls, chunks: Iterable[Chunk], group_id: str = "") -> Chunks:
        items = list(chunks)
        return cls(group_id, len(items), sum(c.size for c in items), lambda: iter(items))

    def __iter__(self) -> Iterator[Chunk]:
        return self._factory()

    def iter(self) -> Iterator[Chunk]:
        return self._factory()

    def to_list(self) -> List[Chunk]:
        return list(self._factory())

    def __len__(self) -> int:
        return self.n

    def len(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Chunks(group_id={self.group_id!r}, n={self.n}, total_size={self.total_size})"


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
