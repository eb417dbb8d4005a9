"""Local file helpers of ``get_to_file`` (client-api §8.6): naming, hashing, errors. (The
``.part`` file itself: :class:`mictlanx_sync.protocol.atomic_file.AtomicFile`.)"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator

from ..protocol.errors import LocalStorageError

__all__ = ["HASH_PIECE", "target_name", "file_sha256", "fd_region", "local_error"]

HASH_PIECE = 4 * 1024 * 1024


def target_name(fullname: str, tags: dict[str, str], ball_id: str) -> str:
    """The argument, else tag ``fullname``, else ``ball_id`` + ``.extension``; last component only."""
    extension = tags.get("extension", "")
    name = fullname or tags.get("fullname", "") or (f"{ball_id}.{extension}" if extension else ball_id)
    name = os.path.basename(name.replace("\\", "/").rstrip("/"))
    return ball_id if name in ("", ".", "..") else name


def file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(HASH_PIECE):
            hasher.update(piece)
    return hasher.hexdigest()


def fd_region(fd: int, start: int, size: int, buffer: bytearray) -> Iterator[memoryview]:
    """The bytes of ``[start, start + size)`` of an open file, read into ``buffer`` piece by
    piece (each piece is valid until the next one is read)."""
    view = memoryview(buffer)
    offset, end = start, start + size
    while offset < end:
        got = os.preadv(fd, [view[:min(len(view), end - offset)]], offset)
        if not got:
            return
        yield view[:got]
        offset += got


def local_error(exc: OSError, path: str) -> LocalStorageError:
    error = LocalStorageError(f"{path}: {exc.strerror or exc}")
    error.__cause__ = exc
    return error
