"""The router's routing table: every endpoint of protocol §4.5 (R1-R24), the extensions R25-R28,
and ``/openapi.json``."""

from __future__ import annotations

from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from ..asgi.routing import Route, RouteTable
from ..request_values import PATH_PARAMS
from . import admin, commit, reads, rebalance, repair, writes
from .openapi import openapi_document
from .state import RouterState

_B = "/api/v4/buckets/{bucket_id}"
ROUTES = (
    Route("R1", "GET", f"{_B}/{{key}}/size", reads.sizes, "Sizes of every replica"),
    Route("R2", "GET", f"{_B}/metadata", reads.list_bucket, "List a bucket (merged, no duplicates)"),
    Route("R3", "GET", f"{_B}/metadata/{{key}}", reads.get_metadata, "Metadata of a ball"),
    Route("R4", "POST", "/api/v4/u/buckets/{bucket_id}/{key}", writes.update_metadata,
          "Update metadata on every holder"),
    Route("R5", "POST", f"{_B}/metadata", writes.put_metadata, "Put metadata (phase 1): create a write group"),
    Route("R6", "POST", "/api/v4/buckets/data/{task_id}", writes.put_data_multipart, "Put data (phase 2), multipart"),
    Route("R7", "POST", "/api/v4/buckets/data/{task_id}/chunked", writes.put_data_raw,
          "Put data (phase 2), raw stream"),
    Route("R8", "POST", "/api/v4/buckets/data/{task_id}/chunkedv1", writes.put_data_raw, "Alias of R7"),
    Route("R9", "POST", f"{_B}/{{key}}/disable", writes.disable, "Disable a ball"),
    Route("R10", "GET", f"{_B}/{{ball_id}}/merge", reads.merge, "Stream every chunk of a ball"),
    Route("R11", "GET", f"{_B}/{{key}}", reads.get_data, "Get data (failover, Range)"),
    Route("R12", "GET", f"{_B}/metadata/{{ball_id}}/chunks", reads.list_chunks, "List the chunks of a ball"),
    Route("R13", "DELETE", f"{_B}/{{key}}", writes.delete_key, "Delete a key everywhere"),
    Route("R14", "DELETE", f"{_B}/bid/{{ball_id}}", writes.delete_ball, "Delete every ball of a ball_id"),
    Route("R15", "POST", "/api/v4/xpeers", admin.add_peers, "Add peers"),
    Route("R16", "GET", "/api/v4/peers", admin.list_peers, "List peers"),
    Route("R17", "POST", "/api/v4/peers", admin.add_peer, "Add one peer"),
    Route("R18", "DELETE", "/api/v4/peers/{peer_id}", admin.remove_peer, "Remove one peer"),
    Route("R19", "DELETE", "/api/v4/xpeers", admin.remove_peers, "Remove several peers"),
    Route("R20", "GET", "/api/v4/peers/stats", reads.stats, "Stats of every available peer"),
    Route("R21", "GET", "/api/v4/cache", admin.cache_keys, "Router cache keys"),
    Route("R22", "GET", "/api/v4/cache/stats", admin.cache_stats, "Router cache stats"),
    Route("R23", "DELETE", "/api/v4/cache/reset", admin.cache_reset, "Reset the router cache"),
    Route("R24", "GET", "/health", admin.health, "Router health"),
    Route("R25", "POST", "/api/v4/repair/buckets/{bucket_id}", repair.repair_bucket,
          "Re-create missing replicas of every ball of a bucket (extension)"),
    Route("R26", "POST", f"{_B}/{{ball_id}}/commit", commit.commit_ball,
          "Commit a version of a ball on every peer (docs/consistency.md §2.4)"),
    Route("R27", "GET", "/api/v4/rebalance", rebalance.get_status,
          "Progress of the current or last rebalancing pass (docs/rebalancing.md)"),
    Route("R28", "POST", "/api/v4/rebalance", rebalance.start, "Start a rebalancing pass now (docs/rebalancing.md)"),
)


async def openapi(st: RouterState, req: Request) -> Response:
    """``GET /openapi.json``: this table as an OpenAPI 3 document."""
    return json_response(openapi_document(ROUTES))


#: segment 3 ``metadata`` always selects a metadata route (protocol §2.9), and ``peers/stats``
#: is R20 for every method (no peer is removed by ``DELETE /peers/stats``)
TABLE = RouteTable([*ROUTES, Route("", "GET", "/openapi.json", openapi, "This document")], params=PATH_PARAMS,
                   reserved=("metadata", "stats"))
