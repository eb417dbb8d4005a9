"""Streaming a GET answer into a file: temp file, length and ETag checks, atomic rename.

``Peer.get_to_file`` and ``Router.get_to_file`` share :func:`get_to_file`; it needs only
the service's ``get_streaming`` (P5 / R4). No partial file is ever left at the target.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional

import requests

from .atomic_file import AtomicFile
from .errors import (
    IntegrityError,
    LocalStorageError,
    MictlanXError,
    UpstreamProtocolError,
    ValidationError,
    error_from_exception,
)
from .etag import etag_checksum
from .ids import validate_id, validate_key
from .result import Err, Ok, Result
from .service import make_error, ok_value, validated
from .sizes import clamp, parse_size
from .timeouts import TimeoutArg

__all__ = ["MIN_PIECE", "MAX_PIECE", "download_to_file", "get_to_file", "piece_size_of"]

MIN_PIECE = 64 * 1024
MAX_PIECE = 8 * 1024 * 1024


def download_to_file(
    response: requests.Response, target: str, piece_size: int, **context: Optional[str],
) -> Result[str, MictlanXError]:
    """Write a streaming response to ``target`` through an :class:`~.atomic_file.AtomicFile`.

    The byte count is checked against ``Content-Length`` and the SHA-256 against the
    ``ETag`` (for a full 200 answer). The partial file is removed on any failure or
    interrupt; the response is closed.
    """
    directory = os.path.dirname(target) or "."
    try:
        with response:
            try:
                os.makedirs(directory, exist_ok=True)
                part = AtomicFile(target)
            except OSError as exc:
                err = make_error(LocalStorageError, f"cannot create a file in {directory}: {exc}", context)
                err.__cause__ = exc
                return Err(err)
            with part:
                digest = hashlib.sha256()
                received = 0
                for piece in response.iter_content(piece_size):
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(part.fd, view):]
                    digest.update(piece)
                    received += len(piece)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) != received:
                    return Err(make_error(
                        UpstreamProtocolError, f"short body: received {received} of {declared} bytes", context))
                expected = etag_checksum(response.headers.get("ETag"))
                if response.status_code == 200 and expected is not None and expected != digest.hexdigest():
                    return Err(make_error(
                        IntegrityError, f"checksum mismatch: expected {expected}, received {digest.hexdigest()}",
                        context))
                part.commit()
                return Ok(target)
    except Exception as exc:
        return Err(error_from_exception(exc, **context))


def piece_size_of(chunk_size: Any) -> int:
    """The ``iter_content`` piece size for a ``chunk_size`` argument, clamped to 64 KiB–8 MiB."""
    return clamp(parse_size(chunk_size), MIN_PIECE, MAX_PIECE)


def get_to_file(
    service: Any, bucket_id: str, key: str, chunk_size: Any, sink_folder_path: str, timeout: TimeoutArg,
    filename: str, headers: Optional[Dict[str, str]], extension: str,
) -> Result[str, MictlanXError]:
    """``get_to_file`` of ``Peer`` and ``Router``: ``service.get_streaming`` into
    ``{sink}/{filename or sha256("{b}@{k}")}[.extension]`` through :func:`download_to_file`."""
    bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
    if bad is not None:
        return bad
    try:
        piece = piece_size_of(chunk_size)
    except ValidationError as exc:
        return Err(exc)
    name = os.path.basename(filename or "")
    if name in ("", ".", ".."):
        name = hashlib.sha256(f"{bucket_id}@{key}".encode()).hexdigest()
    if extension:
        name = f"{name}.{extension.lstrip('.')}"
    target = os.path.join(sink_folder_path or ".", name)
    result = service.get_streaming(bucket_id, key, timeout, headers)
    if isinstance(result, Err):
        return result
    return download_to_file(ok_value(result), target, piece, bucket_id=bucket_id, key=key,
                            router=service._error_context().get("router"))

