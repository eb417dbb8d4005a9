"""``DataStream``: an open data answer (R11, P5), read straight into the caller's buffers.

The transport opens it (:meth:`.transport.Transport.open_stream`) and the client reads it,
never a ``requests.Response``: everything the reader needs (the status, ``Content-Length``,
the ``ETag`` checksum, ``Peer-Id``) is here, and every failure while reading the body is a
``MictlanXError`` already (``RequestTimeoutError`` for the read timeout, set on the socket;
``UpstreamProtocolError`` for a broken connection or bad framing), carrying the
``bucket_id``/``key``/``router`` of the request.

:meth:`DataStream.readinto` moves the bytes from the socket into the caller's memory with no
intermediate ``bytes`` object when it can (:func:`.urllib3_seam.socket_reader`); framing
stays http.client's: with a ``Content-Length`` no read goes past it, a chunked body ends at
its last chunk. Checking the count against the announced length is the caller's job.
"""

from __future__ import annotations

import http.client
from typing import Any, Mapping, Optional

import urllib3.exceptions

from .errors import MictlanXError, RequestTimeoutError, UpstreamProtocolError
from .etag import etag_checksum
from .urllib3_seam import socket_reader

__all__ = ["DataStream"]


class DataStream:
    """One streamed answer; close it (or use ``with``) when done.

    Built by the transport from the answer it received. A ``Content-Encoding`` other than
    ``identity`` is refused at once (``UpstreamProtocolError``): data requests ask for
    ``identity``, and the checksum is of the stored bytes.
    """

    def __init__(self, response: Any, context: Mapping[str, Optional[str]]) -> None:
        self._response = response
        self.context = dict(context)
        #: the HTTP status (2xx, or 3xx for a redirect the caller asked to see)
        self.status: int = int(response.status_code)
        #: the answer's headers (case-insensitive)
        self.headers: Mapping[str, str] = response.headers
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise self._error(UpstreamProtocolError, f"data answer with Content-Encoding {encoding!r}")
        self._raw: Any = response.raw
        self._socket: Optional[http.client.HTTPResponse] = socket_reader(self._raw)

    # --- what the answer says --------------------------------------------------------------
    @property
    def content_length(self) -> Optional[int]:
        """The announced body size, or ``None`` when absent or not a number."""
        value = self.headers.get("Content-Length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def checksum(self) -> Optional[str]:
        """The SHA-256 the ``ETag`` names (:func:`.etag.etag_checksum`), or ``None``."""
        return etag_checksum(self.headers.get("ETag"))

    @property
    def peer_id(self) -> Optional[str]:
        """The peer that served the bytes (``Peer-Id``), when the server says."""
        return self.headers.get("Peer-Id")

    @property
    def zero_copy(self) -> bool:
        """Whether reads go from the socket into the caller's buffer with no copy."""
        return self._socket is not None

    # --- the body --------------------------------------------------------------------------
    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` body bytes into ``view``; 0 at the end of the body."""
        try:
            if self._socket is not None:
                return int(self._socket.readinto(view))
            return int(self._raw.readinto(view))
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise self._error(RequestTimeoutError, "read timed out in the body", exc) from exc
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise self._error(UpstreamProtocolError, "connection broken in the body", exc) from exc

    def set_read_timeout(self, seconds: float) -> None:
        """Read the rest of the body with a ``seconds`` socket timeout (a direct read asked for a
        short first-byte deadline, then reads at the normal timeout). Public APIs only: urllib3's
        ``HTTPResponse.connection`` and its socket; urllib3 sets the timeout again for the next
        request on that connection."""
        sock = getattr(getattr(self._raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(seconds)

    def release(self) -> None:
        """After the body has been read to its end: the connection goes back to the pool."""
        if self._socket is not None and self._socket.isclosed():
            self._raw.release_conn()

    def close(self) -> None:
        """Close the answer; a connection whose body was not read to its end is dropped."""
        self._response.close()

    def __enter__(self) -> DataStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, cls: type[MictlanXError], message: str, exc: Optional[BaseException] = None) -> MictlanXError:
        context = self.context
        text = message if exc is None else f"{message}: {type(exc).__name__}: {exc}"
        error = cls(text, bucket_id=context.get("bucket_id"), key=context.get("key"), router=context.get("router"))
        error.__cause__ = exc
        return error
