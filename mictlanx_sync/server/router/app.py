"""The router's ASGI application: lifespan, route dispatch (protocol §P2.9, §P4.5), errors.

A small hand-written dispatcher keeps the data paths (R6/R7/R10/R11) on raw ASGI
``send``/``receive`` with no framework work per piece. ``create_app(config)`` returns the
app wrapped in the access-log middleware.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Awaitable, Callable, Optional

from ..asgi.access_log import AccessLogMiddleware
from ..asgi.errors import ClientDisconnected, HTTPError, StreamBroken
from ..asgi.paths import check_raw_path, raw_path_segments
from ..asgi.request import Request
from ..asgi.responses import Answer, error_response
from ..request_values import path_id
from . import admin, commit, reads, rebalance, repair, writes
from .state import RouterConfig, RouterState

log = logging.getLogger("mictlanx_sync.server.router")

Handler = Callable[..., Awaitable[Optional[Answer]]]
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD")


def _bucket(value: str) -> str:
    return path_id(value, "bucket_id")


def _key(value: str, field: str = "key") -> str:
    return path_id(value, field, key=True)


def resolve(st: RouterState, method: str, segs: list[str]) -> Optional[Callable[[Request, Any], Awaitable[Any]]]:
    """The handler for ``method`` and the path segments after ``/api/v4`` (None: no route).

    Literal segments win over parameters; a third segment ``metadata`` always selects a
    metadata route (§P2.9). Ids are validated inside the returned callable (400/400).
    """
    n = len(segs)
    if n == 0:
        return None
    head = segs[0]
    if head == "buckets" and n >= 3:
        b = segs[1]
        if segs[2] == "metadata":
            if n == 3 and method == "GET":
                return lambda req, send: reads.list_bucket(st, req, _bucket(b))
            if n == 3 and method == "POST":
                return lambda req, send: writes.put_metadata(st, req, _bucket(b))
            if n == 4 and method == "GET":
                return lambda req, send: reads.get_metadata(st, req, _bucket(b), _key(segs[3]))
            if n == 5 and segs[4] == "chunks" and method == "GET":
                return lambda req, send: reads.list_chunks(st, req, _bucket(b), _key(segs[3], "ball_id"))
            return None
        if b == "data" and method == "POST" and (n == 3 or (n == 4 and segs[3] in ("chunked", "chunkedv1"))):
            return lambda req, send: writes.put_data(st, req, segs[2], multipart=n == 3)
        if n == 3:
            if method == "GET":
                return lambda req, send: reads.get_data(st, req, _bucket(b), _key(segs[2]))
            if method == "DELETE":
                return lambda req, send: writes.delete_key(st, req, _bucket(b), _key(segs[2]))
            return None
        if n == 4:
            if segs[2] == "bid" and method == "DELETE":
                return lambda req, send: writes.delete_ball(st, req, _bucket(b), _key(segs[3], "ball_id"))
            last = segs[3]
            if last == "size" and method == "GET":
                return lambda req, send: reads.sizes(st, req, _bucket(b), _key(segs[2]))
            if last == "disable" and method == "POST":
                return lambda req, send: writes.disable(st, req, _bucket(b), _key(segs[2]))
            if last == "commit" and method == "POST":
                return lambda req, send: commit.commit_ball(st, req, _bucket(b), _key(segs[2], "ball_id"))
            if last == "merge" and method == "GET":
                return lambda req, send: reads.merge(st, req, _bucket(b), _key(segs[2], "ball_id"))
        return None
    if head == "repair" and n == 3 and segs[1] == "buckets" and method == "POST":
        return lambda req, send: repair.repair_bucket(st, req, _bucket(segs[2]))
    if head == "u" and n == 4 and segs[1] == "buckets" and method == "POST":
        return lambda req, send: writes.update_metadata(st, req, _bucket(segs[2]), _key(segs[3]))
    simple: dict[tuple[str, ...], Callable[[RouterState, Request], Awaitable[Answer]]] = {
        ("POST", "xpeers"): admin.add_peers, ("DELETE", "xpeers"): admin.remove_peers,
        ("GET", "peers"): admin.list_peers, ("POST", "peers"): admin.add_peer,
        ("GET", "peers", "stats"): reads.stats, ("GET", "cache"): admin.cache_keys,
        ("GET", "cache", "stats"): admin.cache_stats, ("DELETE", "cache", "reset"): admin.cache_reset,
        ("GET", "rebalance"): rebalance.get_status, ("POST", "rebalance"): rebalance.start,
    }
    handler = simple.get((method, *segs))
    if handler is not None:
        return partial(_simple, handler, st)
    if head == "peers" and n == 2 and method == "DELETE" and segs[1] != "stats":
        return lambda req, send: admin.remove_peer(st, req, segs[1])
    return None


async def _simple(handler: Callable[[RouterState, Request], Awaitable[Answer]], st: RouterState,
                  req: Request, send: Any) -> Answer:
    return await handler(st, req)


class RouterApp:
    """The raw ASGI application of one router."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.state = RouterState(config)
        prefix = config.root_path.strip("/")
        self.prefix = prefix.split("/") if prefix else []

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.state.startup()
                except Exception as exc:  # reported to uvicorn, which exits
                    log.exception("router start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _route(self, method: str, segs: list[str]) -> Optional[Callable[[Request, Any], Awaitable[Any]]]:
        st = self.state
        if segs == ["health"] and method == "GET":
            return partial(_simple, admin.health, st)
        if segs == ["openapi.json"] and method == "GET":
            return partial(_simple, admin.openapi, st)
        if len(segs) >= 2 and segs[0] == "api" and segs[1] == "v4":
            return resolve(st, method, segs[2:])
        return None

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            bad = check_raw_path(scope)
            if bad is not None:
                raise bad
            segs = raw_path_segments(scope)[1:]
            if segs and segs[-1] == "" and len(segs) > 1:
                segs = segs[:-1]
            if self.prefix and segs[: len(self.prefix)] == self.prefix:
                segs = segs[len(self.prefix):]
            method = scope["method"]
            handler = self._route(method, segs)
            if handler is None:
                if any(self._route(m, segs) is not None for m in METHODS if m != method):
                    raise HTTPError(405, 400, f"method {method} not allowed on {scope.get('path')}")
                raise HTTPError(404, 404, f"no route for {method} {scope.get('path')}")
            answer = await handler(Request(scope, receive, tracking_send), tracking_send)
            if answer is not None:
                await answer.send(tracking_send)
        except HTTPError as exc:
            if started:
                log.warning("aborting %s %s after the response started: %s", scope["method"], scope.get("path"),
                            exc.msg)
                return  # incomplete response: the server closes the connection
            await error_response(exc).send(send)
        except StreamBroken as exc:
            # Returning without completing the response makes the server close the connection:
            # no terminating chunk, Content-Length unmet, so the client sees a broken stream.
            log.warning("aborting %s %s: %s", scope["method"], scope.get("path"), exc)
            return
        except ClientDisconnected:
            return  # nobody to answer
        except Exception as exc:
            if started:
                raise
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            await error_response(HTTPError(500, 500, f"internal error: {type(exc).__name__}")).send(send)


def create_app(config: RouterConfig) -> Any:
    """The router ASGI app (with request logging) for ``config``.

    With ``config.faults`` it is wrapped in the fault-injection middleware, and with
    ``config.token`` in the bearer-token check (outermost, so ``/_faults`` needs it too).
    """
    from .. import auth, faults

    app: Any = AccessLogMiddleware(RouterApp(config), logging.getLogger("mictlanx_sync.server.router.access"))
    app = faults.wrap(app, config.faults, [(r[0], r[1], r[2]) for r in admin.ROUTES])
    return auth.wrap(app, config.token, config.root_path)
