"""The content type an object is stored with: given, else guessed from its name (issue 14 §6).

>>> content_type_for(None, "cat.png")
'image/png'
>>> content_type_for(None, "report")
'application/octet-stream'
>>> content_type_for("text/csv", "data.bin")
'text/csv'
"""

from __future__ import annotations

import mimetypes
from typing import Optional

from ..protocol.errors import ValidationError

__all__ = ["content_type_for", "DEFAULT_CONTENT_TYPE"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def content_type_for(given: Optional[str], name: str) -> str:
    """``given`` when set (a ``type/subtype`` string), else ``mimetypes``' guess for ``name``."""
    if given is not None:
        if not isinstance(given, str) or "/" not in given or any(c in given for c in "\r\n"):
            raise ValidationError(f"content_type must look like 'type/subtype', got {given!r}")
        return given
    guessed, _encoding = mimetypes.guess_type(str(name), strict=False)
    return guessed or DEFAULT_CONTENT_TYPE
