"""Upload bodies, streamed in 1 MiB pieces and never joined in memory.

Bytes-like values, iterables of bytes, binary files, and multipart bodies framed by
:func:`multipart_body`. (Download bodies: :class:`~.stream.DataStream`.)
"""

from __future__ import annotations

import io
import os
import secrets
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Tuple, Union

from .errors import ValidationError

__all__ = [
    "PIECE_SIZE", "Body", "iter_pieces", "check_body", "body_length", "SizedBody", "stream_body", "multipart_body",
]

PIECE_SIZE = 1024 * 1024
Body = Union[bytes, bytearray, memoryview, Iterable[Union[bytes, bytearray, memoryview]], BinaryIO]


def _is_file(obj: Any) -> bool:
    return hasattr(obj, "read") and callable(obj.read)


def iter_pieces(body: Body, piece_size: int = PIECE_SIZE) -> Iterator[Union[bytes, memoryview]]:
    """The body as pieces of at most ``piece_size`` bytes, without copying bytes-like data.

    Bytes-like objects are sliced as ``memoryview``; a binary file is read ``piece_size``
    bytes at a time (requests' default 16 KiB block halves throughput); each item of an
    iterable is re-sliced when it is larger than a piece. Empty pieces are skipped.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body).cast("B")
        for start in range(0, view.nbytes, piece_size):
            yield view[start:start + piece_size]
        return
    if isinstance(body, str):
        raise TypeError("upload bodies must be bytes, not str")
    if _is_file(body):
        reader: Any = body
        while True:
            piece = reader.read(piece_size)
            if not piece:
                return
            if isinstance(piece, str):
                raise TypeError("file bodies must be opened in binary mode")
            yield piece
    for item in body:
        if isinstance(item, str):
            raise TypeError("upload pieces must be bytes, not str")
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(f"upload pieces must be bytes-like, not {type(item).__name__}")
        view = memoryview(item).cast("B")
        if view.nbytes <= piece_size:
            if view.nbytes:
                yield view
            continue
        for start in range(0, view.nbytes, piece_size):
            yield view[start:start + piece_size]


def check_body(body: object) -> None:
    """Raise ``TypeError`` unless ``body`` is bytes-like, a binary file or an iterable of bytes."""
    if isinstance(body, (bytes, bytearray, memoryview)) or _is_file(body):
        return
    if isinstance(body, str) or not hasattr(body, "__iter__"):
        raise TypeError(f"an upload body must be bytes, an iterable of bytes or a binary file, "
                        f"not {type(body).__name__}")


def body_length(body: Body) -> Optional[int]:
    """The number of bytes ``body`` will yield, when it can be known without reading it."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return memoryview(body).nbytes
    if _is_file(body):
        try:
            fileno = body.fileno()  # type: ignore[union-attr,attr-defined]
            size = os.fstat(fileno).st_size
            pos = body.tell()  # type: ignore[union-attr,attr-defined]
            return max(0, size - pos)
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass
        if isinstance(body, io.BytesIO):
            return len(body.getbuffer()) - body.tell()
        return None
    if isinstance(body, SizedBody):
        return len(body)
    return None


class SizedBody:
    """An iterable body of known length: ``requests`` sends it with ``Content-Length``
    (it reads ``len()``) instead of chunked encoding, piece by piece."""

    def __init__(self, pieces: Iterable[Union[bytes, memoryview]], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Union[bytes, memoryview]]:
        return iter(self._pieces)


class _CountedPieces:
    """Pieces that fail loudly if the body yields more or fewer bytes than declared."""

    def __init__(self, pieces: Iterable[Union[bytes, memoryview]], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __iter__(self) -> Iterator[Union[bytes, memoryview]]:
        sent = 0
        for piece in self._pieces:
            sent += len(piece)
            if sent > self._length:
                raise ValidationError(f"upload body longer than its declared length {self._length}")
            yield piece
        if sent != self._length:
            raise ValidationError(f"upload body shorter ({sent}) than its declared length {self._length}")


def stream_body(
    body: Body, length: Optional[int] = None,
) -> Union[bytes, SizedBody, Iterator[Union[bytes, memoryview]]]:
    """A ``requests`` ``data=`` value streaming ``body`` in 1 MiB pieces.

    With a known length (given, or :func:`body_length`) it is sent with ``Content-Length``,
    otherwise with chunked transfer encoding.
    """
    check_body(body)
    if length is None:
        length = body_length(body)
    pieces = iter_pieces(body)
    if length is None:
        return pieces
    if length == 0:  # requests would send an empty iterable with chunked encoding
        return b""
    return SizedBody(_CountedPieces(pieces, length), length)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def multipart_body(
    value: Body, *, field: str = "data", filename: str = "data",
    content_type: str = "application/octet-stream", boundary: Optional[str] = None,
    length: Optional[int] = None,
) -> Tuple[str, Union[SizedBody, Iterator[Union[bytes, memoryview]]]]:
    """A streamed ``multipart/form-data`` body with one file part; returns ``(content_type, data)``.

    The framing (boundary, part headers, closing boundary) is generated around the
    payload pieces; the payload is never joined in memory. With a known payload length
    the whole body has a ``Content-Length``.

    >>> ctype, data = multipart_body(b"xy", boundary="B")
    >>> ctype, b"".join(bytes(p) for p in data)
    ('multipart/form-data; boundary=B', b'--B\\r\\nContent-Disposition: form-data; name="data"; \
filename="data"\\r\\nContent-Type: application/octet-stream\\r\\n\\r\\nxy\\r\\n--B--\\r\\n')
    """
    check_body(value)
    boundary = boundary or f"mictlanx-{secrets.token_hex(16)}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{_quote(field)}"; filename="{_quote(filename)}"\r\n'
        f"Content-Type: {_quote(content_type)}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    if length is None:
        length = body_length(value)

    def pieces() -> Iterator[Union[bytes, memoryview]]:
        yield head
        if length is None:
            yield from iter_pieces(value)
        else:
            yield from _CountedPieces(iter_pieces(value), length)
        yield tail

    ctype = f"multipart/form-data; boundary={boundary}"
    if length is None:
        return ctype, pieces()
    return ctype, SizedBody(pieces(), len(head) + length + len(tail))
