"""A bad copy whose R1 (replica listing) fails must not end the read (client-api §8.6 step 3).

After a checksum mismatch the read lists the replicas with R1 on the router that served the
bad copy. If that R1 fails (a transient 503), nothing is known about the other replicas
yet: the read must try again (another router may list them), not return
``IntegrityError("every replica failed verification")`` after one copy.
"""

from __future__ import annotations

from typing import Any, Optional

from mictlanx_sync.client.chunk_fetch import Fetched, _BadCopy, _Replicas
from mictlanx_sync.client.read_options import ReadOptions
from mictlanx_sync.protocol.errors import IntegrityError, UnknownError
from mictlanx_sync.protocol.models import GetSizeByKey
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.result import Err, Ok, Result


class _Router:
    def __init__(self, url: str, listing_ok: bool) -> None:
        self.url = url
        self.listing_ok = listing_ok

    def base_url(self) -> str:
        return self.url

    def get_size(self, bucket_id: str, key: str, **_: Any) -> Result[list[GetSizeByKey], Any]:
        if not self.listing_ok:
            return Err(UnknownError("R1 down", 503))
        return Ok([GetSizeByKey(bucket_id=bucket_id, key=key, peer_id="A", size=10),
                   GetSizeByKey(bucket_id=bucket_id, key=key, peer_id="B", size=10)])


class _Fetcher:
    """Peer A holds a corrupt copy (served when unpinned), peer B a good one."""

    def __init__(self) -> None:
        self.pins: list[Optional[str]] = []

    def _stream(self, router: Any, bucket_id: str, key: str, options: Any, expect: Any,
                peer_id: Optional[str] = None) -> Result[Fetched, Any]:
        self.pins.append(peer_id)
        if peer_id in (None, "A"):
            return Err(IntegrityError("checksum mismatch from peer A", detail={"peer_id": "A"}))
        return Ok(Fetched(10, "x" * 64, peer_id))


def _options() -> ReadOptions:
    return ReadOptions(policy=RetryPolicy(), timeout=5, piece_size=65536, headers={}, max_parallel=4)


def test_a_failed_listing_after_a_bad_copy_is_retried_not_final() -> None:
    fetcher = _Fetcher()
    replicas = _Replicas(fetcher, "b", "k_0", _options(), None)  # type: ignore[arg-type]
    first = replicas.attempt(_Router("http://r1", listing_ok=False))  # type: ignore[arg-type]
    assert first.is_err and isinstance(first.unwrap_err(), _BadCopy), first  # retryable: try another router
    second = replicas.attempt(_Router("http://r2", listing_ok=True))  # type: ignore[arg-type]
    assert second.is_ok, second
    assert fetcher.pins == [None, "B"]


def test_every_listed_copy_bad_is_still_final() -> None:
    class _AllBad(_Fetcher):
        def _stream(self, *args: Any, peer_id: Optional[str] = None, **kwargs: Any) -> Result[Fetched, Any]:
            self.pins.append(peer_id)
            return Err(IntegrityError("mismatch", detail={"peer_id": peer_id or "A"}))

    fetcher = _AllBad()
    replicas = _Replicas(fetcher, "b", "k_0", _options(), None)  # type: ignore[arg-type]
    router = _Router("http://r1", listing_ok=True)
    first = replicas.attempt(router)  # type: ignore[arg-type]
    assert isinstance(first.unwrap_err(), _BadCopy)
    second = replicas.attempt(router)  # type: ignore[arg-type]
    assert type(second.unwrap_err()) is IntegrityError and fetcher.pins == [None, "B"]
