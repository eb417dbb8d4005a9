"""The peer's OpenAPI 3 document, made from its routing table (protocol §3.3)."""

from __future__ import annotations

from typing import Any, Iterable

from ..asgi.routing import Route

#: success statuses other than 200
_STATUS = {"P1": 201, "P2": 201, "P3": 201, "P10": 204, "P19": 201, "P20": 204, "P23": 204}
_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "object", "required": ["code", "msg"],
                              "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}}}},
}

_DEFAULT = {"description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(peer_id: str, routes: Iterable[Route]) -> dict[str, Any]:
    """Every route with an endpoint id (``/openapi.json`` itself has none)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        route_id = route.endpoint
        if not route_id:
            continue
        status = _STATUS.get(route_id, 200)
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in route.param_names]
        ok: dict[str, Any] = {"description": "success"}
        if status != 204:
            kind = "application/octet-stream" if route_id == "P5" else "application/json"
            ok["content"] = {kind: {"schema": {"type": "string", "format": "binary"} if route_id == "P5"
                                    else {"type": "object"}}}
        paths.setdefault(route.path, {})[route.method.lower()] = {
            "operationId": route_id, "summary": f"{route_id}: {route.summary}", "parameters": params,
            "responses": {str(status): ok, "default": _DEFAULT},
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"MictlanX storage peer {peer_id}", "version": "4"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }
