"""Versions survive a crash, and a database from before versions is migrated (docs/consistency.md §1.2)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.functional.test_peer_server import LAYOUTS, assert_error, data_files, get, p1, p3, sha
from tests.functional.test_peer_versions import commit, delete, pinned, used, v, vput
from tests.support.servers import start_peer

pytestmark = pytest.mark.timeout(90)

_OLD_SCHEMA = """
CREATE TABLE balls (
    bucket_id TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    tags TEXT NOT NULL, content_type TEXT NOT NULL, producer_id TEXT NOT NULL, ball_id TEXT NOT NULL,
    is_disabled INTEGER NOT NULL, task_id TEXT NOT NULL, file TEXT NOT NULL,
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
CREATE INDEX balls_by_ball_id ON balls (bucket_id, ball_id, key);
CREATE TABLE nodes (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
"""


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_state_survives_sigkill(tmp_path: Path, layout: str) -> None:
    data_dir = tmp_path / "p"
    server = start_peer(data_dir, "peer-crash", *LAYOUTS[layout], fsync=True)
    try:
        url = server.url
        vput(url, "b", "cur", b"old", v(1))
        vput(url, "b", "cur", b"new", v(2))  # v1 superseded
        server.kill()
        server.restart()
        url = server.url
        assert get(url, "/buckets/b/cur").content == b"new"
        assert pinned(url, "b", "cur", v(1)).content == b"old"
        vput(url, "b", "obj_1", b"staged", v(3), staged=True, ball_id="obj")
        server.kill()
        server.restart()
        url = server.url
        assert_error(get(url, "/buckets/b/obj_1"), 404, 404)
        assert pinned(url, "b", "obj_1", v(3)).content == b"staged"
        assert delete(url, "/buckets/b/cur", **{"Mictlanx-Version": v(4)}).status_code == 200
        server.kill()
        server.restart()
        url = server.url
        assert get(url, "/buckets/b/cur").headers["Mictlanx-Tombstone"] == v(4)
        assert_error(p1(url, "b", "cur", b"late", headers={"Mictlanx-Version": v(3)}), 409, 409)
        assert pinned(url, "b", "cur", v(2)).content == b"new"
        vput(url, "b", "obj_0", b"zero", v(3), ball_id="obj")
        assert commit(url, "b", "obj", v(3)).json()["committed"] == 1
        server.kill()
        server.restart()
        url = server.url
        assert get(url, "/buckets/b/obj_1").content == b"staged"
        assert used(url) == len(b"old" + b"new" + b"staged" + b"zero")
        assert len(data_files(data_dir)) == 4
        # The peer's clock resumes after everything it stored: a new unversioned write wins.
        fresh = p1(url, "b", "cur", b"again")
        assert fresh.json()["version"] > v(4)
        assert p3(url, fresh.json()["task_id"], b"again").status_code == 201
        assert get(url, "/buckets/b/cur").content == b"again"
    finally:
        assert server.stop() == 0


def test_a_database_from_before_versions_is_migrated(tmp_path: Path) -> None:
    data_dir = tmp_path / "p"
    (data_dir / "balls").mkdir(parents=True)
    data = b"legacy bytes"
    (data_dir / "balls" / "legacyfile").write_bytes(data)
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        db.executescript(_OLD_SCHEMA)
        db.execute("INSERT INTO balls VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("b", "old", len(data), sha(data), json.dumps({"t": "v"}), "text/plain", "", "old", 0, "t1",
                    "legacyfile"))
    db.close()
    server = start_peer(data_dir, "peer-mig")
    try:
        url = server.url
        meta = get(url, "/buckets/b/metadata/old")
        assert meta.status_code == 200 and meta.json()["version"] == "" and meta.headers["Mictlanx-Version"] == ""
        assert meta.json()["metadata"]["tags"] == {"t": "v"} and get(url, "/buckets/b/old").content == data
        assert used(url) == len(data)
        vput(url, "b", "old", b"versioned", v(1))  # any version beats the legacy one
        assert pinned(url, "b", "old", "").status_code == 400  # "" is not a version id to pin to
        assert get(url, "/buckets/b/old").content == b"versioned"
    finally:
        assert server.stop() == 0
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(balls)")}
    db.close()
    assert "version" in columns
