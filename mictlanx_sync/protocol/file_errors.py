"""``LocalFileNotFoundError``: a local file to upload does not exist (issue 14 §6).

It is a ``ValidationError`` (what ``put_file`` returned before, status 400, never retried)
and also a ``FileNotFoundError``, so ``except FileNotFoundError`` and
``except OSError`` catch it after ``unwrap()``, as they would for ``open()``.

>>> issubclass(LocalFileNotFoundError, FileNotFoundError)
True
"""

from __future__ import annotations

from .errors import ValidationError

__all__ = ["LocalFileNotFoundError"]


class LocalFileNotFoundError(ValidationError, FileNotFoundError):
    default_message = "No such file"
