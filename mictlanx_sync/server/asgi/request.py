"""The request a handler sees: method, headers, query and body, over the raw ASGI channels.

**One rule for a client that goes away.** The body is read through :class:`RequestBody`, and an
``http.disconnect`` before its last message raises :class:`~.errors.ClientDisconnected`: a
truncated body is never taken for a whole one, whatever reads it (a JSON body, a phase-2
stream, a drain). The app answers nothing then (there is nobody to answer).

Headers and the query are parsed on first use, so the data paths pay only for what they read.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping, Optional
from urllib.parse import parse_qsl

from .errors import ClientDisconnected, HTTPError, unprocessable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

#: JSON bodies of metadata endpoints are at most 1 MiB (protocol §2.6)
MAX_JSON_BODY = 1024 * 1024


class RequestBody:
    """The request body, message by message, counting the bytes received."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        #: the last message of the body was read
        self.done = False
        #: bytes received so far
        self.received = 0

    async def next(self) -> Optional[bytes]:
        """The next piece of the body (possibly empty); None once it has ended.

        Raises :class:`ClientDisconnected` when the client went away before the end.
        """
        if self.done:
            return None
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.done = True
            raise ClientDisconnected()
        piece: bytes = message.get("body", b"")
        self.received += len(piece)
        if not message.get("more_body", False):
            self.done = True
        return piece

    async def drain(self, limit: int) -> bool:
        """Read and discard the rest, up to ``limit`` bytes received in all: True if the body
        ended, False if more remains (the answer must close the connection) or the client left."""
        try:
            while not self.done:
                if self.received >= limit:
                    return False
                await self.next()
        except ClientDisconnected:
            return False
        return True


class Request:
    """The parts of an ASGI HTTP request handlers use. ``send`` is the response channel: a
    handler that streams its answer sends it there itself."""

    __slots__ = ("scope", "receive", "send", "method", "_headers", "_query", "_query_all", "_body")

    def __init__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self._headers: Optional[dict[str, str]] = None
        self._query: Optional[dict[str, str]] = None
        self._query_all: Optional[dict[str, list[str]]] = None
        self._body: Optional[RequestBody] = None

    @property
    def headers(self) -> Mapping[str, str]:
        """Header values by lower-case name, decoded as latin-1; a repeated header: its last value."""
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        return self._headers

    @property
    def query_all(self) -> Mapping[str, list[str]]:
        """Every value of every query parameter, in order."""
        if self._query_all is None:
            pairs = parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            values: dict[str, list[str]] = {}
            for name, value in pairs:
                values.setdefault(name, []).append(value)
            self._query_all = values
        return self._query_all

    @property
    def query(self) -> Mapping[str, str]:
        """Query values by name; a repeated parameter: its last value (as upstream's FastAPI)."""
        if self._query is None:
            self._query = {name: values[-1] for name, values in self.query_all.items()}
        return self._query

    @property
    def content_length(self) -> Optional[int]:
        """The declared ``Content-Length`` (None when absent, malformed or negative)."""
        return declared_length(self.headers.get("content-length"))

    def body_stream(self) -> RequestBody:
        """The body as a stream (the same reader on every call)."""
        if self._body is None:
            self._body = RequestBody(self.receive)
        return self._body

    async def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        """The whole (small) body; 413/400 beyond ``limit``.

        A ``Content-Length`` above ``limit`` is refused before reading anything; a chunked body
        is read only until it passes ``limit``. Either way the answer closes the connection, so
        the rest of the body is never read.
        """
        too_large = HTTPError(413, 400, f"JSON body too large (limit {limit} bytes)", headers={"connection": "close"})
        declared = self.content_length
        if declared is not None and declared > limit:
            raise too_large
        reader = self.body_stream()
        parts: list[bytes] = []
        while (piece := await reader.next()) is not None:
            if reader.received > limit:
                raise too_large
            parts.append(piece)
        return b"".join(parts)

    async def json(self, limit: int = MAX_JSON_BODY) -> Any:
        """The body parsed as JSON: 413/400 above ``limit``, 422/400 when it is not JSON."""
        return parse_json_body(await self.body(limit))

    async def wait_disconnect(self) -> None:
        """Return once the client has gone (after the body, the next message is the disconnect)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass


def declared_length(value: Optional[str]) -> Optional[int]:
    """A ``Content-Length`` header value as an int (None when absent, malformed or negative)."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def parse_json_body(raw: bytes) -> Any:
    """``raw`` parsed as JSON, or 422/400 (not JSON, or nested too deeply to parse)."""
    try:
        return json.loads(raw)
    except ValueError:
        raise unprocessable("body is not valid JSON", ["body"], "json_invalid") from None
    except RecursionError:  # deeply nested input: still the client's fault
        raise unprocessable("body is nested too deeply", ["body"], "json_invalid") from None
