"""The request path, split on ``/`` before percent-decoding, and the checks of protocol §2.2.

uvicorn decodes ``%2F`` into ``/`` in ``scope["path"]``; routing on the raw path keeps an
encoded slash inside one segment, where id validation rejects it, and :func:`check_raw_path`
refuses what could reach a file system (encoded slash or backslash, NUL, control characters,
dot segments) before any route is looked up.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional
from urllib.parse import unquote

from .errors import HTTPError, bad_request


def raw_path_segments(scope: Mapping[str, Any]) -> list[str]:
    """The request path split on ``/`` **before** percent-decoding, each segment then decoded.

    uvicorn decodes ``%2F`` into ``/`` in ``scope["path"]``; splitting the raw path first
    means an encoded slash stays inside one segment, where id validation rejects it.
    """
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    return [unquote(segment, errors="strict") for segment in text.split("/")]


def check_raw_path(scope: Mapping[str, Any], root_path: str = "") -> Optional[HTTPError]:
    """400/400 if the raw path holds an encoded slash, backslash, NUL or control character."""
    raw = (scope.get("raw_path") or b"").lower()
    if b"%2f" in raw or b"%5c" in raw or b"%00" in raw or b"\\" in raw:
        return bad_request("invalid path: encoded '/', '\\' or NUL in an identifier")
    try:
        segments = raw_path_segments(scope)
    except UnicodeDecodeError:
        return bad_request("invalid path encoding")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for segment in segments for ch in segment):
        return bad_request("invalid path: control character")
    if any(segment in ("..", ".") for segment in segments):
        return bad_request("invalid path: dot segment")
    return None

