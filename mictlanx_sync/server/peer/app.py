"""The peer's raw ASGI application: routing (protocol §2.9), root path, error bodies (§2.6).

Handlers for the data paths live in ``upload`` (P2, P3) and ``download`` (P5); the rest
(metadata, listings, deletes, stats, nodes, tasks) are in ``handlers``.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Optional

from ..asgi.access_log import AccessLogMiddleware
from ..asgi.errors import ClientDisconnected, HTTPError, not_found
from ..asgi.paths import check_raw_path, raw_path_segments
from ..asgi.request import Receive, Request, Send
from ..asgi.responses import Answer, error_response
from . import handlers as h
from . import versioned
from .config import PeerConfig
from .state import PeerState
from .storage import is_disk_full

log = logging.getLogger("mictlanx_sync.server.peer")
Handler = Callable[..., Awaitable[Optional[Answer]]]
_Methods = dict[str, tuple[Handler, tuple[str, ...]]]


def resolve(segments: list[str]) -> _Methods:
    """The handlers for a path below ``/api/v4`` by method; empty if no route has this shape."""
    s, n = segments, len(segments)
    if n >= 2 and s[0] == "buckets":
        b = s[1]
        if n >= 3 and s[2] == "metadata":  # segment 3 == metadata: always a metadata route
            if n == 3:
                return {"GET": (h.list_bucket, (b,)), "POST": (h.put_metadata, (b,))}
            if n == 4:
                return {"GET": (h.get_metadata, (b, s[3]))}
            if n == 5 and s[4] == "group":
                return {"GET": (h.get_group, (b, s[3]))}
            if n == 5 and s[4] == "chunks":
                return {"GET": (h.get_chunks, (b, s[3]))}
            return {}
        if n == 3:
            routes: _Methods = {"GET": (h.get_data, (b, s[2])), "DELETE": (h.delete_key, (b, s[2]))}
            if b == "data":
                routes["POST"] = (h.put_data_multipart, (s[2],))
            return routes
        if n == 4:
            routes = {}
            tail = s[3]
            if tail == "size":
                routes["GET"] = (h.get_size, (b, s[2]))
            elif tail == "disable":
                routes["POST"] = (h.disable, (b, s[2]))
            elif tail == "replicate":
                routes["POST"] = (h.replicate_ball, (b, s[2]))
            elif tail == "chunked" and b == "data":
                routes["POST"] = (h.put_data_raw, (s[2],))
            elif tail == "commit":
                routes["POST"] = (versioned.commit, (b, s[2]))
            if s[2] == "bid":
                routes["DELETE"] = (h.delete_ball_id, (b, s[3]))
            return routes
        return {}
    if n == 1:
        return _SINGLE.get(s[0], {})
    if n == 2:
        pair = (s[0], s[1])
        if pair == ("stats", "ufs"):
            return {"GET": (h.ufs, ())}
        if pair == ("xballs", "size"):
            return {"GET": (h.xballs_size, ())}
        if pair == ("balls", "len"):
            return {"GET": (h.balls_len, ())}
        if pair == ("peers", "state"):
            return {"GET": (h.peers_state, ())}
        if s[0] == "tasks":
            return {"DELETE": (h.cancel_task, (s[1],))}
    return {}


_SINGLE: dict[str, _Methods] = {
    "stats": {"GET": (h.stats, ())},
    "xballs": {"GET": (h.xballs, ())},
    "nodes": {"POST": (h.register_node, ())},
    "tasks": {"DELETE": (h.flush_tasks, ())},
}
_TOP: dict[str, _Methods] = {
    "health": {"GET": (h.health, ())},
    "openapi.json": {"GET": (h.openapi, ())},
}


class PeerApp:
    """ASGI entry point: one ``PeerState`` and the route table."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.peer = PeerState(config)
        root = config.normalized_root_path()
        self.root_segments = root.split("/")[1:] if root else []

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.peer.start_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.peer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _routes(self, segments: list[str]) -> _Methods:
        rest = segments[1:]  # the raw path starts with "/"
        if segments[:1] != [""]:
            return {}
        if self.root_segments and rest[: len(self.root_segments)] == self.root_segments \
                and rest[:2] != ["api", "v4"] and rest not in (["health"], ["openapi.json"]):
            rest = rest[len(self.root_segments):]
        if rest[:2] == ["api", "v4"]:
            return resolve(rest[2:])
        if len(rest) == 1:
            return _TOP.get(rest[0], {})
        return {}

    async def _http(self, scope: dict, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.peer.start_gc()  # servers without lifespan events still get their GC
        try:
            error = check_raw_path(scope)
            if error is not None:
                raise error
            segments = raw_path_segments(scope)
            methods = self._routes(segments)
            if not methods:
                raise not_found(f"no route for {scope['path']}")
            method = scope["method"]
            if method == "HEAD" and "GET" in methods:
                method = "GET"
            route = methods.get(method)
            if route is None:
                raise HTTPError(405, 400, f"method {method} not allowed here",
                                headers={"Allow": ", ".join(sorted(methods))})
            handler, args = route
            answer = await handler(self.peer, Request(scope, receive, tracked), *args)
            if answer is not None:
                await answer.send(tracked)
        except HTTPError as exc:
            if not started:
                await error_response(exc).send(tracked)
        except ClientDisconnected:
            return
        except Exception as exc:
            if is_disk_full(exc):  # a full file system is 507, never 500 (the change was rolled back)
                log.warning("insufficient storage on %s %s: %s", scope.get("method"), scope.get("path"), exc)
                if started:
                    raise
                await error_response(HTTPError(507, 502, "insufficient storage: the file system is full")).send(tracked)
                return
            log.exception("unexpected fault on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(HTTPError(500, 500, "internal server error")).send(tracked)


def create_app(config: PeerConfig) -> Any:
    """The peer ASGI app (with one INFO access-log line per request).

    With ``config.faults`` it is wrapped in the fault-injection middleware, and with
    ``config.token`` in the bearer-token check (outermost, so ``/_faults`` needs it too).
    """
    from .. import auth, faults
    from .openapi import ROUTES

    app: Any = AccessLogMiddleware(PeerApp(config), logging.getLogger("mictlanx_sync.server.peer.access"))
    app = faults.wrap(app, config.faults, [(r[0], r[1], r[2]) for r in ROUTES])
    return auth.wrap(app, config.token, config.normalized_root_path(), accept_grants=True)
