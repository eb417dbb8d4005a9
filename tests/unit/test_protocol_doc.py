"""docs/protocol.md's endpoint tables name every route of the two routing tables, with its
method, path and handler, and nothing else (so a reader following ``P5`` or ``R11`` lands on
the code that handles it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mictlanx_sync.server.asgi.routing import Route
from mictlanx_sync.server.peer.routes import ROUTES as PEER_ROUTES
from mictlanx_sync.server.router.routes import ROUTES as ROUTER_ROUTES

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_ROW = re.compile(r"^\| ([PR]\d+) \| `([A-Z]+)` \| `([^`]+)` \| [^|]+ \| `([^`]+)` `([^`]+)`")


def _documented() -> dict[str, tuple[str, str, str, str]]:
    rows: dict[str, tuple[str, str, str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            endpoint, method, path, module, handler = match.groups()
            assert endpoint not in rows, f"{endpoint} is documented twice"
            rows[endpoint] = (method, path, module, handler)
    return rows


def _expected(route: Route) -> tuple[str, str, str, str]:
    handler = route.handler
    module = handler.__module__.removeprefix("mictlanx_sync.").replace(".", "/") + ".py"
    return route.method, route.path, module, handler.__name__


@pytest.mark.parametrize("routes", [PEER_ROUTES, ROUTER_ROUTES], ids=["peer", "router"])
def test_every_route_is_documented_as_it_is_served(routes: tuple[Route, ...]) -> None:
    documented = _documented()
    for route in routes:
        assert documented.get(route.endpoint) == _expected(route), route.endpoint


def test_nothing_else_is_documented() -> None:
    served = {route.endpoint for route in (*PEER_ROUTES, *ROUTER_ROUTES)}
    assert set(_documented()) == served
