"""Read and write details of client-api §8.5-8.6 beyond plain round trips."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from mictlanx_sync import Client, Router
from mictlanx_sync.protocol.errors import GetChunkError, NotFoundError, ValidationError
from mictlanx_sync.protocol.models import Chunk

from . import client_support
from .client_support import HOST, P5_GET_DATA, R7_PUT_DATA, Cluster, new_client, sha256

pytestmark = pytest.mark.timeout(60)
client = client_support.client
cluster = client_support.cluster

CHUNK = 16 * 1024


def test_missing_middle_chunk_is_get_chunk_error(cluster: Cluster, client: Client, bucket: str,
                                                 tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK)
    assert client.put(bucket, "holes", data, chunk_size=CHUNK, rf=2).unwrap()
    # Removed on the peers with no grace: a router delete would leave the version readable
    # to pinned reads for version_grace (docs/consistency.md §1.2).
    assert cluster.remove_everywhere(bucket, "holes_2") == 2
    error = client.get(bucket, "holes").unwrap_err()
    assert type(error) is GetChunkError and (error.status_code, error.code) == (502, 503), repr(error)
    assert error.detail is not None and error.detail.get("missing") == [2]
    error = client.get_to_file(bucket, "holes", str(tmp_path / "out"), fullname="holes.bin").unwrap_err()
    assert type(error) is GetChunkError
    assert list((tmp_path / "out").iterdir()) == []  # no file, no .part
    with pytest.raises(GetChunkError):
        list(client.get_chunks(bucket, "holes"))
    # The last chunk missing: also a GetChunkError.
    assert cluster.remove_everywhere(bucket, "holes_4") == 2
    assert type(client.get(bucket, "holes").unwrap_err()) is GetChunkError


def test_get_to_file_naming_and_existing_files(cluster: Cluster, client: Client, bucket: str,
                                               tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    source = tmp_path / "report.final.pdf"
    source.write_bytes(data)
    assert client.put_file(bucket, "named", source, chunk_size=CHUNK).unwrap()
    out = tmp_path / "a" / "b"
    assert client.get_to_file(bucket, "named", str(out)).unwrap() == str(out / "report.final.pdf")
    # Only the last path component of a name is used.
    escaped = client.get_to_file(bucket, "named", str(out), fullname="../../escape.bin").unwrap()
    assert escaped == str(out / "escape.bin")
    assert not (tmp_path / "escape.bin").exists()
    for bad in ("..", ".", ""):
        expected = out / ("report.final.pdf" if bad == "" else "named")
        assert client.get_to_file(bucket, "named", str(out), fullname=bad, overwrite=True).unwrap() == str(expected)
    # Same content already there: no download at all.
    cluster.log.clear()
    assert client.get_to_file(bucket, "named", str(out), force=True).unwrap() == str(out / "report.final.pdf")
    assert cluster.log.count(method="GET", path=P5_GET_DATA) == 0
    # Without the fullname tag: ball_id (+ .extension when tagged).
    assert client.put(bucket, "plain", b"abc").unwrap()
    assert client.get_to_file(bucket, "plain", str(out)).unwrap() == str(out / "plain")
    assert client.put(bucket, "ext", b"abc", tags={"extension": "csv"}).unwrap()
    assert client.get_to_file(bucket, "ext", str(out)).unwrap() == str(out / "ext.csv")
    assert sorted(p.name for p in out.iterdir()) == ["escape.bin", "ext.csv", "named", "plain", "report.final.pdf"]


def test_single_ball_reads_and_put_single_chunk(client: Client, bucket: str) -> None:
    data = os.urandom(3 * CHUNK)
    assert client.put(bucket, "obj", data, chunk_size=CHUNK).unwrap()
    single = client.get(bucket, "obj_1", chunk_index=-1).unwrap()
    assert single.data.tobytes() == data[CHUNK:2 * CHUNK]
    chunk, meta = client.get_chunk(bucket, "obj", 2).unwrap()
    assert chunk.data == data[2 * CHUNK:] and chunk.chunk_id == "obj_2" and meta.key == "obj_2"

    # Raw-ball writes, as upstream: readable as an object when the caller supplies the tags.
    whole = os.urandom(2 * CHUNK)
    tags = {"num_chunks": "2", "full_checksum": sha256(whole)}
    for i in range(2):
        piece = Chunk("raw", i, whole[i * CHUNK:(i + 1) * CHUNK])
        assert client.put_single_chunk(bucket, "raw", piece, tags=tags).unwrap() is True
    assert client.get(bucket, "raw").unwrap().data.tobytes() == whole
    meta0 = client.get_metadata_by_key(bucket, "raw_0").unwrap().metadata
    assert meta0.ball_id == "raw" and meta0.tags["group_id"] == "raw" and meta0.tags["index"] == "0"
    bad = client.put_single_chunk(bucket, "raw", Chunk("raw", 5, b"x"), tags={"index": "9"})
    assert type(bad.unwrap_err()) is ValidationError


def test_get_chunks_closed_early(cluster: Cluster, client: Client, bucket: str) -> None:
    data = os.urandom(40 * CHUNK)
    assert client.put(bucket, "early", data, chunk_size=CHUNK).unwrap()
    cluster.log.clear()
    chunks = client.get_chunks(bucket, "early", max_parallel_gets=2, order=True, force=True)
    meta, view = next(chunks)
    assert meta.key == "early_0" and view.tobytes() == data[:CHUNK]
    chunks.close()
    time.sleep(0.3)
    assert cluster.log.count(server="mictlanx-router", method="GET", path=P5_GET_DATA) <= 4  # not all 40


def test_client_from_router_objects_and_one_worker(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    routers = [Router(r.server_id, HOST, r.port, "http") for r in cluster.routers]
    try:
        with new_client(routers, tmp_path, max_workers=1, max_bulk_workers=1) as c:  # type: ignore[arg-type]
            assert [r.base_url() for r in c.routers] == [r.url for r in cluster.routers]
            data = os.urandom(20 * CHUNK + 1)
            assert c.put(bucket, "one-worker", data, chunk_size=CHUNK, max_concurrency=5).unwrap()
            assert c.get(bucket, "one-worker", max_paralell_gets=5).unwrap().data.tobytes() == data
            assert b"".join(v.tobytes() for _, v in c.get_chunks(bucket, "one-worker", order=True)) == data
            assert c.put_bulk("one", [{"bucket_id": bucket, "key": f"ow-{i}", "source": data[:CHUNK + 1]}
                                      for i in range(3)]).unwrap()
            assert len(c.await_bulk("one", timeout=30).unwrap().successes) == 3
    finally:
        for router in routers:
            router.close()


@pytest.fixture()
def two_phase(cluster: Cluster, tmp_path: Path) -> Iterator[Client]:
    """A client that writes every chunk with R5 + R7 (``inline_max=0``)."""
    with new_client(cluster.uri(), tmp_path, inline_max=0) as instance:
        yield instance


def test_put_file_changed_during_upload_is_cleaned_up(cluster: Cluster, two_phase: Client, bucket: str,
                                                      tmp_path: Path) -> None:
    client = two_phase  # the test waits for (and delays) R7s, which inline chunks would not use
    source = tmp_path / "moving.bin"
    source.write_bytes(os.urandom(8 * CHUNK))
    cluster.data_delay = 0.05
    try:
        def modify() -> None:
            deadline = time.monotonic() + 10
            while cluster.log.count(server="mictlanx-peer", method="POST", path=R7_PUT_DATA) < 1:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            with open(source, "r+b") as handle:  # after pass 1, before the last chunks are read
                handle.seek(7 * CHUNK)
                handle.write(os.urandom(CHUNK))

        cluster.log.clear()
        thread = threading.Thread(target=modify)
        thread.start()
        result = client.put_file(bucket, "moving", source, chunk_size=CHUNK, max_concurrency=1)
        thread.join(10)
    finally:
        cluster.data_delay = 0.0
    error = result.unwrap_err()
    assert type(error) is ValidationError and "changed" in error.message
    # Nothing this call wrote remains.
    for i in range(8):
        assert cluster.holders(bucket, f"moving_{i}") == [], i
    assert type(client.get(bucket, "moving").unwrap_err()) is NotFoundError


def test_get_to_file_interrupted_leaves_no_part_file(cluster: Cluster, client: Client, bucket: str,
                                                     tmp_path: Path) -> None:
    """Ctrl-C (SIGINT → KeyboardInterrupt in the main thread) during a download."""
    import signal

    data = os.urandom(30 * CHUNK)
    assert client.put(bucket, "interrupted", data, chunk_size=CHUNK).unwrap()
    out = tmp_path / "out"
    cluster.data_delay = 0.05
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
    # A test run started as a background job inherits SIGINT ignored (POSIX), and Python then
    # installs no handler: the Ctrl-C would never arrive. Install Python's own for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            client.get_to_file(bucket, "interrupted", str(out), fullname="i.bin", max_paralell_gets=2)
            time.sleep(5)  # not reached: the download takes > 0.3 s
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        cluster.data_delay = 0.0
    # The descriptor of the .part file is closed by now, and the next file opened is likely
    # to get its number: chunk tasks still running must not write into it.
    bystander = tmp_path / "bystander.bin"
    with open(bystander, "wb") as handle:
        time.sleep(0.5)
        handle.flush()
    assert bystander.read_bytes() == b""
    assert list(out.iterdir()) == []  # neither i.bin nor .i.bin.*.part
    assert client.get_to_file(bucket, "interrupted", str(out), fullname="i.bin").unwrap() == str(out / "i.bin")
    assert (out / "i.bin").read_bytes() == data


def test_source_read_error_mid_put_is_cleaned_up(cluster: Cluster, two_phase: Client, bucket: str,
                                                 tmp_path: Path) -> None:
    """A lazy ``Chunks.from_file`` whose file shrinks mid-upload: a typed error, nothing left."""
    client = two_phase  # the test waits for (and delays) R7s, which inline chunks would not use
    from mictlanx_sync.protocol.errors import LocalStorageError
    from mictlanx_sync.protocol.models import Chunks

    source = tmp_path / "shrinking.bin"
    source.write_bytes(os.urandom(8 * CHUNK))
    cluster.data_delay = 0.05
    try:
        def shrink() -> None:
            deadline = time.monotonic() + 10
            while cluster.log.count(server="mictlanx-peer", method="POST", path=R7_PUT_DATA) < 1:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            with open(source, "r+b") as handle:
                handle.truncate(5 * CHUNK + 10)

        cluster.log.clear()
        thread = threading.Thread(target=shrink)
        thread.start()
        result = client.put_chunks(bucket, "shrinking", Chunks.from_file(source, CHUNK, "shrinking"),
                                   max_concurrency=1)
        thread.join(10)
    finally:
        cluster.data_delay = 0.0
    error = result.unwrap_err()
    assert isinstance(error, (LocalStorageError, ValidationError)), repr(error)
    sent = cluster.log.count(server="mictlanx-router", method="POST", path=R7_PUT_DATA)
    assert sent >= 1
    for i in range(8):
        assert cluster.holders(bucket, f"shrinking_{i}") == [], i
