"""Validation of the Meta-shaped JSON bodies of R4 and R5 (protocol §P2.3, §P4.5)."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ...protocol.ids import RESERVED, is_valid_id
from ..asgi.errors import HTTPError, bad_request, unprocessable

_CHECKSUM = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;[\x20-\x7e]*)?")
MAX_TAGS_BYTES = 64 * 1024


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_key(value: Any, field: str) -> str:
    if not is_valid_id(value) or value == RESERVED:
        raise unprocessable(f"invalid {field}: {value!r}", ["body", field])
    return str(value)


def check_checksum(value: Any) -> str:
    if not isinstance(value, str) or not _CHECKSUM.fullmatch(value):
        raise unprocessable("checksum must be 64 hex characters", ["body", "checksum"])
    return value.lower()


def check_size(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise unprocessable("size must be an integer >= 0", ["body", "size"], "int_type")
    return int(value)


def check_tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise unprocessable("tags must be an object of strings", ["body", "tags"], "dict_type")
    for tag, tag_value in value.items():
        if not isinstance(tag, str) or not tag:
            raise unprocessable("tag names must be non-empty strings", ["body", "tags"])
        if not isinstance(tag_value, str):
            raise unprocessable(f"tag {tag!r} must be a string", ["body", "tags", tag], "string_type")
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_TAGS_BYTES:
        raise HTTPError(413, 400, "tags too large (limit 64 KiB)")
    return dict(value)


def check_content_type(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _CONTENT_TYPE.fullmatch(value):
        raise unprocessable(f"invalid content_type: {value!r}", ["body", "content_type"])
    return value


def check_producer(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 255:
        raise unprocessable("producer_id must be a string of at most 255 characters", ["body", "producer_id"])
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise unprocessable(f"{field} must be a boolean", ["body", field], "bool_type")
    return value


def disabled_flag(body: dict[str, Any]) -> Optional[bool]:
    """``is_disabled`` wins over ``is_disable``; None when neither is given."""
    if "is_disabled" in body and body["is_disabled"] is not None:
        return check_bool(body["is_disabled"], "is_disabled")
    if "is_disable" in body and body["is_disable"] is not None:
        return check_bool(body["is_disable"], "is_disable")
    return None


def check_body_bucket(body: dict[str, Any], bucket_id: str) -> None:
    value = body.get("bucket_id")
    if value in (None, ""):
        return
    if not isinstance(value, str):
        raise unprocessable("bucket_id must be a string", ["body", "bucket_id"], "string_type")
    if value != bucket_id:
        raise bad_request(f"body bucket_id {value!r} differs from the path bucket {bucket_id!r}")


def put_metadata_body(body: Any, bucket_id: str) -> dict[str, Any]:
    """The normalized R5 body (P1 fields plus ``replication_factor``)."""
    if not isinstance(body, dict):
        raise unprocessable("body must be a JSON object", ["body"], "dict_type")
    for required in ("key", "size", "checksum"):
        if required not in body:
            raise unprocessable(f"field required: {required}", ["body", required], "missing")
    key = check_key(body["key"], "key")
    size = check_size(body["size"])
    checksum = check_checksum(body["checksum"])
    tags = check_tags(body.get("tags") if body.get("tags") is not None else {})
    producer = check_producer(body.get("producer_id") if body.get("producer_id") is not None else "")
    content_type = check_content_type(body.get("content_type") or "application/octet-stream")
    ball_id = check_key(body["ball_id"], "ball_id") if body.get("ball_id") not in (None, "") else key
    disabled = disabled_flag(body) or False
    rf = body.get("replication_factor", 1)
    if rf is None:
        rf = 1
    if not _is_int(rf) or rf < 1:
        raise unprocessable("replication_factor must be an integer >= 1", ["body", "replication_factor"])
    check_body_bucket(body, bucket_id)
    return {"key": key, "size": size, "checksum": checksum, "tags": tags, "producer_id": producer,
            "content_type": content_type, "ball_id": ball_id, "bucket_id": bucket_id, "is_disabled": disabled,
            "replication_factor": int(rf)}
