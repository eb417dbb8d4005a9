"""Answers: a handler returns a :class:`Response` (whole) or a :class:`StreamedJSON` (a JSON text
pulled piece by piece while it is sent); the app sends it."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Union

from .errors import HTTPError
from .request import Send

JSON_TYPE = (b"content-type", b"application/json")
#: bytes gathered before a streamed JSON answer sends a piece
STREAM_PIECE = 64 * 1024


def dumps(payload: Any) -> bytes:
    """The JSON encoding every answer uses (compact)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def header_list(headers: Optional[Mapping[str, str]]) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs: lower-case names, latin-1."""
    if not headers:
        return []
    return [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in headers.items()]


class Response:
    """A complete answer: status, body and headers (``Content-Length`` is added)."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes = b"", headers: Optional[Mapping[str, str]] = None) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    async def send(self, send: Send) -> None:
        head = header_list(self.headers)
        if self.status not in (204, 304):
            head.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": head})
        await send({"type": "http.response.body", "body": self.body if self.status != 204 else b""})


def json_response(payload: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None) -> Response:
    return Response(status, dumps(payload), {"content-type": "application/json", **(headers or {})})


def empty(status: int = 204, headers: Optional[Mapping[str, str]] = None) -> Response:
    return Response(status, b"", headers)


def error_response(error: HTTPError, close: bool = False) -> Response:
    """The answer of ``error`` (protocol §2.6); ``close`` adds ``Connection: close``."""
    headers = dict(error.headers)
    if close:
        headers["connection"] = "close"
    return json_response(error.body(), error.status, headers)


async def send_json(send: Send, status: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> None:
    """Send a whole JSON answer from code that streams (a handler that answers through ``send``)."""
    await json_response(payload, status, headers).send(send)


class StreamedJSON:
    """The JSON text ``pieces`` make, pulled lazily as it is sent.

    A text that fits in one ``STREAM_PIECE`` is sent whole with a ``Content-Length``, like a
    :class:`Response`; a longer one goes out chunked (ASGI ``more_body``), so memory holds one
    piece and whatever produced it, never the whole answer. ``send`` waits while the client is slow.
    """

    def __init__(self, status: int, pieces: Iterable[bytes], headers: Optional[Mapping[str, str]] = None) -> None:
        self.status = status
        self.pieces = pieces
        self.headers = dict(headers or {})

    async def send(self, send: Send) -> None:
        extra = header_list(self.headers)
        buffer = bytearray()
        started = False
        for piece in self.pieces:
            buffer += piece
            if len(buffer) >= STREAM_PIECE:
                if not started:
                    await send({"type": "http.response.start", "status": self.status, "headers": [JSON_TYPE, *extra]})
                    started = True
                await send({"type": "http.response.body", "body": bytes(buffer), "more_body": True})
                buffer.clear()
        if not started:
            head = [JSON_TYPE, *extra, (b"content-length", str(len(buffer)).encode())]
            await send({"type": "http.response.start", "status": self.status, "headers": head})
        await send({"type": "http.response.body", "body": bytes(buffer)})


#: what a handler returns: the answer for the app to send, or None when it sent its own
Answer = Union[Response, StreamedJSON]
