"""The ASGI application both servers are: lifespan, routing through a :class:`~.routing.RouteTable`,
and the answers to what a handler raises.

Raised by a handler (or the routing): :class:`~.errors.HTTPError` is answered as it says
(protocol §2.6); :class:`~.errors.ClientDisconnected` ends the request with no answer;
:class:`~.errors.StreamBroken`, and an ``HTTPError`` once the answer has started, end it
without completing the answer (the server closes the connection, so the client sees a broken
stream, never a complete-looking truncated one); anything else is 500/500 (a subclass may
name another status, :meth:`RoutedApp.unexpected`), or, after the answer started, left to the
server, which closes the connection.

Paths: the raw path is checked (:func:`~.paths.checked_segments`), a configured root-path prefix
is removed unless the path is a route as it stands (every route is served with and without it,
protocol §2.1), and with ``trailing_slash`` one trailing ``/`` is ignored (the router; on the
peer it is an empty last segment, an invalid id).
"""

from __future__ import annotations

import logging
from typing import Any, Generic, Mapping, Optional, TypeVar

from .errors import ClientDisconnected, HTTPError, StreamBroken, not_found
from .paths import checked_segments
from .request import Receive, Request, Send
from .responses import error_response
from .routing import RouteTable

StateT = TypeVar("StateT")


class RoutedApp(Generic[StateT]):
    """An ASGI app serving ``table`` with ``state`` handed to every handler."""

    def __init__(self, state: StateT, table: RouteTable, root_path: str, log: logging.Logger, *,
                 trailing_slash: bool = False) -> None:
        self.state = state
        self.table = table
        self.trailing_slash = trailing_slash
        root = root_path.strip("/")
        self.root = root.split("/") if root else []
        self.log = log

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        """Run at the lifespan start-up event; an exception fails the start."""

    async def shutdown(self) -> None:
        """Run at the lifespan shutdown event."""

    def unexpected(self, exc: Exception, scope: Mapping[str, Any]) -> HTTPError:
        """The answer to an unexpected exception before anything was sent (logged here)."""
        self.log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
        return HTTPError(500, 500, f"internal error: {type(exc).__name__}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to uvicorn, which exits
                    self.log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def route_segments(self, scope: Mapping[str, Any]) -> list[str]:
        """The path segments routes are matched against (see the module docstring)."""
        segments = checked_segments(scope)
        if segments[:1] != [""]:  # not an absolute path
            raise not_found(f"no route for {scope.get('method')} {scope.get('path')}")
        segments = segments[1:]
        if self.trailing_slash and len(segments) > 1 and segments[-1] == "":
            segments = segments[:-1]
        root = self.root
        if root and segments[:len(root)] == root and not self.table.matching(segments):
            segments = segments[len(root):]
        return segments

    def endpoint_of(self, scope: Mapping[str, Any]) -> Optional[str]:
        """The endpoint id (``P5``, ``R11``) a request is routed to; None when it has no route."""
        try:
            route = self.table.select(scope["method"], self.route_segments(scope), "")
        except HTTPError:
            return None
        return route.endpoint or None

    async def http(self, scope: dict, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        method = scope["method"]
        try:
            route, params = self.table.find(method, self.route_segments(scope), scope.get("path", ""))
            answer = await route.handler(self.state, Request(scope, receive, tracked), *params)
            if answer is not None:
                await answer.send(tracked)
        except HTTPError as exc:
            if started:
                self.log.warning("aborting %s %s after the answer started: %s", method, scope.get("path"), exc.msg)
                return
            await error_response(exc).send(tracked)
        except StreamBroken as exc:
            self.log.warning("aborting %s %s: %s", method, scope.get("path"), exc)
        except ClientDisconnected:
            return  # nobody to answer
        except Exception as exc:
            if started:
                raise
            await error_response(self.unexpected(exc, scope)).send(tracked)
