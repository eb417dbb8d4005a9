"""Router registry endpoints R15–R19, the cache stubs R21–R23, R24 and ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ...protocol.ids import is_valid_id
from ..asgi.errors import HTTPError, unprocessable
from ..asgi.request import Request, parse_json_body
from ..asgi.responses import Response, empty, json_response
from ..request_values import path_id
from .registry import PeerEntry
from .state import RouterState


def _peer_item(item: Any, loc: list[Any]) -> PeerEntry:
    if not isinstance(item, dict):
        raise unprocessable("a peer must be an object", loc, "dict_type")
    for name in ("peer_id", "hostname", "port"):
        if name not in item:
            raise unprocessable(f"field required: {name}", [*loc, name], "missing")
    peer_id, hostname, port = item["peer_id"], item["hostname"], item["port"]
    protocol = item.get("protocol") or "http"
    if not is_valid_id(peer_id):
        raise unprocessable(f"invalid peer_id: {peer_id!r}", [*loc, "peer_id"])
    if not isinstance(hostname, str) or not hostname or any(c.isspace() or c in "/@?#" for c in hostname):
        raise unprocessable(f"invalid hostname: {hostname!r}", [*loc, "hostname"])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise unprocessable(f"invalid port: {port!r}", [*loc, "port"], "int_type")
    if protocol not in ("http", "https"):
        raise unprocessable(f"invalid protocol: {protocol!r}", [*loc, "protocol"])
    return PeerEntry(peer_id, hostname.strip("[]"), port, protocol)


#: R15/R17 header proving the caller knows the peer token (then the new peer may receive it)
PEER_TOKEN_HEADER = "mictlanx-peer-token"


def _trusted(st: RouterState, req: Request) -> bool:
    """Whether peers registered by ``req`` may receive the peer token (issue 12 point 6).

    Only when the request proves it already knows the peer token: ``Mictlanx-Peer-Token``
    equal to it, or an ``Authorization`` bearer equal to it (a router whose token is the peer
    token, as ``LocalVSS`` runs). Otherwise registering an address one listens on would hand
    out the peer token to anyone holding the router token.
    """
    registry = st.registry
    if registry.proves_peer_token(req.headers.get(PEER_TOKEN_HEADER)):
        return True
    auth = req.headers.get("authorization", "").strip()
    return auth[:7].lower() == "bearer " and registry.proves_peer_token(auth[7:].strip())


async def add_peers(st: RouterState, req: Request) -> Response:
    body = await req.json()
    if not isinstance(body, list):
        raise unprocessable("body must be a JSON array of peers", ["body"], "list_type")
    entries = [_peer_item(item, ["body", i]) for i, item in enumerate(body)]
    trusted = _trusted(st, req)
    for entry in entries:
        entry.trusted = trusted
    await st.registry.register(entries)
    return empty(204)


async def add_peer(st: RouterState, req: Request) -> Response:
    entry = _peer_item(await req.json(), ["body"])
    entry.trusted = _trusted(st, req)
    await st.registry.register([entry])
    return empty(204)


async def list_peers(st: RouterState, req: Request) -> Response:
    peers = [st.registry.peers[p] for p in st.registry.known_ids()]
    return json_response({"available": [e.public() for e in peers if e.available],
                          "unavailable": [e.public() for e in peers if not e.available]})


async def remove_peer(st: RouterState, req: Request, peer_id: str) -> Response:
    peer_id = path_id(peer_id, "peer_id")
    if not st.registry.remove(peer_id):
        raise HTTPError(404, 404, f"unknown peer: {peer_id}")
    return empty(204)


async def remove_peers(st: RouterState, req: Request) -> Response:
    ids = list(req.query_all.get("peers", []))
    raw = await req.body()
    if raw.strip():
        body = parse_json_body(raw)
        if not isinstance(body, list) or not all(isinstance(p, str) for p in body):
            raise unprocessable("body must be a JSON array of peer ids", ["body"], "list_type")
        ids.extend(body)
    for peer_id in ids:
        st.registry.remove(peer_id)
    return empty(204)


async def cache_keys(st: RouterState, req: Request) -> Response:
    return json_response({"keys": []})


async def cache_stats(st: RouterState, req: Request) -> Response:
    return json_response({"total": 0, "used": 0, "available": 0, "uf": 0.0})


async def cache_reset(st: RouterState, req: Request) -> Response:
    return empty(204)


async def health(st: RouterState, req: Request) -> Response:
    return json_response({"status": "ok", "available_peers": len(st.registry.available_ids())})


# --- OpenAPI ---------------------------------------------------------------------------------
ROUTES = [
    ("R1", "get", "/api/v4/buckets/{bucket_id}/{key}/size", "Sizes of every replica"),
    ("R2", "get", "/api/v4/buckets/{bucket_id}/metadata", "List a bucket (merged, no duplicates)"),
    ("R3", "get", "/api/v4/buckets/{bucket_id}/metadata/{key}", "Metadata of a ball"),
    ("R4", "post", "/api/v4/u/buckets/{bucket_id}/{key}", "Update metadata on every holder"),
    ("R5", "post", "/api/v4/buckets/{bucket_id}/metadata", "Put metadata (phase 1): create a write group"),
    ("R6", "post", "/api/v4/buckets/data/{task_id}", "Put data (phase 2), multipart"),
    ("R7", "post", "/api/v4/buckets/data/{task_id}/chunked", "Put data (phase 2), raw stream"),
    ("R8", "post", "/api/v4/buckets/data/{task_id}/chunkedv1", "Alias of R7"),
    ("R9", "post", "/api/v4/buckets/{bucket_id}/{key}/disable", "Disable a ball"),
    ("R10", "get", "/api/v4/buckets/{bucket_id}/{ball_id}/merge", "Stream every chunk of a ball"),
    ("R11", "get", "/api/v4/buckets/{bucket_id}/{key}", "Get data (failover, Range)"),
    ("R12", "get", "/api/v4/buckets/{bucket_id}/metadata/{ball_id}/chunks", "List the chunks of a ball"),
    ("R13", "delete", "/api/v4/buckets/{bucket_id}/{key}", "Delete a key everywhere"),
    ("R14", "delete", "/api/v4/buckets/{bucket_id}/bid/{ball_id}", "Delete every ball of a ball_id"),
    ("R15", "post", "/api/v4/xpeers", "Add peers"),
    ("R16", "get", "/api/v4/peers", "List peers"),
    ("R17", "post", "/api/v4/peers", "Add one peer"),
    ("R18", "delete", "/api/v4/peers/{peer_id}", "Remove one peer"),
    ("R19", "delete", "/api/v4/xpeers", "Remove several peers"),
    ("R20", "get", "/api/v4/peers/stats", "Stats of every available peer"),
    ("R21", "get", "/api/v4/cache", "Router cache keys"),
    ("R22", "get", "/api/v4/cache/stats", "Router cache stats"),
    ("R23", "delete", "/api/v4/cache/reset", "Reset the router cache"),
    ("R24", "get", "/health", "Router health"),
    ("R25", "post", "/api/v4/repair/buckets/{bucket_id}",
     "Re-create missing replicas of every ball of a bucket (extension)"),
    ("R26", "post", "/api/v4/buckets/{bucket_id}/{ball_id}/commit",
     "Commit a version of a ball on every peer (docs/consistency.md §2.4)"),
    ("R27", "get", "/api/v4/rebalance", "Progress of the current or last rebalancing pass (docs/rebalancing.md)"),
    ("R28", "post", "/api/v4/rebalance", "Start a rebalancing pass now (docs/rebalancing.md)"),
]
_REPAIR_DOC = (
    "Extension of protocol v4. For every ball of the bucket (listed on every available peer, disabled "
    "balls excluded) the router re-creates missing replicas, up to `rf`, on the top-ranked available "
    "peers that hold no copy, streaming the bytes from a holder (P5 into P1 + P3). The router does not "
    "record replication factors, so `rf` is given per request. Never overwrites another version. "
    "Answers {bucket_id, rf, checked, repaired, failed, errors, peers}; 404/666 when fewer than rf peers "
    "are available, 503/666 with none, 502/503 when a peer's listing fails.")


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    error = {"description": "Error: {\"detail\": {\"code\", \"msg\", ...}}",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for route_id, method, path, summary in ROUTES:
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in (part[1:-1] for part in path.split("/") if part.startswith("{"))]
        paths.setdefault(path, {})[method] = {
            "operationId": route_id, "summary": f"{route_id}: {summary}", "parameters": params,
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


async def openapi(st: RouterState, req: Request) -> Response:
    return json_response(openapi_document())
