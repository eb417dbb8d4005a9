"""Rendezvous (highest-random-weight) placement, protocol §P4.2. Pure: no I/O.

``score(p) = uint64_be(SHA-256(p + "|" + b + "@" + k)[0:8])``; the ranking sorts peers
by score descending, ties by peer id ascending. It depends only on peer ids, so routers
with the same registry agree without talking to each other.

>>> rank(["mictlanx-peer-0", "mictlanx-peer-1"], "b", "k") in (
...     ["mictlanx-peer-0", "mictlanx-peer-1"], ["mictlanx-peer-1", "mictlanx-peer-0"])
True
"""

from __future__ import annotations

import hashlib
from typing import Iterable

__all__ = ["score", "rank", "choose"]


#: Tag naming a ball's replication factor, read by the rebalancer (docs/rebalancing.md §4.4);
#: R5 records it when a write asks for more copies than the rebalancer's default.
RF_TAG = "mictlanx_rf"


def score(peer_id: str, bucket_id: str, key: str) -> int:
    """The rendezvous score of ``peer_id`` for the object ``(bucket_id, key)``."""
    digest = hashlib.sha256(f"{peer_id}|{bucket_id}@{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rank(peer_ids: Iterable[str], bucket_id: str, key: str) -> list[str]:
    """``peer_ids`` ordered by score descending, ties broken by id ascending."""
    return sorted(set(peer_ids), key=lambda p: (-score(p, bucket_id, key), p))


def choose(available: Iterable[str], bucket_id: str, key: str, rf: int) -> list[str]:
    """The first ``rf`` available peers of the ranking (fewer if not enough exist)."""
    return rank(available, bucket_id, key)[:rf]
