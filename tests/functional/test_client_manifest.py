"""One hash per byte on verified reads (issue 13): chunk 0's ``chunks_sha256`` manifest.

A verified read (``verify_full=True``) of an object written by this client hashes each
byte once, to verify its chunk, and proves the whole object from the chunk checksums; an
object without the manifest (older clients, upstream) still gets the ``full_checksum``
pass. A chunk replaced on the peers by another self-consistent ball is caught.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from mictlanx_sync import Client
from mictlanx_sync.client import chunk_upload, object_write
from mictlanx_sync.client.full_hash import FullHash
from mictlanx_sync.client.layout import MANIFEST_TAG, REQUIRED_TAGS, chunks_manifest
from mictlanx_sync.protocol.errors import IntegrityError
from mictlanx_sync.protocol.models import Chunk

from . import client_support
from .client_support import Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(60)
cluster = client_support.cluster

CHUNK = 64 * 1024
N = 8


class _Counted:
    """A SHA-256 object that counts the bytes it is fed."""

    def __init__(self, real: Any, counter: Counter, module: str) -> None:
        self._real, self._counter, self._module = real, counter, module

    def update(self, data: Any) -> None:
        self._counter[self._module] += memoryview(data).nbytes
        self._real.update(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class HashCount:
    """Bytes hashed by the client's modules (the in-process servers hash too: not counted)."""

    def __init__(self) -> None:
        self.by_module: Counter = Counter()
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.by_module.clear()

    @property
    def data_bytes(self) -> int:
        """Bytes of chunk data hashed: everything but the manifest's 64·N (layout)."""
        return sum(v for m, v in self.by_module.items() if m != "mictlanx_sync.client.layout")


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> HashCount:
    count = HashCount()
    real = hashlib.sha256

    def sha256_counting(data: Any = b"", **kwargs: Any) -> Any:
        module = sys._getframe(1).f_globals.get("__name__", "")
        hasher = real(**kwargs)
        if not module.startswith("mictlanx_sync.client"):
            hasher.update(data)
            return hasher
        counted = _Counted(hasher, count.by_module, module)
        if memoryview(data).nbytes:
            counted.update(data)
        return counted

    monkeypatch.setattr(hashlib, "sha256", sha256_counting)
    return count


@pytest.fixture()
def proofs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Optional[bool], Optional[str], bool]]:
    """``(verdict, manifest, proven)`` of every whole-object check of ``get``/``get_to_file``."""
    seen: list[tuple[Optional[bool], Optional[str], bool]] = []
    original = FullHash.verdict

    def spy(self: FullHash) -> Optional[bool]:
        verdict = original(self)
        seen.append((verdict, self.manifest, self.proven))
        return verdict

    monkeypatch.setattr(FullHash, "verdict", spy)
    return seen


@pytest.fixture()
def client(cluster: Cluster, tmp_path: Path) -> Iterator[Client]:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as instance:  # cache off
        yield instance


def _chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def test_chunk0_carries_the_manifest_and_the_others_keep_their_tags(client: Client, bucket: str) -> None:
    data = os.urandom(N * CHUNK - 5)
    assert client.put(bucket, "tags", data, chunk_size=CHUNK, tags={"user": "u"}).unwrap()
    _, meta0 = client.get_chunk(bucket, "tags", 0).unwrap()
    assert MANIFEST_TAG not in REQUIRED_TAGS
    assert meta0.tags[MANIFEST_TAG] == chunks_manifest([sha256(c) for c in _chunks(data)])
    for i in (1, N - 1):
        _, meta = client.get_chunk(bucket, "tags", i).unwrap()
        assert set(meta.tags) == {*REQUIRED_TAGS, "user"}, meta.tags
    got = client.get(bucket, "tags").unwrap()
    assert MANIFEST_TAG in got.metadatas[0].tags and MANIFEST_TAG not in got.metadatas[1].tags
    # One chunk: its checksum is full_checksum, no manifest.
    assert client.put(bucket, "one", b"x" * 100, chunk_size=CHUNK).unwrap()
    assert MANIFEST_TAG not in client.get_chunk(bucket, "one", 0).unwrap()[1].tags


def test_verified_get_hashes_each_byte_once(client: Client, bucket: str, tmp_path: Path, hashed: HashCount,
                                            proofs: list[tuple[Optional[bool], Optional[str], bool]]) -> None:
    data = os.urandom(N * CHUNK - 5)
    assert client.put(bucket, "once", data, chunk_size=CHUNK).unwrap()
    hashed.reset()
    assert client.get(bucket, "once", verify_full=True).unwrap().data.tobytes() == data
    assert hashed.data_bytes == len(data), hashed.by_module
    assert hashed.by_module["mictlanx_sync.client.layout"] == 64 * N  # the manifest: 64 bytes a chunk
    assert proofs[-1][0] is True and proofs[-1][2]
    hashed.reset()
    path = client.get_to_file(bucket, "once", str(tmp_path / "out"), fullname="once.bin").unwrap()
    assert Path(path).read_bytes() == data
    assert hashed.data_bytes == len(data), hashed.by_module
    for order in (True, False):
        hashed.reset()
        chunks = {m.key: v.tobytes() for m, v in client.get_chunks(bucket, "once", order=order)}
        assert b"".join(chunks[f"once_{i}"] for i in range(N)) == data
        assert hashed.data_bytes == len(data), (order, hashed.by_module)
    # One chunk: its verified checksum is full_checksum (once before, twice before this change).
    assert client.put(bucket, "single", data[:1000], chunk_size=CHUNK).unwrap()
    hashed.reset()
    assert client.get(bucket, "single").unwrap().data.tobytes() == data[:1000]
    assert hashed.data_bytes == 1000, hashed.by_module


def test_object_without_manifest_gets_the_data_pass(client: Client, bucket: str, hashed: HashCount,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    proofs: list[tuple[Optional[bool], Optional[str], bool]]) -> None:
    """As written by an older client or upstream: the full_checksum pass still runs."""
    data = os.urandom(N * CHUNK - 5)
    with monkeypatch.context() as patch:
        patch.setattr(chunk_upload, "MANIFEST_TAG", "not_a_manifest")
        assert client.put(bucket, "legacy", data, chunk_size=CHUNK).unwrap()
    assert MANIFEST_TAG not in client.get_chunk(bucket, "legacy", 0).unwrap()[1].tags
    hashed.reset()
    assert client.get(bucket, "legacy").unwrap().data.tobytes() == data
    assert hashed.data_bytes == 2 * len(data), hashed.by_module
    assert proofs[-1] == (True, None, False)
    # verify_full=False: chunks verified, no whole-object check, as before.
    hashed.reset()
    assert client.get(bucket, "legacy", verify_full=False).unwrap().data.tobytes() == data
    assert hashed.data_bytes == len(data), hashed.by_module


def test_a_wrong_manifest_never_fails_a_good_object(client: Client, bucket: str, hashed: HashCount,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag of that name that names other chunks (a foreign writer's): the pass decides."""
    data = os.urandom(4 * CHUNK)
    with monkeypatch.context() as patch:
        patch.setattr(object_write, "chunks_manifest", lambda checksums: "0" * 64)
        assert client.put(bucket, "foreign", data, chunk_size=CHUNK).unwrap()
    hashed.reset()
    assert client.get(bucket, "foreign").unwrap().data.tobytes() == data
    assert hashed.data_bytes == 2 * len(data)
    # get_chunks yields chunks before the end: no pass to fall back on, the mismatch is an error.
    with pytest.raises(IntegrityError, match="chunks_sha256"):
        list(client.get_chunks(bucket, "foreign", order=True))


def test_replaced_chunk_is_caught_by_the_manifest(cluster: Cluster, client: Client, bucket: str, tmp_path: Path,
                                                  proofs: list[tuple[Optional[bool], Optional[str], bool]]) -> None:
    """Chunk 3 rewritten on the peers with other, self-consistent bytes (ETag = its checksum):
    the pinned read finds no copy at the object's version and reads the newest (unpinned)."""
    data, other = os.urandom(N * CHUNK), os.urandom(CHUNK)
    assert client.put(bucket, "swap", data, chunk_size=CHUNK).unwrap()
    assert cluster.remove_everywhere(bucket, "swap_3") >= 1
    assert client.put_single_chunk(bucket, "swap", Chunk("swap", 3, other), update=True).unwrap()
    error = client.get(bucket, "swap").unwrap_err()
    assert type(error) is IntegrityError and "chunks_sha256" in error.message, error
    verdict, manifest, proven = proofs[-1]
    assert verdict is False and manifest is not None and not proven
    out = tmp_path / "out"
    assert type(client.get_to_file(bucket, "swap", str(out), fullname="swap.bin").unwrap_err()) is IntegrityError
    assert not out.exists() or not any(out.iterdir())
    for order in (True, False):
        with pytest.raises(IntegrityError, match="chunks_sha256"):
            list(client.get_chunks(bucket, "swap", order=order))
    # verify_full=False returns what the peers hold, as before.
    got = client.get(bucket, "swap", verify_full=False).unwrap().data.tobytes()
    assert got == data[:3 * CHUNK] + other + data[4 * CHUNK:]


def test_cache_hits_are_proven_too(cluster: Cluster, tmp_path: Path, bucket: str, hashed: HashCount) -> None:
    """With the cache on: a miss fills it (one hash per byte), a hit re-hashes each chunk once."""
    data = os.urandom(N * CHUNK)
    with new_client(cluster.uri(), tmp_path / "c") as cached:
        assert cached.put(bucket, "cached", data, chunk_size=CHUNK).unwrap()
        for _ in range(2):
            hashed.reset()
            assert cached.get(bucket, "cached").unwrap().data.tobytes() == data
            assert hashed.data_bytes == len(data), hashed.by_module
