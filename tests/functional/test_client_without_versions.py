"""docs/consistency.md §5: our ``Client`` against a router that knows nothing of versions.

``VersionBlindRouter`` wraps our router so that it looks like upstream MictlanX's: it drops
every ``Mictlanx-*`` request header (no pins, no staging, no client versions), removes the
``version`` fields and headers from its answers, and answers R26 (commit) 404. The client
must still put, read, update and delete, reading unpinned and sending no commit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mictlanx_sync import Client

from .client_support import Cluster, new_client, send_error

pytestmark = pytest.mark.timeout(120)
CHUNK = 1000
_COMMIT = re.compile(r"/api/v4/buckets/[^/]+/[^/]+/commit$")


def _strip_versions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_versions(v) for k, v in value.items() if k != "version"}
    if isinstance(value, list):
        return [_strip_versions(v) for v in value]
    return value


class VersionBlindRouter:
    """ASGI middleware: the router as a client without the version extension sees it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hidden_headers = 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if not k.lower().startswith(b"mictlanx-")]
        self.hidden_headers += len(scope["headers"]) - len(headers)
        if scope["method"] == "POST" and _COMMIT.search(scope["path"]):
            await send_error(send, 404, "no route")
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                start["headers"] = [(k, v) for k, v in message.get("headers", [])
                                    if not k.lower().startswith(b"mictlanx-")]
                if dict(start["headers"]).get(b"content-type", b"").startswith(b"application/json"):
                    return  # rewritten once the body is complete
                await send(start)
                return
            if dict(start["headers"]).get(b"content-type", b"").startswith(b"application/json"):
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = json.dumps(_strip_versions(json.loads(b"".join(chunks) or b"null"))).encode()
                fixed = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                fixed.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": fixed})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app({**scope, "headers": headers}, receive, capture)


@pytest.fixture(scope="module")
def blind() -> Iterator[tuple[Cluster, list[VersionBlindRouter]]]:
    wrapped: list[VersionBlindRouter] = []

    def wrap(app: Any) -> Any:
        wrapped.append(VersionBlindRouter(app))
        return wrapped[-1]

    cluster = Cluster(peers=3, routers=1)
    cluster.router_wrap = wrap
    with cluster:
        yield cluster, wrapped


def test_client_works_against_a_router_without_versions(blind: tuple[Cluster, list[VersionBlindRouter]],
                                                       tmp_path: Path) -> None:
    cluster, wrapped = blind
    bucket = "blind"
    with new_client(cluster.uri(), tmp_path, capacity_storage="0") as client:
        assert isinstance(client, Client)
        first, second = os.urandom(5 * CHUNK + 3), os.urandom(3 * CHUNK)
        assert client.put(bucket, "obj", first, chunk_size=CHUNK, rf=2).unwrap()
        assert client.get(bucket, "obj").unwrap().data.tobytes() == first
        assert client.put(bucket, "obj", second, chunk_size=CHUNK, rf=2, update=True).unwrap()
        assert client.get(bucket, "obj").unwrap().data.tobytes() == second
        out = client.get_to_file(bucket, "obj", str(tmp_path / "out")).unwrap()
        assert Path(out).read_bytes() == second
        assert client.put(bucket, "obj", second, chunk_size=2 * CHUNK, rf=2).unwrap()  # identical: no-op
        assert client.delete(ball_id="obj", bucket_id=bucket).unwrap()
        assert client.get(bucket, "obj").is_err
    assert wrapped and wrapped[0].hidden_headers > 0  # the client did send its versions and pins
    # R5 named no version: the client saw a router without versions and sent no commit (R26).
    assert cluster.log.count(method="POST", path=r"/api/v4/buckets/[^/]+/[^/]+/commit") == 0
