"""Acceptance 1: round trips with matching checksums, every write path and every read path.

Sizes 0, 1, C-1, C, C+1 at several chunk sizes C, and 50 MB at two chunk sizes, through
``put``/``get``, ``put_file``/``get_to_file`` and ``put_chunks``/``get_chunks`` (ordered
and unordered), against 2 routers over 3 peers. Each case also checks the stored layout
(protocol §P5): N = ceil(size / C) chunks (1 for empty data), strict sizes, tags.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mictlanx_sync import Client
from mictlanx_sync.protocol.models import Chunks

from . import client_support
from .client_support import Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(120)
client = client_support.client
cluster = client_support.cluster

CHUNK_SIZES = [1024, 65536, 256 * 1024 + 3]


def _sizes(chunk: int) -> list[int]:
    return [0, 1, chunk - 1, chunk, chunk + 1]


def _expected_chunks(size: int, chunk: int) -> int:
    return max(1, -(-size // chunk))


def _check_layout(client: Client, bucket: str, key: str, data: bytes, chunk: int) -> None:
    """The stored chunks follow §P5: ``{key}_{i}``, strict sizes, the five tags."""
    ball = client.get_metadata(bucket, key).unwrap()
    n = _expected_chunks(len(data), chunk)
    assert [m.key for m in ball.chunks] == [f"{key}_{i}" for i in range(n)]
    assert ball.size == len(data)
    assert ball.checksum == sha256(data)
    for i, meta in enumerate(ball.chunks):
        piece = data[i * chunk:(i + 1) * chunk]
        assert meta.size == len(piece)
        assert meta.checksum == sha256(piece)
        assert meta.tags["index"] == str(i)
        assert meta.tags["num_chunks"] == str(n)
        assert meta.tags["full_checksum"] == sha256(data)
        assert meta.tags["group_id"] == key
        assert meta.tags["chunk_size"] == str(len(piece))


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_put_get_small_sizes(client: Client, bucket: str, chunk: int) -> None:
    for size in _sizes(chunk):
        data = os.urandom(size)
        key = f"pg-{chunk}-{size}"
        assert client.put(bucket, key, data, chunk_size=chunk, rf=2).unwrap() is True
        got = client.get(bucket, key, chunk_size="64KiB").unwrap()
        assert sha256(got.data) == sha256(data), (chunk, size)
        assert got.data.tobytes() == data
        assert [m.key for m in got.metadatas] == [f"{key}_{i}" for i in range(_expected_chunks(size, chunk))]
        _check_layout(client, bucket, key, data, chunk)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_put_file_get_to_file_small_sizes(client: Client, bucket: str, chunk: int, tmp_path: Path) -> None:
    for size in _sizes(chunk):
        data = os.urandom(size)
        key = f"pf-{chunk}-{size}"
        source = tmp_path / f"src-{size}.bin"
        source.write_bytes(data)
        assert client.put_file(bucket, key, source, chunk_size=chunk, rf=1).unwrap() is True
        out_dir = tmp_path / f"out-{size}"
        path = client.get_to_file(bucket, key, str(out_dir)).unwrap()
        # The target name comes from the `fullname` tag put_file added.
        assert Path(path) == out_dir / source.name
        assert sha256(Path(path).read_bytes()) == sha256(data)
        assert sorted(p.name for p in out_dir.iterdir()) == [source.name]  # no .part left
        _check_layout(client, bucket, key, data, chunk)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_put_chunks_get_chunks_small_sizes(client: Client, bucket: str, chunk: int) -> None:
    for size in _sizes(chunk):
        data = os.urandom(size)
        key = f"pc-{chunk}-{size}"
        assert client.put_chunks(bucket, key, Chunks.from_bytes(data, chunk, key), rf=2).unwrap() is True
        n = _expected_chunks(size, chunk)
        ordered = list(client.get_chunks(bucket, key, order=True))
        assert [m.key for m, _ in ordered] == [f"{key}_{i}" for i in range(n)]
        assert b"".join(v.tobytes() for _, v in ordered) == data
        unordered = list(client.get_chunks(bucket, key, order=False))
        assert sorted(int(m.tags["index"]) for m, _ in unordered) == list(range(n))
        by_index = {int(m.tags["index"]): v.tobytes() for m, v in unordered}
        assert b"".join(by_index[i] for i in range(n)) == data
        for meta, view in unordered:
            assert meta.checksum == sha256(view) and meta.size == len(view)
        _check_layout(client, bucket, key, data, chunk)


def test_put_chunks_of_raw_bytes_items(client: Client, bucket: str) -> None:
    """A plain list of bytes is a valid ``chunks`` argument; a ragged one is refused."""
    pieces = [os.urandom(1000), os.urandom(1000), os.urandom(10)]
    assert client.put_chunks(bucket, "raw-list", pieces).unwrap() is True
    assert client.get(bucket, "raw-list").unwrap().data.tobytes() == b"".join(pieces)
    ragged = client.put_chunks(bucket, "ragged", [b"a" * 10, b"b" * 5, b"c" * 10])
    assert type(ragged.unwrap_err()).__name__ == "ValidationError"


@pytest.fixture(scope="module")
def big_data() -> bytes:
    return os.urandom(50 * 1000 * 1000)


@pytest.mark.parametrize("chunk", ["1MB", "8MiB"])
def test_50mb_every_path(cluster: Cluster, tmp_path: Path, bucket: str, big_data: bytes,
                         chunk: str) -> None:
    digest = sha256(big_data)
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as c:
        assert c.put(bucket, "big-put", big_data, chunk_size=chunk, rf=1).unwrap() is True
        assert sha256(c.get(bucket, "big-put").unwrap().data) == digest

        source = tmp_path / "big.bin"
        source.write_bytes(big_data)
        assert c.put_file(bucket, "big-file", source, chunk_size=chunk).unwrap() is True
        path = c.get_to_file(bucket, "big-file", str(tmp_path / "out")).unwrap()
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            while piece := handle.read(1 << 22):
                hasher.update(piece)
        assert hasher.hexdigest() == digest
        source.unlink()

        assert c.put_chunks(bucket, "big-chunks", Chunks.from_bytes(big_data, chunk, "big-chunks")).unwrap()
        full = hashlib.sha256()
        count = 0
        for _meta, view in c.get_chunks(bucket, "big-chunks", order=True):
            full.update(view)
            count += 1
        assert full.hexdigest() == digest
        sizes = {}
        for meta, view in c.get_chunks(bucket, "big-chunks", order=False):
            assert meta.checksum == sha256(view)
            sizes[int(meta.tags["index"])] = len(view)
        assert sorted(sizes) == list(range(count)) and sum(sizes.values()) == len(big_data)
