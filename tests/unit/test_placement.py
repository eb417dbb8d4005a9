"""Rendezvous placement (protocol §P4.2): pure functions, no sockets."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from mictlanx_sync.server.router import placement
from mictlanx_sync.server.router.placement import choose, rank, score

PEERS = [f"mictlanx-peer-{i}" for i in range(5)]


def test_score_is_the_first_8_bytes_of_sha256_big_endian() -> None:
    digest = hashlib.sha256(b"mictlanx-peer-0|b@k").digest()
    assert score("mictlanx-peer-0", "b", "k") == int.from_bytes(digest[:8], "big")
    assert 0 <= score("p", "b", "k") < 2**64


def test_rank_sorts_by_score_descending() -> None:
    ranking = rank(PEERS, "bucket", "key")
    scores = [score(p, "bucket", "key") for p in ranking]
    assert scores == sorted(scores, reverse=True)
    assert sorted(ranking) == sorted(PEERS)


def test_ties_are_broken_by_peer_id_ascending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "score", lambda p, b, k: 7)
    assert rank(["c", "a", "b"], "b", "k") == ["a", "b", "c"]


def test_rank_does_not_depend_on_input_order_or_duplicates() -> None:
    expected = rank(PEERS, "b", "k")
    for order in itertools.permutations(PEERS[:4]):
        assert rank(order, "b", "k") == [p for p in expected if p in order]
    assert rank(PEERS + PEERS, "b", "k") == expected


def test_choose_takes_the_top_rf() -> None:
    ranking = rank(PEERS, "b", "obj")
    assert choose(PEERS, "b", "obj", 2) == ranking[:2]
    assert choose(PEERS, "b", "obj", 9) == ranking
    assert choose([], "b", "obj", 2) == []


def test_keys_spread_over_peers() -> None:
    firsts = [rank(PEERS, "b", f"key-{i}")[0] for i in range(500)]
    counts = {p: firsts.count(p) for p in PEERS}
    assert all(40 < c < 160 for c in counts.values()), counts


def test_adding_a_peer_moves_only_keys_it_wins() -> None:
    new = "mictlanx-peer-new"
    for i in range(200):
        before = rank(PEERS, "b", f"k{i}")
        after = rank([*PEERS, new], "b", f"k{i}")
        assert [p for p in after if p != new] == before


def test_bucket_and_key_both_matter() -> None:
    rankings = {tuple(rank(PEERS, b, k)) for b, k in [("b1", "k"), ("b2", "k"), ("b", "k1"), ("b", "k2")]}
    assert len(rankings) > 1
