"""The servers' shared ASGI layer (``mictlanx_sync.server.asgi``): routing precedence, the one
body rule for a client that goes away, and the streaming multipart parser."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest

from mictlanx_sync.server.asgi.errors import ClientDisconnected, HTTPError
from mictlanx_sync.server.asgi.multipart import MultipartStream
from mictlanx_sync.server.asgi.request import Request, RequestBody
from mictlanx_sync.server.asgi.routing import Route, RouteTable
from mictlanx_sync.server.peer.routes import TABLE as PEER
from mictlanx_sync.server.request_values import PATH_PARAMS
from mictlanx_sync.server.router.routes import TABLE as ROUTER


def _find(table: RouteTable, method: str, path: str) -> tuple[str, list[str]]:
    route, params = table.find(method, path.strip("/").split("/"), path)
    return route.endpoint, params


def _status(table: RouteTable, method: str, path: str) -> tuple[int, Optional[str]]:
    with pytest.raises(HTTPError) as caught:
        _find(table, method, path)
    return caught.value.status, caught.value.headers.get("Allow")


# --- routing (protocol §2.9) ----------------------------------------------------------------------------
def test_literal_segments_win_per_method() -> None:
    assert _find(PEER, "POST", "/api/v4/buckets/data/t1") == ("P2", ["t1"])
    assert _find(PEER, "GET", "/api/v4/buckets/data/k") == ("P5", ["data", "k"])  # bucket "data"
    assert _find(ROUTER, "GET", "/api/v4/buckets/b/bid/size") == ("R1", ["b", "bid"])
    assert _find(ROUTER, "DELETE", "/api/v4/buckets/b/bid/size") == ("R14", ["b", "size"])


def test_metadata_is_reserved_whatever_the_method() -> None:
    assert _find(PEER, "POST", "/api/v4/buckets/data/metadata") == ("P1", ["data"])
    assert _find(ROUTER, "GET", "/api/v4/buckets/b/metadata/size") == ("R3", ["b", "size"])
    assert _status(PEER, "DELETE", "/api/v4/buckets/b/metadata") == (405, "GET, POST")
    assert _status(ROUTER, "DELETE", "/api/v4/buckets/b/metadata") == (405, "GET, POST")
    assert _find(ROUTER, "POST", "/api/v4/u/buckets/metadata/k") == ("R4", ["metadata", "k"])  # not segment 3


def test_stats_is_reserved_on_the_router() -> None:
    assert _status(ROUTER, "DELETE", "/api/v4/peers/stats") == (405, "GET")
    assert _find(ROUTER, "DELETE", "/api/v4/peers/p1") == ("R18", ["p1"])


def test_404_405_and_head() -> None:
    assert _status(PEER, "GET", "/api/v4/nothing") == (404, None)
    assert _status(ROUTER, "PUT", "/api/v4/buckets/b/k") == (405, "DELETE, GET")
    assert _find(PEER, "HEAD", "/api/v4/buckets/b/k") == ("P5", ["b", "k"])
    assert _status(ROUTER, "HEAD", "/api/v4/buckets/b/k") == (405, "DELETE, GET")


def test_path_ids_are_validated_by_name_and_task_ids_left_to_handlers() -> None:
    with pytest.raises(HTTPError) as caught:
        _find(PEER, "GET", "/api/v4/buckets/b/metadata/metadata")
    assert (caught.value.status, caught.value.code) == (400, 400) and "key" in caught.value.msg
    assert _find(ROUTER, "POST", "/api/v4/buckets/data/not..valid") == ("R6", ["not..valid"])


def test_a_table_refuses_two_routes_of_one_shape() -> None:
    async def handler(state: Any, req: Any) -> None:
        return None

    with pytest.raises(ValueError, match="two routes"):
        RouteTable([Route("A", "GET", "/x/{a}", handler, ""), Route("B", "GET", "/x/{b}", handler, "")],
                   params=PATH_PARAMS)


# --- the body: one rule for a client that goes away -----------------------------------------------------
def _receive(*messages: dict) -> Any:
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)
    return receive


def _request(*messages: dict, headers: Optional[list[tuple[bytes, bytes]]] = None) -> Request:
    scope = {"type": "http", "method": "POST", "headers": headers or [], "query_string": b"a=1&a=2&b="}

    async def send(message: dict) -> None:
        raise AssertionError("nothing is sent here")
    return Request(scope, _receive(*messages), send)


def test_a_body_cut_short_is_never_taken_for_a_whole_one() -> None:
    req = _request({"type": "http.request", "body": b"[1,", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected):
        asyncio.run(req.json())


def test_a_disconnect_before_any_body_byte_raises_too() -> None:
    with pytest.raises(ClientDisconnected):
        asyncio.run(_request({"type": "http.disconnect"}).body())


def test_whole_bodies_limits_and_the_query() -> None:
    req = _request({"type": "http.request", "body": b'{"a":', "more_body": True},
                   {"type": "http.request", "body": b"1}", "more_body": False})
    assert asyncio.run(req.json()) == {"a": 1}
    assert req.query == {"a": "2", "b": ""} and req.query_all["a"] == ["1", "2"]
    declared = _request(headers=[(b"content-length", b"2000000")])
    with pytest.raises(HTTPError) as caught:
        asyncio.run(declared.body())
    assert caught.value.status == 413 and caught.value.headers == {"connection": "close"}
    nested = _request({"type": "http.request", "body": b"[" * 100_000, "more_body": False})
    with pytest.raises(HTTPError) as too_deep:
        asyncio.run(nested.json())
    assert (too_deep.value.status, too_deep.value.code) == (422, 400)


def test_drain_stops_at_its_limit_and_at_a_disconnect() -> None:
    piece = {"type": "http.request", "body": b"x" * 10, "more_body": True}
    body = RequestBody(_receive(piece, piece, piece, {"type": "http.request", "body": b"", "more_body": False}))
    assert asyncio.run(body.drain(15)) is False and body.received == 20
    assert asyncio.run(RequestBody(_receive(piece, {"type": "http.disconnect"})).drain(100)) is False
    whole = RequestBody(_receive(piece, {"type": "http.request", "body": b"", "more_body": False}))
    assert asyncio.run(whole.drain(100)) is True and whole.done


# --- multipart (P2, R6) ---------------------------------------------------------------------------------
BOUNDARY = "b0undary"
TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _form(*parts: tuple[str, bytes], end: bool = True) -> bytes:
    out = b""
    for name, data in parts:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def _parse(body: bytes, piece: int = 7) -> tuple[bytes, MultipartStream]:
    stream = MultipartStream(TYPE)
    got = b"".join(b"".join(stream.feed(body[i:i + piece])) for i in range(0, len(body), piece))
    return got, stream


def test_the_first_data_part_streams_through_in_any_pieces() -> None:
    data = bytes(range(256)) * 40
    for piece in (1, 7, 4096):
        got, stream = _parse(_form(("other", b"no"), ("data", data), ("data", b"second")), piece)
        assert got == data and stream.incomplete() is None


def test_multipart_problems_are_422() -> None:
    for body, what in ((_form(("other", b"x")), "no data part"), (_form(("data", b"x" * 100), end=False)[:-40],
                                                                   "truncated")):
        _, stream = _parse(body)
        problem = stream.incomplete()
        assert problem is not None and (problem.status, problem.code) == (422, 400) and what in problem.msg
    for content_type in ("application/octet-stream", "multipart/form-data", None):
        with pytest.raises(HTTPError) as caught:
            MultipartStream(content_type)
        assert caught.value.status == 422
