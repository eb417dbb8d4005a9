"""``get`` reuses the memory of results its callers let go of, and never one they still hold.

Real routers and peers (in-process cluster); objects of 8 MiB or more, chunks read directly
and through the router. What must hold: a result the caller still holds is never changed by
a later ``get`` of another object of the same size, from any thread; a released result's
memory is reused (the point: no fresh page faults); ``result_buffer_pool=0`` turns it off;
``close()`` releases the memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
from pathlib import Path

import pytest

from mictlanx_sync.client.result_buffers import RECYCLE_FROM
from mictlanx_sync.protocol.errors import ValidationError

from . import client_support
from .client_support import Cluster, new_client

pytestmark = pytest.mark.timeout(120)
cluster = client_support.cluster

SIZE = RECYCLE_FROM + 12_345  # an object size no other test reads
CHUNK = 2 * 1024 * 1024


def put_objects(client, bucket: str, count: int) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    objects = {f"obj-{i}": os.urandom(SIZE) for i in range(count)}
    for key, data in objects.items():
        client.put(bucket, key, data, chunk_size=CHUNK).unwrap()
    return objects


def test_a_held_result_is_never_overwritten_and_a_released_one_is_reused(cluster: Cluster, tmp_path: Path,
                                                                          bucket: str) -> None:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        objects = put_objects(client, bucket, 3)
        first = client.get(bucket, "obj-0").unwrap().data
        memory = id(first.obj)
        second = client.get(bucket, "obj-1").unwrap().data
        assert id(second.obj) != memory
        assert first == objects["obj-0"] and second == objects["obj-1"]
        del first  # the caller lets go of obj-0: its memory is free to reuse
        third = client.get(bucket, "obj-2").unwrap().data
        assert id(third.obj) == memory, "a released result's memory was not reused"
        assert third == objects["obj-2"] and second == objects["obj-1"]


def test_threads_reading_same_sized_objects_each_keep_their_own_bytes(cluster: Cluster, tmp_path: Path,
                                                                     bucket: str) -> None:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", result_buffer_pool="64MiB") as client:
        objects = put_objects(client, bucket, 4)
        digests = {key: hashlib.sha256(data).hexdigest() for key, data in objects.items()}

        def read_and_hold(round_: int) -> list[str]:
            problems = []
            held = []
            for i in range(3):  # hold several results while the other threads read
                key = f"obj-{(round_ + i) % 4}"
                held.append((key, client.get(bucket, key).unwrap().data))
            for key, data in held:
                if hashlib.sha256(data).hexdigest() != digests[key]:
                    problems.append(f"{key} changed while held")
            return problems

        with cf.ThreadPoolExecutor(4) as pool:
            problems = [p for found in pool.map(read_and_hold, range(12)) for p in found]
        assert problems == []


def test_no_reuse_when_turned_off_and_close_releases_the_pool(cluster: Cluster, tmp_path: Path,
                                                             bucket: str) -> None:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", result_buffer_pool=0) as client:
        put_objects(client, bucket, 1)
        client.get(bucket, "obj-0").unwrap()
        assert client._result_buffers.held_bytes == 0
    client = new_client(cluster.uri(), tmp_path, capacity_storage="0")
    client.get(bucket, "obj-0").unwrap()
    assert client._result_buffers.held_bytes == SIZE
    client.close()
    assert client._result_buffers.held_bytes == 0


@pytest.mark.parametrize("value", [-1, "lots", 1.5, True])
def test_a_bad_pool_size_is_refused(cluster: Cluster, tmp_path: Path, value: object) -> None:
    with pytest.raises(ValidationError, match="result_buffer_pool"):
        new_client(cluster.uri(), tmp_path, result_buffer_pool=value)
