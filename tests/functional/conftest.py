"""Shared fixtures for functional tests: a started ``LocalVSS`` and raw-HTTP helpers."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterator, Optional

import pytest
import requests

from mictlanx_sync.server.local import LocalVSS


class RouterAPI:
    """Raw HTTP against one router (and its peers) with ``requests``; no client code."""

    def __init__(self, url: str, peer_urls: dict[str, str]) -> None:
        self.url = url
        self.peer_urls = peer_urls
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, f"{self.url}{path}", **kwargs)

    def put_meta(self, bucket: str, key: str, data: bytes, rf: int = 1, update: bool = False,
                 **fields: Any) -> requests.Response:
        body = {"key": key, "size": len(data), "checksum": hashlib.sha256(data).hexdigest(),
                "replication_factor": rf, **fields}
        headers = {"Update": "1"} if update else {}
        return self("POST", f"/api/v4/buckets/{bucket}/metadata", json=body, headers=headers)

    def put(self, bucket: str, key: str, data: bytes, rf: int = 1, update: bool = False,
            **fields: Any) -> dict[str, Any]:
        """R5 then R7; asserts both succeed and returns the R7 body."""
        meta = self.put_meta(bucket, key, data, rf, update, **fields)
        assert meta.status_code == 200, meta.text
        group = meta.json()["tasks_ids"][0]
        resp = self("POST", f"/api/v4/buckets/data/{group}/chunked", data=data)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def peer_meta(self, peer_id: str, bucket: str, key: str) -> Optional[dict[str, Any]]:
        """P4 straight on one peer: the metadata, or None on 404."""
        resp = self.session.get(f"{self.peer_urls[peer_id]}/api/v4/buckets/{bucket}/metadata/{key}", timeout=10)
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return dict(resp.json()["metadata"])

    def holders(self, bucket: str, key: str) -> list[str]:
        return sorted(p for p in self.peer_urls if self.peer_meta(p, bucket, key) is not None)


def detail(resp: requests.Response) -> dict[str, Any]:
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), dict), body
    return dict(body["detail"])


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    """A started ``LocalVSS(peers=2)`` (thread mode), shared by one test module."""
    with LocalVSS(peers=2, health_interval=0.3) as instance:
        yield instance


@pytest.fixture()
def api(vss: LocalVSS) -> Iterator[RouterAPI]:
    helper = RouterAPI(vss.router_urls[0], vss.peer_urls)
    yield helper
    helper.close()


@pytest.fixture()
def bucket(request: pytest.FixtureRequest) -> str:
    """A bucket name unique to the test."""
    return "b" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
