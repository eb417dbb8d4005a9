"""Wire models (client-api §5, protocol §P3.3 and §P4.5), plus the client's value types.

Import every name from here (``from mictlanx_sync.protocol.models import Metadata``) or
from :mod:`mictlanx_sync.models`; the modules below are the layout, not the interface:

- :mod:`.parsing`: ``Model`` (``from_json`` / ``to_dict``), ``parse_as`` and ``loads``: the
  lax JSON conversion every wire model shares (``"5"`` is a valid ``int``).
- :mod:`.wire`: one frozen ``attrs`` class per JSON body of a peer (P…) or router (R…).
- :mod:`.values`: what ``Client`` returns or takes: ``GetResponse``, ``Ball``, ``Bucket``,
  ``BallK``, ``BulkPutResult``.
- :mod:`.chunks`: ``Chunk`` and ``Chunks``, an object cut into chunks lazily.

>>> m = Metadata.from_json({"key": "k", "size": "3", "checksum": "c", "tags": {},
...                         "content_type": "a/b", "producer_id": "", "ball_id": "k", "extra": 1})
>>> m.size, m.is_disabled
(3, False)

The package is pure (no ``requests``): the servers may import it too.
"""

from __future__ import annotations

from .chunks import BytesLike as BytesLike  # not in __all__, importable as before
from .chunks import Chunk, Chunks
from .parsing import Model, loads, parse_as
from .values import AsyncGetResponse, Ball, BallK, Bucket, BulkPutResult, GetResponse
from .wire import (
    BallBasicData,
    BallContext,
    BallMetadata,
    BallsLenResponse,
    CacheKeysResponse,
    CacheStatsResponse,
    DeleteBucketResponse,
    DeletedByBallIdResponse,
    DeletedByKeyResponse,
    GetBucketMetadataResponse,
    GetMetadataResponse,
    GetRouterBucketMetadataResponse,
    GetSizeByKey,
    GetUFSResponse,
    GroupedBallResponse,
    Metadata,
    PeerCurrentState,
    PeerData,
    PeerHealthResponse,
    PeerInfo,
    PeerPutChunkedResponse,
    PeerPutMetadataResponse,
    PeersResponse,
    PeerStatsResponse,
    PutMetadataResponse,
    ReplicateResponse,
    RouterHealthResponse,
    RouterPutChunkedResponse,
    StoragePeerResponse,
)

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
