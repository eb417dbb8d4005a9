"""The peer's ASGI application: the shared :class:`~..asgi.app.RoutedApp` over the routing table
of :mod:`.routes`, with the peer's background GC and 507 for a full file system.

The data paths live in ``upload`` (P2, P3) and ``download`` (P5); the other handlers in
``handlers`` and ``versioned``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from .. import auth, faults
from ..asgi.access_log import AccessLogMiddleware
from ..asgi.app import RoutedApp
from ..asgi.errors import HTTPError
from ..asgi.request import Receive, Send
from .config import PeerConfig
from .routes import TABLE
from .state import PeerState
from .storage import is_disk_full

log = logging.getLogger("mictlanx_sync.server.peer")


class PeerApp(RoutedApp[PeerState]):
    """ASGI entry point: one ``PeerState`` and the peer's routing table."""

    def __init__(self, config: PeerConfig) -> None:
        super().__init__(PeerState(config), TABLE, config.normalized_root_path(), log)
        self.config = config

    @property
    def peer(self) -> PeerState:
        return self.state

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.state.start_gc()  # servers without lifespan events still get their GC
        await super().__call__(scope, receive, send)

    async def startup(self) -> None:
        self.state.start_gc()

    async def shutdown(self) -> None:
        await self.state.close()

    def unexpected(self, exc: Exception, scope: Mapping[str, Any]) -> HTTPError:
        if is_disk_full(exc):  # a full file system is 507, never 500 (the change was rolled back)
            log.warning("insufficient storage on %s %s: %s", scope.get("method"), scope.get("path"), exc)
            return HTTPError(507, 502, "insufficient storage: the file system is full")
        return super().unexpected(exc, scope)


def create_app(config: PeerConfig) -> Any:
    """The peer ASGI app (with one INFO access-log line per request).

    With ``config.faults`` it is wrapped in the fault-injection middleware, and with
    ``config.token`` in the bearer-token check (outermost, so ``/_faults`` needs it too).
    """
    peer = PeerApp(config)
    app: Any = AccessLogMiddleware(peer, logging.getLogger("mictlanx_sync.server.peer.access"))
    app = faults.wrap(app, config.faults, peer.endpoint_of)
    return auth.wrap(app, config.token, config.normalized_root_path(), accept_grants=True)
