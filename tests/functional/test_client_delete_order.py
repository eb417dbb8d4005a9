"""Issue 14 §1: ``delete(ball_id, bucket_id)`` mirrors upstream; a bucket-first call is caught."""

from __future__ import annotations

import pytest

from mictlanx_sync import Client
from mictlanx_sync.errors import ValidationError

from . import client_support

pytestmark = pytest.mark.timeout(120)
client = client_support.client
cluster = client_support.cluster


def _exists(client: Client, bucket: str, key: str) -> bool:
    return client.get_metadata(bucket, key).is_ok


def test_swapped_positional_delete_is_an_error_and_deletes_nothing(client: Client) -> None:
    client.put("pets", "cat", b"meow").unwrap()
    result = client.delete("pets", "cat")  # bucket first, as in put/get: the wrong order
    assert result.is_err, result
    error = result.unwrap_err()
    assert isinstance(error, ValidationError)
    assert "delete(bucket_id='pets', ball_id='cat')" in error.message
    assert _exists(client, "pets", "cat")
    swapped_key = client.delete_by_key("pets", "cat_0")
    assert isinstance(swapped_key.unwrap_err(), ValidationError)
    assert "delete_by_key(bucket_id='pets', key='cat_0')" in swapped_key.unwrap_err().message
    assert _exists(client, "pets", "cat")


def test_upstream_positional_order_and_keywords_still_delete(client: Client) -> None:
    client.put("pets2", "cat", b"meow").unwrap()
    assert client.delete("cat", "pets2").unwrap().n_deletes >= 1  # upstream's order
    assert not _exists(client, "pets2", "cat")
    client.put("pets2", "dog", b"woof").unwrap()
    assert client.delete(bucket_id="pets2", ball_id="dog").unwrap().n_deletes >= 1
    assert not _exists(client, "pets2", "dog")


def test_nothing_matched_stays_idempotent(client: Client) -> None:
    assert client.delete("ghost", "nobucket").unwrap().n_deletes == 0
    assert client.delete(bucket_id="nobucket", ball_id="ghost").unwrap().n_deletes == 0


def test_delete_bucket_is_not_slowed_by_the_check(client: Client, cluster: client_support.Cluster) -> None:
    for i in range(3):
        client.put("pets3", f"k{i}", b"x" * 10).unwrap()
    assert client.delete_bucket("pets3").unwrap().deleted == 3
