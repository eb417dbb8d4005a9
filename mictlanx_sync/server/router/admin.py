"""Router registry endpoints R15–R19, the cache stubs R21–R23 and R24."""

from __future__ import annotations

from typing import Any

from ...protocol.ids import is_valid_id
from ..asgi.errors import HTTPError, unprocessable
from ..asgi.request import Request, parse_json_body
from ..asgi.responses import Response, empty, json_response
from .peers import PeerEntry
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
    client = st.registry.client
    if client.proves_peer_token(req.headers.get(PEER_TOKEN_HEADER)):
        return True
    auth = req.headers.get("authorization", "").strip()
    return auth[:7].lower() == "bearer " and client.proves_peer_token(auth[7:].strip())


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
