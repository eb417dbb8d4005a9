"""``mictlanx_sync.errors``: the error hierarchy (see :mod:`mictlanx_sync.protocol.errors`)."""

from .protocol.errors import *  # noqa: F403
from .protocol.errors import __all__  # noqa: F401
from .protocol.file_errors import LocalFileNotFoundError  # noqa: E402,F401

__all__ = [*__all__, "LocalFileNotFoundError"]  # noqa: F405
