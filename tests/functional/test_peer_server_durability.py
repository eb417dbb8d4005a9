"""Crash safety of the peer (protocol §3.1): SIGKILL after and during writes, reconcile at start."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.functional.test_peer_server import API, LAYOUTS, TIMEOUT, assert_error, data_files, get, put, sha
from tests.support.servers import start_peer

PIECE = 1024 * 1024


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_committed_ball_survives_sigkill(tmp_path: Path, layout: str) -> None:
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-d", *LAYOUTS[layout], fsync=True)
    try:
        data = os.urandom(5 * PIECE + 3)
        put(server.url, "b", "durable", data, tags={"a": "b"})
        put(server.url, "b", "off", b"disabled", is_disabled=True)
        server.kill()
        server.restart()
        response = get(server.url, "/buckets/b/durable")
        assert response.status_code == 200
        assert sha(response.content) == sha(data) and response.headers["ETag"] == f'"{sha(data)}"'
        assert get(server.url, "/buckets/b/metadata/durable").json()["metadata"]["tags"] == {"a": "b"}
        assert get(server.url, "/buckets/b/metadata/off").json()["metadata"]["is_disabled"] is True
        assert get(server.url, "/stats").json()["used_disk"] == len(data) + 8
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_sigkill_during_phase2_leaves_nothing(tmp_path: Path, layout: str) -> None:
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-k", *LAYOUTS[layout], fsync=True)
    try:
        put(server.url, "b", "keep", b"committed before")
        size = 200 * PIECE
        piece = os.urandom(PIECE)
        digest = hashlib.sha256()
        for _ in range(200):
            digest.update(piece)
        body = {"key": "big", "size": size, "checksum": digest.hexdigest()}
        task_id = requests.post(f"{server.url}{API}/buckets/b/metadata", json=body, timeout=TIMEOUT).json()["task_id"]
        seen_temp = [False]

        def pieces() -> Iterator[bytes]:
            for i in range(200):
                if i == 80:
                    seen_temp[0] = any((data_dir / "tmp").iterdir())
                    server.kill()  # SIGKILL in the middle of the upload
                yield piece

        with pytest.raises(requests.RequestException):
            requests.post(f"{server.url}{API}/buckets/data/{task_id}/chunked", data=pieces(), timeout=TIMEOUT)
        assert seen_temp[0], "the upload had a temp file when the peer was killed"
        server.start(server.port or 0)
        assert_error(get(server.url, "/buckets/b/metadata/big"), 404, 404)
        assert get(server.url, "/buckets/b/keep").content == b"committed before"
        assert get(server.url, "/balls/len?include_disabled=1").json() == {"len": 1}
        assert not any((data_dir / "tmp").iterdir())
        assert len(data_files(data_dir)) == 1
    finally:
        assert server.stop() == 0


def test_reconcile_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-r", *LAYOUTS["files"])  # a version file removed by hand
    try:
        put(server.url, "b", "k1", b"one")
        put(server.url, "b", "k2", b"two")
        assert server.stop() == 0
        (data_dir / "tmp" / "leftover.part").write_bytes(b"partial")
        (data_dir / "balls" / ("0" * 64 + ".orphan")).write_bytes(b"orphan")
        with sqlite3.connect(data_dir / "index.sqlite3") as db:
            (name,) = db.execute("SELECT file FROM balls WHERE key = 'k2'").fetchone()
        db.close()
        os.unlink(data_dir / "balls" / name)
        server.start(0)
        assert get(server.url, "/buckets/b/k1").content == b"one"
        assert_error(get(server.url, "/buckets/b/metadata/k2"), 404, 404)
        assert get(server.url, "/stats/ufs").json()["used_disk"] == 3
        assert not any((data_dir / "tmp").iterdir())
        assert len(data_files(data_dir)) == 1
    finally:
        assert server.stop() == 0
