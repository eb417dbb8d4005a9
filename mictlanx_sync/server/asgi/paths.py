"""The request path, split on ``/`` before percent-decoding, and the checks of protocol §2.2.

uvicorn decodes ``%2F`` into ``/`` in ``scope["path"]``; routing on the raw path keeps an
encoded slash inside one segment, where id validation rejects it, and :func:`checked_segments`
refuses what could reach a file system (encoded slash or backslash, NUL, control characters,
dot segments) before any route is looked up.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import unquote

from .errors import bad_request

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def raw_path_segments(scope: Mapping[str, Any]) -> list[str]:
    """The request path split on ``/`` **before** percent-decoding, each segment then decoded.

    uvicorn decodes ``%2F`` into ``/`` in ``scope["path"]``; splitting the raw path first
    means an encoded slash stays inside one segment, where id validation rejects it.
    """
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    return [unquote(segment, errors="strict") for segment in text.split("/")]


def checked_segments(scope: Mapping[str, Any]) -> list[str]:
    """The path's segments (:func:`raw_path_segments`); 400/400 when the raw path holds an encoded
    slash or backslash, NUL, a control character, a dot segment, or bytes that do not decode."""
    raw = (scope.get("raw_path") or b"").lower()
    if b"%2f" in raw or b"%5c" in raw or b"%00" in raw or b"\\" in raw:
        raise bad_request("invalid path: encoded '/', '\\' or NUL in an identifier")
    try:
        segments = raw_path_segments(scope)
    except UnicodeDecodeError:
        raise bad_request("invalid path encoding") from None
    if _CONTROL.search("/".join(segments)):
        raise bad_request("invalid path: control character")
    if any(segment in ("..", ".") for segment in segments):
        raise bad_request("invalid path: dot segment")
    return segments
