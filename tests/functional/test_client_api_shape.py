"""Issue 14 §6: API shape a newcomer trips over."""

from __future__ import annotations

from pathlib import Path

import pytest

from mictlanx_sync import Client
from mictlanx_sync.errors import LocalFileNotFoundError, ValidationError

from . import client_support

pytestmark = pytest.mark.timeout(120)
client = client_support.client
cluster = client_support.cluster


def test_put_file_of_a_missing_file_is_a_file_not_found_error(client: Client, tmp_path: Path) -> None:
    result = client.put_file("docs", "nothing", tmp_path / "nonexistent")
    error = result.unwrap_err()
    assert isinstance(error, FileNotFoundError) and isinstance(error, LocalFileNotFoundError)
    assert isinstance(error, ValidationError)  # what it was before, still caught as such
    with pytest.raises(FileNotFoundError, match="no such file"):
        result.unwrap()


def _content_type(client: Client, bucket: str, key: str) -> str:
    return client.get_metadata(bucket, key).unwrap().chunks[0].content_type


def test_content_type_is_guessed_from_the_name_unless_given(client: Client, tmp_path: Path) -> None:
    photo = tmp_path / "cat.png"
    photo.write_bytes(b"\x89PNG fake")
    client.put_file("docs", "photo", photo).unwrap()
    assert _content_type(client, "docs", "photo") == "image/png"
    client.put("docs", "notes.txt", b"hello").unwrap()
    assert _content_type(client, "docs", "notes.txt") == "text/plain"
    client.put("docs", "blob", b"\x00\x01").unwrap()
    assert _content_type(client, "docs", "blob") == "application/octet-stream"
    client.put("docs", "table", b"a,b\n", content_type="text/csv").unwrap()
    assert _content_type(client, "docs", "table") == "text/csv"
    assert isinstance(client.put("docs", "bad", b"x", content_type="nonsense").unwrap_err(), ValidationError)


def test_max_parallel_gets_and_upstream_spelling(client: Client) -> None:
    client.put("docs", "par", b"p" * 5000, chunk_size=1000).unwrap()
    assert client.get("docs", "par", max_parallel_gets=2).unwrap().data.tobytes() == b"p" * 5000
    assert client.get("docs", "par", max_paralell_gets=3).unwrap().data.tobytes() == b"p" * 5000
