"""JSON body schemas of P1 and P19 (protocol §2.3, §3.3): 422/400 with ``errors`` when invalid."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ...protocol.errors import ValidationError
from ...protocol.ids import validate_id, validate_key
from ..asgi.errors import HTTPError, bad_request, unprocessable

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_TAGS_BYTES = 64 * 1024
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(_TOKEN + "/" + _TOKEN + r"[ \t]*(;[\x20-\x7e]*)?")
_CHECKSUM = re.compile(r"[0-9a-fA-F]{64}")


def _missing(field: str) -> HTTPError:
    return unprocessable(f"field required: {field}", ["body", field], "missing")


def _int(body: dict, field: str, *, required: bool = True, default: int = 0) -> int:
    if field not in body:
        if required:
            raise _missing(field)
        return default
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise unprocessable(f"{field} must be an integer", ["body", field], "int_type")
    if value < 0:
        raise unprocessable(f"{field} must be >= 0", ["body", field], "greater_than_equal")
    return value


def _str(body: dict, field: str, default: str) -> str:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise unprocessable(f"{field} must be a string", ["body", field], "string_type")
    return value


def _ident(value: Any, field: str, *, key: bool) -> str:
    try:
        return validate_key(value, field) if key else validate_id(value, field)
    except ValidationError as exc:
        raise unprocessable(exc.message, ["body", field]) from None


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise unprocessable("body must be a JSON object", ["body"], "dict_type")
    return body


def parse_put_metadata(body: Any, bucket_id: str) -> dict[str, Any]:
    """The validated P1 body: key, size, checksum, tags, content_type, producer_id, ball_id, is_disabled."""
    body = _object(body)
    if "key" not in body:
        raise _missing("key")
    key = _ident(body["key"], "key", key=True)
    size = _int(body, "size")
    if "checksum" not in body:
        raise _missing("checksum")
    checksum = body["checksum"]
    if not isinstance(checksum, str) or _CHECKSUM.fullmatch(checksum) is None:
        raise unprocessable("checksum must be 64 hex characters (SHA-256)", ["body", "checksum"])
    tags = body.get("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        raise unprocessable("tags must be an object of strings", ["body", "tags"], "dict_type")
    for name, value in tags.items():
        if name == "":
            raise unprocessable("tag names must not be empty", ["body", "tags"])
        if not isinstance(value, str):
            raise unprocessable(f"tag {name!r} must be a string", ["body", "tags", name], "string_type")
    producer_id = _str(body, "producer_id", "")
    if len(producer_id) > 255:
        raise unprocessable("producer_id is longer than 255 characters", ["body", "producer_id"])
    content_type = _str(body, "content_type", DEFAULT_CONTENT_TYPE)
    if len(content_type) > 255 or _CONTENT_TYPE.fullmatch(content_type) is None:
        raise unprocessable("content_type must be printable ASCII type/subtype[;params]", ["body", "content_type"])
    ball_id = key if body.get("ball_id") is None else _ident(body["ball_id"], "ball_id", key=True)
    disabled = body.get("is_disabled")
    if disabled is None:
        disabled = body.get("is_disable", False)
    if disabled is None:
        disabled = False
    if not isinstance(disabled, bool):
        raise unprocessable("is_disabled must be a boolean", ["body", "is_disabled"], "bool_type")
    body_bucket = body.get("bucket_id")
    if body_bucket is not None and not isinstance(body_bucket, str):
        raise unprocessable("bucket_id must be a string", ["body", "bucket_id"], "string_type")
    if len(json.dumps(tags).encode()) > MAX_TAGS_BYTES:
        raise HTTPError(413, 400, "tags too large (limit 64 KiB)")
    if body_bucket and body_bucket != bucket_id:
        raise bad_request(f"body bucket_id {body_bucket!r} differs from the path bucket_id {bucket_id!r}")
    return {
        "key": key, "size": size, "checksum": checksum.lower(), "tags": tags, "content_type": content_type,
        "producer_id": producer_id, "ball_id": ball_id, "is_disabled": disabled,
    }


def parse_node(body: Any) -> dict[str, Any]:
    """The validated P19 body (``protocol`` defaults to http)."""
    body = _object(body)
    if "id" not in body:
        raise _missing("id")
    node_id = _ident(body["id"], "id", key=False)
    ip_addr = body.get("ip_addr")
    if "ip_addr" not in body:
        raise _missing("ip_addr")
    if not isinstance(ip_addr, str) or not ip_addr or any(c in ip_addr for c in "/?#@ \t\r\n"):
        raise unprocessable("ip_addr must be a host name or address", ["body", "ip_addr"])
    port = _int(body, "port")
    if not 0 < port < 65536:
        raise unprocessable("port must be in 1..65535", ["body", "port"])
    weight = body.get("weight")
    if "weight" not in body:
        raise _missing("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise unprocessable("weight must be a number", ["body", "weight"], "float_type")
    protocol = body.get("protocol")
    if protocol is None:
        protocol = "http"
    if protocol not in ("http", "https"):
        raise unprocessable("protocol must be http or https", ["body", "protocol"])
    return {
        "id": node_id, "disk": _int(body, "disk"), "memory": _int(body, "memory"), "ip_addr": ip_addr,
        "port": port, "weight": float(weight), "used_disk": _int(body, "used_disk"),
        "used_memory": _int(body, "used_memory"), "protocol": protocol,
    }
