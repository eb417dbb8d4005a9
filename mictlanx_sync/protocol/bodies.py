"""Message bodies: uploads streamed in 1 MiB pieces, downloads read straight into buffers.

Uploads: bytes-like values, iterables of bytes, binary files, and multipart bodies framed
by :func:`multipart_body`, never joined in memory. Downloads: :class:`BodyReader` fills
caller buffers from a streamed response without an intermediate bytes object.
"""

from __future__ import annotations

import http.client
import io
import os
import secrets
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Tuple, Union

import requests
import urllib3.exceptions

from .errors import MictlanXError, RequestTimeoutError, UpstreamProtocolError, ValidationError

__all__ = [
    "PIECE_SIZE", "Body", "iter_pieces", "check_body", "body_length", "SizedBody", "stream_body", "multipart_body",
    "BodyReader",
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



# --- download bodies ---------------------------------------------------------------------
class BodyReader:
    """Reads the body of a streamed ``requests.Response`` straight into caller buffers.

    :meth:`readinto` fills ``view`` with up to ``len(view)`` bytes and returns how many;
    0 means the body has ended. The bytes go from the socket into ``view`` with no
    intermediate ``bytes`` object, through the ``http.client.HTTPResponse`` under urllib3
    (urllib3's own ``readinto`` reads a ``bytes`` object, then copies it). That is used
    only while urllib3 has not read any of the body itself (its ``decode_content`` plays
    no part: data requests send ``Accept-Encoding: identity``, and a ``Content-Encoding``
    other than ``identity`` is refused); otherwise urllib3's ``readinto`` serves, one copy more.

    Framing stays http.client's: with a ``Content-Length`` no read goes past it, a chunked
    body ends at its last chunk; checking the count against the announced length is the
    caller's job. Failures raise ``RequestTimeoutError`` (the read timeout of the
    request, set on the socket) or ``UpstreamProtocolError`` (connection broken, bad
    chunk framing), carrying ``context`` (``bucket_id``/``key``/``router``).

    Call :meth:`release` after the body has been read to its end, so the connection goes
    back to the pool; closing the response instead (always do, in a ``finally``) drops
    a connection whose body was not read to the end.
    """

    def __init__(self, response: requests.Response, *, bucket_id: Optional[str] = None, key: Optional[str] = None,
                 router: Optional[str] = None) -> None:
        self.context = {"bucket_id": bucket_id, "key": key, "router": router}
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise UpstreamProtocolError(f"data answer with Content-Encoding {encoding!r}", bucket_id=bucket_id,
                                        key=key, router=router)
        self._raw: Any = response.raw
        fp = getattr(self._raw, "_fp", None)
        untouched = getattr(self._raw, "_fp_bytes_read", None) == 0 and not len(
            getattr(self._raw, "_decoded_buffer", ()))
        self._direct: Optional[http.client.HTTPResponse] = (
            fp if isinstance(fp, http.client.HTTPResponse) and untouched else None)

    @property
    def direct(self) -> bool:
        """Whether reads go from the socket into the caller's buffer (no copy)."""
        return self._direct is not None

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` body bytes into ``view``; 0 at the end of the body."""
        try:
            if self._direct is not None:
                return int(self._direct.readinto(view))
            return int(self._raw.readinto(view))
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise self._error(RequestTimeoutError, "read timed out in the body", exc) from exc
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise self._error(UpstreamProtocolError, "connection broken in the body", exc) from exc

    def release(self) -> None:
        """Hand the connection back to the pool once the body has been read to its end."""
        if self._direct is not None and self._direct.isclosed():
            self._raw.release_conn()

    def _error(self, cls: type[MictlanXError], message: str, exc: BaseException) -> MictlanXError:
        context = self.context
        error = cls(f"{message}: {type(exc).__name__}: {exc}", bucket_id=context["bucket_id"], key=context["key"],
                    router=context["router"])
        error.__cause__ = exc
        return error
