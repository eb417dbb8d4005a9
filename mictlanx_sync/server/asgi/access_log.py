"""One INFO log line per request: method, path, status, duration (protocol §7)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable


class AccessLogMiddleware:
    """One INFO line per request: method, path, status, duration (§P7)."""

    def __init__(self, app: Any, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.logger.info("%s %s %s %.1fms", scope["method"], scope["path"], status[0], elapsed_ms)
