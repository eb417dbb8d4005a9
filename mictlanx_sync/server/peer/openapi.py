"""The hand-written OpenAPI 3 document of the peer (every route of protocol §3.3)."""

from __future__ import annotations

from typing import Any

_B = "{bucket_id}"
ROUTES: list[tuple[str, str, str, str, int]] = [
    ("P1", "post", f"/api/v4/buckets/{_B}/metadata", "Put metadata (phase 1)", 201),
    ("P2", "post", "/api/v4/buckets/data/{task_id}", "Put data, multipart (phase 2)", 201),
    ("P3", "post", "/api/v4/buckets/data/{task_id}/chunked", "Put data, raw stream (phase 2)", 201),
    ("P4", "get", f"/api/v4/buckets/{_B}/metadata/{{key}}", "Get metadata", 200),
    ("P5", "get", f"/api/v4/buckets/{_B}/{{key}}", "Get data (Range supported)", 200),
    ("P6", "get", f"/api/v4/buckets/{_B}/metadata", "List a bucket", 200),
    ("P7", "get", f"/api/v4/buckets/{_B}/metadata/{{ball_id}}/group", "List a ball group", 200),
    ("P8", "delete", f"/api/v4/buckets/{_B}/{{key}}", "Delete a key", 200),
    ("P9", "delete", f"/api/v4/buckets/{_B}/bid/{{ball_id}}", "Delete by ball_id", 200),
    ("P10", "post", f"/api/v4/buckets/{_B}/{{key}}/disable", "Disable a ball", 204),
    ("P11", "get", f"/api/v4/buckets/{_B}/{{key}}/size", "Size of a ball", 200),
    ("P12", "post", f"/api/v4/buckets/{_B}/{{key}}/replicate", "Replicate to another node", 200),
    ("P13", "get", "/api/v4/stats", "Peer stats", 200),
    ("P14", "get", "/api/v4/stats/ufs", "Utilization factors", 200),
    ("P15", "get", "/api/v4/xballs", "Inventory", 200),
    ("P16", "get", "/api/v4/xballs/size", "Inventory as arrays", 200),
    ("P17", "get", "/api/v4/balls/len", "Number of balls", 200),
    ("P18", "get", "/api/v4/peers/state", "Current state", 200),
    ("P19", "post", "/api/v4/nodes", "Register a node", 201),
    ("P20", "delete", "/api/v4/tasks", "Flush pending tasks", 204),
    ("P21", "get", "/health", "Health", 200),
    ("P22", "get", f"/api/v4/buckets/{_B}/metadata/{{ball_id}}/chunks", "List a ball group (legacy)", 200),
    ("P23", "delete", "/api/v4/tasks/{task_id}", "Cancel a task", 204),
    ("P24", "post", f"/api/v4/buckets/{_B}/{{ball_id}}/commit", "Commit a ball_id at a version", 200),
]
_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "object", "required": ["code", "msg"],
                              "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}}}},
}

_DEFAULT = {"description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(peer_id: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route_id, method, path, summary, status in ROUTES:
        params = [{"name": name.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in path.split("/") if name.startswith("{")]
        ok: dict[str, Any] = {"description": "success"}
        if status != 204:
            kind = "application/octet-stream" if route_id == "P5" else "application/json"
            ok["content"] = {kind: {"schema": {"type": "string", "format": "binary"} if route_id == "P5"
                                    else {"type": "object"}}}
        paths.setdefault(path, {})[method] = {
            "operationId": route_id, "summary": f"{route_id}: {summary}", "parameters": params,
            "responses": {str(status): ok, "default": _DEFAULT},
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"MictlanX storage peer {peer_id}", "version": "4"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }
