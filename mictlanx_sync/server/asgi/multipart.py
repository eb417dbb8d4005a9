"""Streaming ``multipart/form-data`` parsing for P2 and R6 (protocol §3.3): the bytes of the
first part named ``data`` are passed on as they arrive, never spooled whole.

Other parts, and the data part's filename and Content-Type, are ignored. Every problem is a
422/400 (§2.6): a body that is not multipart with a boundary, malformed framing, no ``data``
part, or a body that ends before its closing boundary.
"""

from __future__ import annotations

from typing import Any, Optional

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import HTTPError, unprocessable


class MultipartStream:
    """Feed the body with :meth:`feed`; it returns the data part's bytes found in each piece."""

    def __init__(self, content_type: Optional[str]) -> None:
        kind, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise unprocessable("body must be multipart/form-data with a boundary", ["body"])
        #: the data part has begun (its headers were read)
        self.started = False
        #: the closing boundary was read
        self.ended = False
        self._out: list[bytes] = []
        self._in_data = False
        self._field = b""
        self._value = b""
        self._name: Optional[bytes] = None
        callbacks: Any = {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end,
        }
        try:
            self._parser = MultipartParser(boundary, callbacks)
        except FormParserError as exc:
            raise unprocessable(f"malformed multipart body: {exc}", ["body"]) from None

    def feed(self, piece: bytes) -> list[bytes]:
        """The data part's bytes in ``piece`` (422/400 for malformed framing)."""
        try:
            self._parser.write(piece)
        except FormParserError as exc:
            raise unprocessable(f"malformed multipart body: {exc}", ["body"]) from None
        out, self._out = self._out, []
        return out

    def incomplete(self) -> Optional[HTTPError]:
        """Once the body has ended: the 422 when it held no whole data part (None: it did)."""
        if not self.started:
            return unprocessable("multipart body has no data part", ["body", "data"], "missing")
        if not self.ended:
            return unprocessable("multipart body is truncated", ["body"])
        return None

    def _part_begin(self) -> None:
        self._name = None
        self._field = self._value = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._field.strip().lower() == b"content-disposition":
            self._name = parse_options_header(self._value)[1].get(b"name")
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        self._in_data = self._name == b"data" and not self.started
        if self._in_data:
            self.started = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_data and end > start:
            self._out.append(data[start:end])

    def _part_end(self) -> None:
        self._in_data = False

    def _end(self) -> None:
        self.ended = True
