"""A minimal raw-ASGI request wrapper and response helpers (no framework on the hot path)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, Optional
from urllib.parse import parse_qsl

from ..asgi.errors import HTTPError, unprocessable
from ..asgi.request import MAX_JSON_BODY, read_json_body

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]
JSON_TYPE = (b"content-type", b"application/json")


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class Request:
    """The parts of an ASGI HTTP scope the handlers use."""

    __slots__ = ("scope", "receive", "method", "segments", "_headers", "_query")

    def __init__(self, scope: dict, receive: Receive, segments: list[str]) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.segments = segments
        self._headers: Optional[dict[str, str]] = None
        self._query: Optional[dict[str, str]] = None

    def header(self, name: str) -> Optional[str]:
        """The last value of header ``name`` (lowercase), decoded as latin-1."""
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}
        return self._headers.get(name)

    def query(self, name: str) -> Optional[str]:
        if self._query is None:
            text = self.scope.get("query_string", b"").decode("latin-1")
            self._query = dict(parse_qsl(text, keep_blank_values=True))
        return self._query.get(name)

    def content_length(self) -> Optional[int]:
        value = self.header("content-length")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return None

    async def read_limited(self, limit: int) -> bytes:
        """The whole body, or 413/400 as soon as it exceeds ``limit`` bytes."""
        declared = self.content_length()
        if declared is not None and declared > limit:
            raise HTTPError(413, 400, f"body too large (limit {limit} bytes)", headers={"connection": "close"})
        parts: list[bytes] = []
        total = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise HTTPError(413, 400, f"body too large (limit {limit} bytes)", headers={"connection": "close"})
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def json(self) -> Any:
        try:
            return await read_json_body(lambda: self.read_limited(MAX_JSON_BODY))
        except RecursionError:  # deeply nested input: still the client's fault
            raise unprocessable("body is nested too deeply", ["body"], "json_invalid") from None


def _header_list(headers: Optional[dict[str, str]]) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]


async def send_json(send: Send, status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON_TYPE, (b"content-length", str(len(body)).encode()), *_header_list(headers)]})
    await send({"type": "http.response.body", "body": body})


def dumps(payload: Any) -> bytes:
    """The JSON encoding every response uses (compact)."""
    return json.dumps(payload, separators=(",", ":")).encode()


#: bytes gathered before a streamed response sends a piece
STREAM_PIECE = 64 * 1024


async def send_json_pieces(send: Send, status: int, pieces: Iterable[bytes],
                           headers: Optional[dict[str, str]] = None) -> None:
    """Send the JSON text ``pieces`` make, pulling them lazily.

    A text that fits in one ``STREAM_PIECE`` is sent whole with a ``Content-Length``, like
    ``send_json``; a longer one goes out chunked (ASGI ``more_body``), so memory holds one piece
    and whatever produced it, never the whole answer. ``send`` waits while the client is slow.
    """
    buffer = bytearray()
    started = False
    for piece in pieces:
        buffer += piece
        if len(buffer) >= STREAM_PIECE:
            if not started:
                await send({"type": "http.response.start", "status": status,
                            "headers": [JSON_TYPE, *_header_list(headers)]})
                started = True
            await send({"type": "http.response.body", "body": bytes(buffer), "more_body": True})
            buffer.clear()
    if not started:
        await send({"type": "http.response.start", "status": status,
                    "headers": [JSON_TYPE, (b"content-length", str(len(buffer)).encode()), *_header_list(headers)]})
    await send({"type": "http.response.body", "body": bytes(buffer)})


async def send_empty(send: Send, status: int = 204, headers: Optional[dict[str, str]] = None) -> None:
    extra = _header_list(headers)
    if status != 204:
        extra.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": extra})
    await send({"type": "http.response.body", "body": b""})


async def send_error(send: Send, error: HTTPError) -> None:
    await send_json(send, error.status, error.body(), error.headers)
