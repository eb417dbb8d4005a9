"""A short body fails over to the other replicas, like a checksum mismatch (client-api §8.6 step 3).

Peers run with fault injection: ``truncate`` on one peer's P5 for one chunk makes the
router's R11 answer stop before its ``Content-Length`` (the router aborts mid-stream).
The read must then ask R1 for the replicas and pin the next R11 with ``Peer-Id`` to the
other one, instead of retrying the router (which picks the same bad replica again).

Final error when no good copy is found: ``IntegrityError`` only if every copy was proven
bad (another checksum); if a copy merely came short (transport), the honest error is that
transport error, ``UpstreamProtocolError``, since nothing proves the data bad.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import Client, RetryPolicy
from mictlanx_sync.protocol.errors import IntegrityError, UpstreamProtocolError

from .client_support import Cluster, flip_bytes, new_client
from .test_client_integrity import _serving_peer, _store

pytestmark = pytest.mark.timeout(90)

CHUNK = 64 * 1024
RETRY = RetryPolicy(retries=4, initial_delay=0.02, max_delay=0.05, jitter=False, deadline=30)


class FaultyCluster(Cluster):
    """A :class:`Cluster` whose peers have fault injection enabled (``/_faults``)."""

    def _peer_node(self, peer_id: str) -> Any:
        from mictlanx_sync.server.peer.app import create_app
        from mictlanx_sync.server.peer.config import PeerConfig

        from .client_support import CountingMiddleware, _Node

        data_dir = self.data_dir / peer_id

        def make_app() -> Any:
            config = PeerConfig(peer_id=peer_id, host="127.0.0.1", port=node.port, data_dir=data_dir, fsync=False,
                                faults="[]")
            return CountingMiddleware(create_app(config), peer_id, self.log, self._peer_delay)

        node = _Node("peer", peer_id, data_dir, make_app)
        return node


@pytest.fixture(scope="module")
def cluster() -> Iterator[FaultyCluster]:
    instance = FaultyCluster(peers=3, routers=2).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture()
def reader(cluster: FaultyCluster, tmp_path: Path) -> Iterator[Client]:
    with new_client(cluster.uri(), tmp_path, capacity_storage="0", retry=RETRY, breaker=None) as client:
        yield client
    for peer in cluster.peers:
        assert requests.delete(f"{peer.url}/_faults", timeout=10).status_code == 204


def _truncate(cluster: Cluster, peer_id: str, path: str, **rule: Any) -> None:
    rules = [{"route": "P5", "method": "GET", "path": path, "action": "truncate", "bytes": 1000, **rule}]
    assert requests.post(f"{cluster.peer(peer_id).url}/_faults", json=rules, timeout=10).status_code == 200


def _reads(cluster: Cluster, bucket: str, chunk: str, server: str) -> list[Any]:
    return cluster.log.select(server=server, method="GET", path=f"/api/v4/buckets/{bucket}/{chunk}")


def test_short_body_reads_the_other_replica(cluster: FaultyCluster, reader: Client, bucket: str,
                                            tmp_path: Path) -> None:
    data = _store(cluster, reader, bucket, "one-short")
    bad = _serving_peer(cluster, bucket, "one-short_1")
    (good,) = [p for p in cluster.holders(bucket, "one-short_1") if p != bad]
    _truncate(cluster, bad, r"/one-short_1$")
    cluster.log.clear()
    assert reader.get(bucket, "one-short").unwrap().data.tobytes() == data
    routed = _reads(cluster, bucket, "one-short_1", "mictlanx-router")
    assert [(s.headers.get("peer-id"), s.status) for s in routed] == [(None, 200), (good, 200)], routed
    assert len(_reads(cluster, bucket, "one-short_1", bad)) == 1  # the bad replica is not asked again
    assert cluster.log.count(server="mictlanx-router", method="GET",
                             path=f"/api/v4/buckets/{bucket}/one-short_1/size") == 1  # R1, once

    # The other read paths share the fetch: get_to_file, get_chunks, get_chunk.
    path = reader.get_to_file(bucket, "one-short", str(tmp_path / "out")).unwrap()
    assert Path(path).read_bytes() == data
    assert b"".join(v.tobytes() for _, v in reader.get_chunks(bucket, "one-short", order=True)) == data
    assert reader.get_chunk(bucket, "one-short", 1).unwrap()[0].data == data[CHUNK:2 * CHUNK]


def test_every_replica_short_is_the_transport_error(cluster: FaultyCluster, reader: Client, bucket: str) -> None:
    _store(cluster, reader, bucket, "all-short")
    holders = cluster.holders(bucket, "all-short_2")
    for peer_id in holders:
        _truncate(cluster, peer_id, r"/all-short_2$")
    cluster.log.clear()
    error = reader.get(bucket, "all-short").unwrap_err()
    # No copy was proven bad, only cut short: not an IntegrityError.
    assert type(error) is UpstreamProtocolError and "short body" in error.message, repr(error)
    routed = _reads(cluster, bucket, "all-short_2", "mictlanx-router")
    assert len(routed) == RETRY.retries  # every attempt, pinned or not, within max_retries
    assert {s.headers.get("peer-id") for s in routed[1:]} == set(holders)  # each replica asked
    assert all(len(_reads(cluster, bucket, "all-short_2", p)) >= 1 for p in holders)


def test_a_transient_short_body_on_the_only_replica_is_retried(cluster: FaultyCluster, reader: Client,
                                                               bucket: str) -> None:
    data = os.urandom(3 * CHUNK)
    assert reader.put(bucket, "rf1", data, chunk_size=CHUNK, rf=1).unwrap()
    (only,) = cluster.holders(bucket, "rf1_0")
    _truncate(cluster, only, r"/rf1_0$", count=2)
    cluster.log.clear()
    assert reader.get(bucket, "rf1").unwrap().data.tobytes() == data
    routed = _reads(cluster, bucket, "rf1_0", "mictlanx-router")
    assert [s.headers.get("peer-id") for s in routed] == [None, only, only]  # pinned after the first cut


def test_one_corrupt_one_short_is_not_an_integrity_error(cluster: FaultyCluster, reader: Client,
                                                         bucket: str) -> None:
    _store(cluster, reader, bucket, "mixed")
    corrupt, short = cluster.holders(bucket, "mixed_1")
    (path,) = cluster.version_files(corrupt, bucket, "mixed_1")
    flip_bytes(path, offset=100, count=8)
    _truncate(cluster, short, r"/mixed_1$")
    error = reader.get(bucket, "mixed").unwrap_err()
    assert type(error) is UpstreamProtocolError, repr(error)
    # The short replica stops cutting: the read succeeds from it, skipping the corrupt one.
    assert requests.delete(f"{cluster.peer(short).url}/_faults", timeout=10).status_code == 204
    cluster.log.clear()
    assert reader.get(bucket, "mixed").is_ok
    assert len(_reads(cluster, bucket, "mixed_1", corrupt)) <= 1


def test_short_then_corrupt_everywhere_is_an_integrity_error(cluster: FaultyCluster, reader: Client,
                                                             bucket: str) -> None:
    """A copy that looks complete but is cut (``fix_length``) is another size: a bad copy."""
    _store(cluster, reader, bucket, "cut")
    holders = cluster.holders(bucket, "cut_3")
    for peer_id in holders:
        _truncate(cluster, peer_id, r"/cut_3$", fix_length=True)
    error = reader.get(bucket, "cut").unwrap_err()
    assert type(error) is IntegrityError, repr(error)
    assert sorted(error.detail["bad_peers"]) == sorted(holders)
