"""The peer's routing table: every endpoint of protocol §3.3 (P1-P24) and ``/openapi.json``."""

from __future__ import annotations

from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from ..asgi.routing import Route, RouteTable
from ..request_values import PATH_PARAMS
from . import handlers as h
from . import versioned
from .openapi import openapi_document
from .state import PeerState

_B = "/api/v4/buckets/{bucket_id}"
ROUTES = (
    Route("P1", "POST", f"{_B}/metadata", h.put_metadata, "Put metadata (phase 1)"),
    Route("P2", "POST", "/api/v4/buckets/data/{task_id}", h.put_data_multipart, "Put data, multipart (phase 2)"),
    Route("P3", "POST", "/api/v4/buckets/data/{task_id}/chunked", h.put_data_raw, "Put data, raw stream (phase 2)"),
    Route("P4", "GET", f"{_B}/metadata/{{key}}", h.get_metadata, "Get metadata"),
    Route("P5", "GET", f"{_B}/{{key}}", h.get_data, "Get data (Range supported)"),
    Route("P6", "GET", f"{_B}/metadata", h.list_bucket, "List a bucket"),
    Route("P7", "GET", f"{_B}/metadata/{{ball_id}}/group", h.get_group, "List a ball group"),
    Route("P8", "DELETE", f"{_B}/{{key}}", h.delete_key, "Delete a key"),
    Route("P9", "DELETE", f"{_B}/bid/{{ball_id}}", h.delete_ball_id, "Delete by ball_id"),
    Route("P10", "POST", f"{_B}/{{key}}/disable", h.disable, "Disable a ball"),
    Route("P11", "GET", f"{_B}/{{key}}/size", h.get_size, "Size of a ball"),
    Route("P12", "POST", f"{_B}/{{key}}/replicate", h.replicate_ball, "Replicate to another node"),
    Route("P13", "GET", "/api/v4/stats", h.stats, "Peer stats"),
    Route("P14", "GET", "/api/v4/stats/ufs", h.ufs, "Utilization factors"),
    Route("P15", "GET", "/api/v4/xballs", h.xballs, "Inventory"),
    Route("P16", "GET", "/api/v4/xballs/size", h.xballs_size, "Inventory as arrays"),
    Route("P17", "GET", "/api/v4/balls/len", h.balls_len, "Number of balls"),
    Route("P18", "GET", "/api/v4/peers/state", h.peers_state, "Current state"),
    Route("P19", "POST", "/api/v4/nodes", h.register_node, "Register a node"),
    Route("P20", "DELETE", "/api/v4/tasks", h.flush_tasks, "Flush pending tasks"),
    Route("P21", "GET", "/health", h.health, "Health"),
    Route("P22", "GET", f"{_B}/metadata/{{ball_id}}/chunks", h.get_chunks, "List a ball group (legacy)"),
    Route("P23", "DELETE", "/api/v4/tasks/{task_id}", h.cancel_task, "Cancel a task"),
    Route("P24", "POST", f"{_B}/{{ball_id}}/commit", versioned.commit, "Commit a ball_id at a version"),
)


async def openapi(peer: PeerState, req: Request) -> Response:
    """``GET /openapi.json``: this table as an OpenAPI 3 document."""
    return json_response(openapi_document(peer.config.peer_id, ROUTES))


#: a third segment ``metadata`` always selects a metadata route (protocol §2.9); HEAD is GET
TABLE = RouteTable([*ROUTES, Route("", "GET", "/openapi.json", openapi, "This document")], params=PATH_PARAMS,
                   reserved=("metadata",), head_as_get=True)
