"""``mictlanx_sync.models``: the wire models and value types (see :mod:`mictlanx_sync.protocol.models`)."""

from .protocol.models import *  # noqa: F403
from .protocol.models import __all__  # noqa: F401
