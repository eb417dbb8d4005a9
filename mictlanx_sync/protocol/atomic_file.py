"""The one atomic file of the library: written beside its target, fsynced, then renamed over it.

``Peer.get_to_file``/``Router.get_to_file`` and ``Client.get_to_file`` write downloads
through :class:`AtomicFile`, and the router its journals (:func:`write_atomically`), so a
reader of the target sees the old file or the whole new one, never a part, and a crash or an
interrupt leaves no partial file behind:

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     target = os.path.join(tmp, "out.bin")
...     with AtomicFile(target) as part:
...         _ = os.write(part.fd, b"hello")
...         part.commit()
...     open(target, "rb").read(), sorted(os.listdir(tmp))
(b'hello', ['out.bin'])
"""

from __future__ import annotations

import os
import secrets
from typing import Optional

__all__ = ["AtomicFile", "fsync_directory", "write_atomically"]


class AtomicFile:
    """A new file ``.{name}.{random}.part`` in the target's directory, open for writing.

    Write through :attr:`fd` (positional writes are fine: chunks may land in any order),
    then :meth:`commit`: the bytes are fsynced, the part is renamed over ``target``
    (``os.replace``, atomic on POSIX) and the directory is fsynced, so the rename survives
    a crash. Leaving the ``with`` block without a commit, on any exception
    (``KeyboardInterrupt`` included), closes and removes the part. Raises ``OSError``; the
    directory must exist.
    """

    def __init__(self, target: str, size: Optional[int] = None, mode: int = 0o644) -> None:
        self.target = target
        directory, name = os.path.split(os.path.abspath(target))
        self.directory = directory
        self.path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
        #: the part's file descriptor, open for reading and writing until commit or close
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        self.committed = False
        try:
            if size is not None:
                os.ftruncate(self.fd, size)  # sized at once: positional writes fill it
        except BaseException:
            self.close()
            raise

    def commit(self) -> None:
        """Make the written bytes the target's, durably; the part is gone afterwards."""
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.path, self.target)
        self.committed = True
        fsync_directory(self.directory)

    def close(self) -> None:
        """Close the descriptor and, unless committed, remove the part. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.committed:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_atomically(target: str, data: bytes) -> None:
    """Replace ``target`` with ``data`` through an :class:`AtomicFile`: readers, and a crash at
    any point, see the old content or the new, never a part (the router's journals)."""
    with AtomicFile(target) as part:
        view = memoryview(data)
        while view:
            view = view[os.write(part.fd, view):]
        part.commit()


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (best effort: some file systems refuse it)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
