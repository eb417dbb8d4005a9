"""The router's OpenAPI 3 document, made from its routing table (protocol §4.5)."""

from __future__ import annotations

from typing import Any, Iterable

from ..asgi.routing import Route

_REPAIR_DOC = (
    "Extension of protocol v4. For every ball of the bucket (listed on every available peer, disabled "
    "balls excluded) the router re-creates missing replicas, up to `rf`, on the top-ranked available "
    "peers that hold no copy, streaming the bytes from a holder (P5 into P1 + P3). The router does not "
    "record replication factors, so `rf` is given per request. Never overwrites another version. "
    "Answers {bucket_id, rf, checked, repaired, failed, errors, peers}; 404/666 when fewer than rf peers "
    "are available, 503/666 with none, 502/503 when a peer's listing fails.")


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """Every route with an endpoint id, then ``/openapi.json`` itself."""
    paths: dict[str, dict[str, Any]] = {}
    error = {"description": "Error: {\"detail\": {\"code\", \"msg\", ...}}",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for route in routes:
        route_id, method, path = route.endpoint, route.method.lower(), route.path
        if not route_id:
            continue
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in route.param_names]
        paths.setdefault(path, {})[method] = {
            "operationId": route_id, "summary": f"{route_id}: {route.summary}", "parameters": params,
            "responses": {"200": {"description": "Success"}, "default": error},
        }
        if route_id == "R25":
            params.append({"name": "rf", "in": "query", "required": False,
                           "schema": {"type": "integer", "minimum": 1, "default": 2}})
            paths[path][method]["description"] = _REPAIR_DOC
    paths["/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3 document"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "MictlanX router (mictlanx_sync)", "version": "4"},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "properties": {"detail": {
            "type": "object", "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}},
            "required": ["code", "msg"]}}}}},
    }
