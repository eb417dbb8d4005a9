"""Wire models: lax parsing, unknown fields, ResponseFormatError; value types; Chunks splitting."""

from __future__ import annotations

import hashlib
import pickle
from typing import Dict, List

import attrs
import pytest

from mictlanx_sync.protocol.errors import LocalStorageError, ResponseFormatError, ValidationError
from mictlanx_sync.protocol.models import (
    Ball,
    BallMetadata,
    Bucket,
    BulkPutResult,
    Chunk,
    Chunks,
    DeleteBucketResponse,
    DeletedByKeyResponse,
    GetMetadataResponse,
    GetResponse,
    GetRouterBucketMetadataResponse,
    Metadata,
    PeerCurrentState,
    PeerPutMetadataResponse,
    PeerStatsResponse,
    PutMetadataResponse,
    loads,
    parse_as,
)

CHECKSUM = "a" * 64


def meta(**overrides: object) -> dict:
    base = {"key": "k_0", "size": 3, "checksum": CHECKSUM, "tags": {"index": "0"}, "content_type": "a/b",
            "producer_id": "p", "ball_id": "k", "bucket_id": "b", "is_disabled": False}
    base.update(overrides)
    return base


@pytest.mark.parametrize("value", [5, 5.0, "5", " 5 ", "5.0"])
def test_int_field_is_lax(value: object) -> None:
    assert Metadata.from_json(meta(size=value)).size == 5


@pytest.mark.parametrize("value", [5.5, "5.5", True, False, None, "five", [5], {"a": 1}])
def test_int_field_rejects(value: object) -> None:
    with pytest.raises(ResponseFormatError):
        Metadata.from_json(meta(size=value))


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["k"]])
def test_str_field_rejects_non_strings(value: object) -> None:
    with pytest.raises(ResponseFormatError):
        Metadata.from_json(meta(key=value))


def test_float_field_accepts_ints_and_numeric_strings() -> None:
    base = {"key": "k", "tasks_ids": ["g"], "bucket_id": "b", "replicas": ["p"], "extra": {"exists": True}}
    assert PutMetadataResponse.from_json({**base, "service_time": 1}).service_time == 1.0
    assert PutMetadataResponse.from_json({**base, "service_time": "0.25"}).service_time == 0.25
    with pytest.raises(ResponseFormatError):
        PutMetadataResponse.from_json({**base, "service_time": True})


def test_tags_values_must_be_strings() -> None:
    with pytest.raises(ResponseFormatError):
        Metadata.from_json(meta(tags={"index": 0}))


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    m = Metadata.from_json({"key": "k", "size": 1, "checksum": CHECKSUM, "surprise": [1, 2]})
    assert m.tags == {} and m.bucket_id == "" and m.is_disabled is False
    assert m.content_type == "application/octet-stream"


def test_is_disable_is_accepted_on_input_and_is_disabled_is_emitted() -> None:
    m = Metadata.from_json(meta(is_disabled=None, is_disable=True) | {"is_disabled": True})
    assert m.is_disabled is True
    raw = meta()
    del raw["is_disabled"]
    raw["is_disable"] = True
    m = Metadata.from_json(raw)
    assert m.is_disabled is True
    assert "is_disabled" in m.to_dict() and "is_disable" not in m.to_dict()


def test_missing_required_field() -> None:
    raw = meta()
    del raw["checksum"]
    with pytest.raises(ResponseFormatError, match="checksum"):
        Metadata.from_json(raw)


@pytest.mark.parametrize("body", [b"not json", b"", b"{", "<html>"])
def test_non_json_body(body: object) -> None:
    with pytest.raises(ResponseFormatError):
        Metadata.from_json(body)


@pytest.mark.parametrize("obj", [[], "x", 3, None])
def test_non_object_body(obj: object) -> None:
    with pytest.raises(ResponseFormatError):
        Metadata.from_json(obj)


def test_loads() -> None:
    assert loads(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ResponseFormatError):
        loads(b"\xff\xfe")


def test_nested_models_and_containers() -> None:
    r = GetMetadataResponse.from_json({"service_time": "3", "peer_id": "p", "local_peer_id": "p", "metadata": meta()})
    assert isinstance(r.metadata, Metadata) and r.service_time == 3
    with pytest.raises(ResponseFormatError, match=r"metadata\.size"):
        GetMetadataResponse.from_json({"service_time": 3, "peer_id": "p", "local_peer_id": "p",
                                       "metadata": meta(size=1.5)})
    state = PeerCurrentState.from_json({"nodes": [{"node_id": "n", "ip_addr": "h", "port": "1"}],
                                        "balls": {"b@k": {"locations": ["n"], "size": 2}}})
    assert state.nodes[0].port == 1 and state.balls["b@k"].size == 2
    items = parse_as(List[Metadata], [meta(), meta(key="k_1")])
    assert [m.key for m in items] == ["k_0", "k_1"]
    stats = parse_as(Dict[str, PeerStatsResponse], {"p": {
        "peer_id": "p", "used_disk": 1, "total_disk": 2, "available_disk": 1, "disk_uf": 0.5, "balls": [],
        "peers": []}})
    assert stats["p"].disk_uf == 0.5


def test_router_bucket_reads_peers_ids() -> None:
    r = GetRouterBucketMetadataResponse.from_json({"bucket_id": "b", "peers_ids": ["p0"], "balls": [meta()]})
    assert r.peer_ids == ["p0"]
    r = GetRouterBucketMetadataResponse.from_json({"bucket_id": "b", "peer_ids": ["p1"], "peers_ids": ["p0"]})
    assert r.peer_ids == ["p1"]


def test_defaults_of_extension_fields() -> None:
    assert PeerPutMetadataResponse.from_json({"key": "k", "service_time": 1, "task_id": "t", "node_id": "n"}).exists \
        is False
    d = DeletedByKeyResponse.from_json({"n_deletes": "1", "key": "k"})
    assert d.failed_peers == [] and d.pending_peers == []


def test_models_are_frozen_evolvable_and_picklable() -> None:
    m = Metadata.from_json(meta())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.size = 4  # type: ignore[misc]
    assert attrs.evolve(m, size=4).size == 4
    assert pickle.loads(pickle.dumps(m)) == m
    assert Metadata.from_json(m.to_dict()) == m


def test_to_dict_round_trip_of_nested() -> None:
    b = BallMetadata.from_json({"bucket_id": "b", "ball_id": "k", "size": "3 bytes", "size_bytes": 3,
                                "checksum": "", "chunks": [meta()]})
    assert BallMetadata.from_json(b.to_dict()) == b
    d = DeleteBucketResponse("b", 1, 0, 1, ["k_0"], 0.5)
    assert d.to_dict()["keys"] == ["k_0"]


def test_peer_stats_add_and_empty() -> None:
    a = PeerStatsResponse("a", 1, 10, 9, 0.1, [Metadata.from_json(meta())], ["x"])
    b = PeerStatsResponse("b", 2, 10, 8, 0.3, [Metadata.from_json(meta())], ["y"])
    total = PeerStatsResponse.empty() + a + b
    assert total.used_disk == 3 and len(total.balls) == 1 and set(total.peers) == {"x", "y"}


def test_get_response_is_read_only() -> None:
    r = GetResponse(memoryview(bytearray(b"abc")), [])
    assert r.data.readonly and r.data.tobytes() == b"abc"


def test_ball_and_bucket() -> None:
    chunks = [
        Metadata.from_json(meta(key="k_1", size=2, tags={"index": "1"})),
        Metadata.from_json(meta(key="k_0", size=3, tags={"index": "0", "full_checksum": CHECKSUM,
                                                         "fullname": "f.txt", "extension": "txt",
                                                         "updated_at": "17"})),
    ]
    ball = Ball.from_chunks("b", "k", chunks)
    assert [c.key for c in ball.chunks] == ["k_0", "k_1"]
    assert (ball.size, ball.checksum, ball.fullname, ball.extension, ball.updated_at) == (5, CHECKSUM, "f.txt",
                                                                                          "txt", 17)
    assert Ball.from_chunks("b", "x", [Metadata.from_json(meta())]).updated_at == -1
    bucket = Bucket("b", {"k": ball})
    assert bucket.size_bytes() == 5 and bucket.size() == "5 bytes" and bucket.len() == 1 and len(bucket) == 1
    assert list(bucket) == [ball]
    assert BulkPutResult().successes == []


# --- Chunk / Chunks ------------------------------------------------------------------
def test_chunk_defaults_and_lazy_checksum() -> None:
    c = Chunk("g", 3, b"abc")
    assert c.chunk_id == "g_3" and c.size == 3
    assert c._checksum is None
    assert c.checksum == hashlib.sha256(b"abc").hexdigest()
    assert Chunk("g", 0, b"", chunk_id="x", checksum="given").checksum == "given"


C = 4


@pytest.mark.parametrize("n, sizes", [(0, [0]), (1, [1]), (C - 1, [C - 1]), (C, [C]), (C + 1, [C, 1]),
                                      (2 * C, [C, C]), (2 * C + 1, [C, C, 1])])
def test_chunks_from_bytes_strict_split(n: int, sizes: list[int]) -> None:
    data = bytes(range(n))
    chunks = Chunks.from_bytes(data, C, "g")
    items = list(chunks)
    assert len(chunks) == chunks.len() == len(items) == len(sizes)
    assert [c.size for c in items] == sizes
    assert [c.index for c in items] == list(range(len(sizes)))
    assert [c.chunk_id for c in items] == [f"g_{i}" for i in range(len(sizes))]
    assert b"".join(bytes(c.data) for c in items) == data
    assert all(isinstance(c.data, memoryview) for c in items)
    assert list(chunks)[0].size == sizes[0]  # re-iterable


def test_chunks_from_bytes_is_zero_copy() -> None:
    data = bytearray(b"abcdefgh")
    first = next(iter(Chunks.from_bytes(data, 4, "g")))
    data[0] = ord("z")
    assert bytes(first.data) == b"zbcd"


@pytest.mark.parametrize("n, sizes", [(0, [0]), (1, [1]), (C - 1, [C - 1]), (C, [C]), (C + 1, [C, 1])])
def test_chunks_from_file(tmp_path, n: int, sizes: list[int]) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(n)))
    chunks = Chunks.from_file(path, C, "g")
    assert len(chunks) == len(sizes)
    items = list(chunks)
    assert [c.size for c in items] == sizes
    assert b"".join(bytes(c.data) for c in items) == bytes(range(n))


def test_chunks_from_file_is_lazy_and_detects_changes(tmp_path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    chunks = Chunks.from_file(path, "4", "g")
    path.write_bytes(b"x" * 5)
    with pytest.raises(LocalStorageError):
        list(chunks)
    with pytest.raises(LocalStorageError):
        Chunks.from_file(tmp_path / "missing", 4, "g")


@pytest.mark.parametrize("size", [0, -1, "0", "abc"])
def test_chunks_bad_chunk_size(size: object) -> None:
    with pytest.raises(ValidationError):
        Chunks.from_bytes(b"abc", size, "g")  # type: ignore[arg-type]


def test_chunks_size_strings_are_decimal() -> None:
    assert len(Chunks.from_bytes(b"x" * 1001, "1kb", "g")) == 2
    assert len(Chunks.from_bytes(b"x" * 1024, "1KiB", "g")) == 1
