"""mictlanx-sync: the blocking client, storage peer and router for the MictlanX object store.

>>> from mictlanx_sync import Ok
>>> Ok(1).unwrap()
1

Importing the package does no I/O and creates no files or threads; the server side
(``LocalVSS``) is imported on first use and needs ``mictlanx-sync[server]``. As urllib3 and
requests do, the package logger ``mictlanx_sync`` gets a ``NullHandler``: an application
that configures no logging sees no retry warnings on stderr (``logging.basicConfig()`` or
``mictlanx-sync -v`` shows them, each naming the user's operation, e.g. ``put photos/cat``).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import errors
from .protocol.result import Err, Ok, Result

if TYPE_CHECKING:
    from . import models
    from .client.client import Client
    from .protocol.mictlanx_uri import MictlanXURI
    from .protocol.peer import Peer
    from .protocol.policies import BreakerPolicy, RetryPolicy
    from .protocol.router import Router
    from .server.local import LocalVSS

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it, imported on first access (keeps `import mictlanx_sync` light).
_LAZY = {
    "Client": "mictlanx_sync.client.client",
    "RetryPolicy": "mictlanx_sync.protocol.policies",
    "BreakerPolicy": "mictlanx_sync.protocol.policies",
    "Peer": "mictlanx_sync.protocol.peer",
    "Router": "mictlanx_sync.protocol.router",
    "MictlanXURI": "mictlanx_sync.protocol.mictlanx_uri",
    "LocalVSS": "mictlanx_sync.server.local",
    "models": "mictlanx_sync.models",
}

__all__ = [
    "Client", "Peer", "Router", "MictlanXURI", "LocalVSS", "Result", "Ok", "Err", "RetryPolicy", "BreakerPolicy",
    "errors", "models", "__version__",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mictlanx_sync' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
