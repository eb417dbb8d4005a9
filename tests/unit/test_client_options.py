"""Pure tests of the per-call options of ``Client`` (``mictlanx_sync.client.options``)."""

from __future__ import annotations

import pytest

from mictlanx_sync.client.options import chunk_size_bytes, merge_alias, piece_size, positive_int, retry_policy
from mictlanx_sync.protocol.errors import ValidationError
from mictlanx_sync.protocol.policies import RetryPolicy


def test_merge_alias() -> None:
    assert merge_alias("a", 1, "b", None) == 1
    assert merge_alias("a", None, "b", 2) == 2
    assert merge_alias("a", 3, "b", 3) == 3
    with pytest.raises(ValidationError):
        merge_alias("a", 1, "b", 2)


def test_retry_policy_overrides() -> None:
    base = RetryPolicy(retries=5, initial_delay=0.5)
    assert retry_policy(base) is base
    assert retry_policy(base, max_tries=None) is base
    changed = retry_policy(base, max_tries=2, max_backoff=3.0)
    assert (changed.retries, changed.max_delay, changed.initial_delay) == (2, 3.0, 0.5)
    assert retry_policy(base, max_retries=7, delay=0.1, backoff_factor=3.0, jitter=False) == RetryPolicy(
        retries=7, initial_delay=0.1, backoff_factor=3.0, jitter=False)
    with pytest.raises(ValidationError):
        retry_policy(base, max_delay=1.0, max_backoff=2.0)


def test_chunk_size_bytes() -> None:
    assert chunk_size_bytes("256kb") == 256_000
    assert chunk_size_bytes("1MiB") == 1 << 20
    assert chunk_size_bytes(10) == 10
    for bad in (0, "0", "lots", -1, True):
        with pytest.raises(ValidationError):
            chunk_size_bytes(bad)


def test_piece_size_is_clamped() -> None:
    assert piece_size("1kb") == 64 * 1024
    assert piece_size("1MB") == 1_000_000
    assert piece_size("1GB") == 8 * 1024 * 1024


def test_positive_int() -> None:
    assert positive_int("n", 3) == 3
    assert positive_int("n", None, default=4) == 4
    with pytest.raises(ValidationError):
        positive_int("n", 0)
    with pytest.raises(ValidationError):
        positive_int("n", None)
    with pytest.raises(TypeError):
        positive_int("n", 2.0)
    with pytest.raises(TypeError):
        positive_int("n", True)
