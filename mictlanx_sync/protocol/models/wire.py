"""The wire models: one frozen ``attrs`` class per JSON body (client-api §5, protocol §P3.3, §P4.5).

Each docstring names the endpoints that answer with it (``P…`` a storage peer, ``R…`` a
router); several peer answers are passed through by the router unchanged. Every class has
``from_json`` (lax, see :mod:`.parsing`) and ``to_dict``. Pure: the servers may import it.

>>> m = Metadata.from_json({"key": "k", "size": "3", "checksum": "c", "tags": {},
...                         "content_type": "a/b", "producer_id": "", "ball_id": "k", "extra": 1})
>>> m.size, m.is_disabled
(3, False)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attrs

from ..inline import INLINE_FIELD, decode_inline
from .parsing import Model, alias, dict_field, list_field

__all__ = [
    "Metadata", "PeerPutMetadataResponse", "PutMetadataResponse", "PeerPutChunkedResponse",
    "RouterPutChunkedResponse", "GetMetadataResponse", "BallMetadata", "GroupedBallResponse",
    "GetBucketMetadataResponse", "GetRouterBucketMetadataResponse", "DeletedByKeyResponse",
    "DeletedByBallIdResponse", "DeleteBucketResponse", "PeerHealthResponse", "RouterHealthResponse",
    "GetSizeByKey", "ReplicateResponse", "PeerStatsResponse", "GetUFSResponse", "BallBasicData", "PeerData",
    "BallContext", "PeerCurrentState", "StoragePeerResponse", "PeerInfo", "PeersResponse", "CacheKeysResponse",
    "CacheStatsResponse", "BallsLenResponse",
]


# --- metadata ------------------------------------------------------------------------
@attrs.frozen
class Metadata(Model):
    """The metadata of one ball (§P2.3). ``is_disable`` is accepted on input."""

    key: str
    size: int
    checksum: str
    tags: Dict[str, str] = dict_field()
    content_type: str = "application/octet-stream"
    producer_id: str = ""
    ball_id: str = ""
    bucket_id: str = ""
    is_disabled: bool = attrs.field(default=False, metadata=alias("is_disable"))


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
    #: the version served (docs/consistency.md); ``""`` from servers without versions
    version: str = ""
    #: the ball's bytes, base64, when asked with ``Mictlanx-Inline-Max`` and small enough
    #: (:mod:`mictlanx_sync.protocol.inline`); not verified here: see :attr:`inline_data`
    data_base64: Optional[str] = attrs.field(default=None, repr=False)

    @property
    def inline_data(self) -> Optional[bytes]:
        """The inline bytes (unverified: check them against ``metadata.checksum``), or None."""
        return decode_inline({INLINE_FIELD: self.data_base64}) if self.data_base64 is not None else None


@attrs.frozen
class GroupedBallResponse(Model):
    """P7."""

    bucket_id: str
    ball_id: str
    size: int
    balls: List[Metadata] = list_field()


@attrs.frozen
class GetBucketMetadataResponse(Model):
    """P6."""

    peer_id: str
    balls: List[Metadata] = list_field()

    def __str__(self) -> str:
        return f"Bucket(n={len(self.balls)})"


@attrs.frozen
class DeletedByKeyResponse(Model):
    """P8, R13."""

    n_deletes: int
    key: str
    failed_peers: List[str] = list_field()
    pending_peers: List[str] = list_field()


@attrs.frozen
class DeletedByBallIdResponse(Model):
    """P9, R14."""

    n_deletes: int
    ball_id: str
    failed_peers: List[str] = list_field()
    pending_peers: List[str] = list_field()


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
    balls: List[Metadata] = list_field()
    peers: List[str] = list_field()

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

    nodes: List[PeerData] = list_field()
    balls: Dict[str, BallContext] = dict_field()


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
    tasks_ids: List[str] = list_field()
    bucket_id: str = ""
    replicas: List[str] = list_field()
    extra: Dict[str, Any] = dict_field()


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
    chunks: List[Metadata] = list_field()


@attrs.frozen
class GetRouterBucketMetadataResponse(Model):
    """R2; ``peer_ids`` is also read from upstream's ``peers_ids``."""

    bucket_id: str
    peer_ids: List[str] = attrs.field(factory=list, metadata=alias("peers_ids"))
    balls: List[Metadata] = list_field()
    extra: Dict[str, Any] = dict_field()

    def __str__(self) -> str:
        return f"Bucket(n={len(self.balls)})"


@attrs.frozen
class DeleteBucketResponse(Model):
    """``Client.delete_bucket``; ``response_time`` in seconds."""

    bucket_id: str
    deleted: int
    failed: int
    total: int
    keys: List[str] = list_field()
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

    available: List[PeerInfo] = list_field()
    unavailable: List[PeerInfo] = list_field()


@attrs.frozen
class CacheKeysResponse(Model):
    """R21."""

    keys: List[str] = list_field()


@attrs.frozen
class CacheStatsResponse(Model):
    """R22."""

    total: int = 0
    used: int = 0
    available: int = 0
    uf: float = 0.0
