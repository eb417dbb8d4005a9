"""Pure tests of the object layout rules (``mictlanx_sync.client.layout``, protocol §P5)."""

from __future__ import annotations

import pytest

from mictlanx_sync.client.layout import (
    REQUIRED_TAGS,
    ObjectLayout,
    chunk_index,
    chunk_key,
    chunk_tags,
    select_chunks,
    validate_object_key,
    validate_tags,
)
from mictlanx_sync.protocol.errors import IntegrityError, NotFoundError, ValidationError
from mictlanx_sync.protocol.models import Metadata


def meta(key: str, index: object, n: int = 3, full: str = "f" * 64, size: int = 10) -> Metadata:
    tags = {"num_chunks": str(n), "full_checksum": full, "group_id": "obj"}
    if index is not None:
        tags["index"] = str(index)
    return Metadata(key=key, size=size, checksum="0" * 64, tags=tags, content_type="application/octet-stream",
                    producer_id="p", ball_id="obj")


def test_chunk_key_and_index() -> None:
    assert chunk_key("obj", 0) == "obj_0" and chunk_key("obj", 12) == "obj_12"
    assert chunk_index({"index": "7"}) == 7
    assert chunk_index({}) is None and chunk_index({"index": "x"}) is None


def test_chunk_tags_keep_user_tags_and_set_the_required_ones() -> None:
    tags = chunk_tags({"owner": "me"}, "obj", 2, 5, 3, "a" * 64)
    assert tags == {"owner": "me", "index": "2", "chunk_size": "5", "group_id": "obj", "num_chunks": "3",
                    "full_checksum": "a" * 64}
    assert set(REQUIRED_TAGS) <= set(tags)


def test_validate_tags() -> None:
    original = {"a": "1"}
    copied = validate_tags(original)
    assert copied == original and copied is not original
    assert validate_tags(None) == {}
    for bad in ({"index": "1"}, {"full_checksum": "x"}, {"a": 1}, {1: "a"}, {"": "a"}, ["a"]):
        with pytest.raises(ValidationError):
            validate_tags(bad)  # type: ignore[arg-type]
    assert validate_tags({"num_chunks": "2"}, allow=("num_chunks",)) == {"num_chunks": "2"}


def test_validate_object_key() -> None:
    validate_object_key("bucket", "k" * 240)
    for bucket, key in (("bucket", "k" * 241), ("bad bucket", "k"), ("bucket", ""), ("bucket", "a/b")):
        with pytest.raises(ValidationError):
            validate_object_key(bucket, key)


def test_object_layout_from_chunk0() -> None:
    layout = ObjectLayout.from_chunk0({"num_chunks": "4", "full_checksum": "AB" * 32}, 100, bucket_id="b", key="k")
    assert (layout.num_chunks, layout.full_checksum, layout.stride) == (4, "ab" * 32, 100)
    assert [layout.offset(i) for i in range(4)] == [0, 100, 200, 300]
    layout.check_chunk_size(2, 100, bucket_id="b", key="k")
    layout.check_chunk_size(3, 1, bucket_id="b", key="k")
    layout.check_chunk_size(3, 150, bucket_id="b", key="k")  # upstream's merged tail is valid
    with pytest.raises(IntegrityError):
        layout.check_chunk_size(1, 99, bucket_id="b", key="k")
    with pytest.raises(NotFoundError):
        ObjectLayout.from_chunk0({"full_checksum": "a"}, 1, bucket_id="b", key="k")
    with pytest.raises(IntegrityError):
        ObjectLayout.from_chunk0({"num_chunks": "0", "full_checksum": "a"}, 1, bucket_id="b", key="k")


def test_select_chunks_reading_rules() -> None:
    listing = [meta("obj_2", 2), meta("obj_0", 0), meta("obj_1", 1), meta("obj_5", 5), meta("other_1", 1),
               meta("obj_x", None)]
    assert [m.key for m in select_chunks(listing, bucket_id="b", key="obj")] == ["obj_0", "obj_1", "obj_2"]
    with pytest.raises(NotFoundError):
        select_chunks([meta("obj_1", 1)], bucket_id="b", key="obj")
    with pytest.raises(NotFoundError) as missing:
        select_chunks([meta("obj_0", 0), meta("obj_2", 2)], bucket_id="b", key="obj")
    assert missing.value.detail == {"missing": [1]}
    with pytest.raises(IntegrityError):
        select_chunks([meta("obj_0", 0), meta("obj_1", 1), meta("obj_2", 2, full="e" * 64)], bucket_id="b", key="obj")
