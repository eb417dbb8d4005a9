"""The router's ASGI application: the shared :class:`~..asgi.app.RoutedApp` over the routing
table of :mod:`.routes`, with the router's state started and stopped by the lifespan events.

The data paths (R6/R7/R10/R11) stay on raw ASGI ``send``/``receive`` with no framework work per
piece. ``create_app(config)`` returns the app wrapped in the access-log middleware.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import auth, faults
from ..asgi.access_log import AccessLogMiddleware
from ..asgi.app import RoutedApp
from .config import RouterConfig
from .rebalance import Rebalancer
from .routes import TABLE
from .state import RouterState

log = logging.getLogger("mictlanx_sync.server.router")


class RouterApp(RoutedApp[RouterState]):
    """The raw ASGI application of one router."""

    def __init__(self, config: RouterConfig) -> None:
        # One trailing slash is ignored, as upstream's router (FastAPI) redirects it away.
        super().__init__(RouterState(config, Rebalancer), TABLE, config.root_path, log, trailing_slash=True)
        self.config = config

    async def startup(self) -> None:
        await self.state.startup()

    async def shutdown(self) -> None:
        await self.state.shutdown()


def create_app(config: RouterConfig) -> Any:
    """The router ASGI app (with request logging) for ``config``.

    With ``config.faults`` it is wrapped in the fault-injection middleware, and with
    ``config.token`` in the bearer-token check (outermost, so ``/_faults`` needs it too).
    """
    router = RouterApp(config)
    app: Any = AccessLogMiddleware(router, logging.getLogger("mictlanx_sync.server.router.access"))
    app = faults.wrap(app, config.faults, router.endpoint_of)
    return auth.wrap(app, config.token, config.root_path)
