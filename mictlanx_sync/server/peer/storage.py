"""Committed balls: one file per version plus an embedded SQLite index (protocol §3.1).

Layout under ``data_dir``::

    index.sqlite3        the index (WAL mode): balls and P19 nodes
    balls/{sha256(bucket@key)}.{task_id}   one file per committed version
    tmp/                 phase-2 uploads in progress

The index row is the single commit point: a version file becomes visible only when the
row naming it is written, and the file of the replaced version is unlinked afterwards.
All index access happens on the event-loop thread, so a check followed by a swap is atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...protocol.ids import new_task_id

log = logging.getLogger("mictlanx_sync.server.peer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS balls (
    bucket_id TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    tags TEXT NOT NULL, content_type TEXT NOT NULL, producer_id TEXT NOT NULL, ball_id TEXT NOT NULL,
    is_disabled INTEGER NOT NULL, task_id TEXT NOT NULL, file TEXT NOT NULL,
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS balls_by_ball_id ON balls (bucket_id, ball_id, key);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
"""
_COLUMNS = "bucket_id, key, size, checksum, tags, content_type, producer_id, ball_id, is_disabled, task_id, file"


@dataclass
class Ball:
    """One committed ball: the metadata of §2.3, its committing task id and its file name."""

    bucket_id: str
    key: str
    size: int
    checksum: str
    tags: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    producer_id: str = ""
    ball_id: str = ""
    is_disabled: bool = False
    task_id: str = ""
    file: str = ""

    def meta(self) -> dict[str, Any]:
        """The Metadata object (§2.3)."""
        return {
            "key": self.key, "size": self.size, "checksum": self.checksum, "tags": self.tags,
            "content_type": self.content_type, "producer_id": self.producer_id, "ball_id": self.ball_id,
            "bucket_id": self.bucket_id, "is_disabled": self.is_disabled,
        }

    def row(self) -> tuple[Any, ...]:
        return (self.bucket_id, self.key, self.size, self.checksum, json.dumps(self.tags), self.content_type,
                self.producer_id, self.ball_id, int(self.is_disabled), self.task_id, self.file)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Ball:
        return cls(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], bool(row[8]),
                   row[9], row[10])


def _window(start: int, end: int) -> tuple[int, int]:
    """``LIMIT, OFFSET`` for the ``[start:end]`` slice of §2.7 (``end <= 0``: to the end)."""
    if end > 0:
        return max(0, end - start), start
    return -1, start


class Storage:
    """Version files and the SQLite index of one peer."""

    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.balls_dir = self.data_dir / "balls"
        self.tmp_dir = self.data_dir / "tmp"
        self.fsync = fsync
        self.balls_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.data_dir / "index.sqlite3"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self.db.executescript(_SCHEMA)
        self.used = 0
        self.reconcile()

    def close(self) -> None:
        self.db.close()

    # --- files -------------------------------------------------------------------------
    def version_name(self, bucket_id: str, key: str, task_id: str) -> str:
        """``{sha256(bucket@key)}.{task_id}``, made unique if that name is taken."""
        digest = hashlib.sha256(f"{bucket_id}@{key}".encode()).hexdigest()
        name = f"{digest}.{task_id}"
        while (self.balls_dir / name).exists():
            name = f"{digest}.{task_id}.{new_task_id()}"
        return name

    def path(self, name: str) -> Path:
        return self.balls_dir / name

    def temp_path(self) -> Path:
        return self.tmp_dir / f"{new_task_id()}.part"

    def unlink(self, name: str) -> None:
        try:
            os.unlink(self.balls_dir / name)
        except FileNotFoundError:
            pass
        except OSError as exc:  # left for the next start-up reconcile
            log.warning("cannot remove %s: %s", name, exc)

    def reconcile(self) -> None:
        """Drop temp files, unreferenced version files and rows whose file is missing."""
        for entry in os.scandir(self.tmp_dir):
            _remove_quietly(entry.path)
        referenced = {row[0] for row in self.db.execute("SELECT file FROM balls")}
        present = {entry.name for entry in os.scandir(self.balls_dir)}
        for name in present - referenced:
            _remove_quietly(str(self.balls_dir / name))
        missing = referenced - present
        if missing:
            log.warning("dropping %d index rows whose file is missing", len(missing))
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM balls WHERE file = ?", [(name,) for name in missing])
            self.db.execute("COMMIT")
        self.used = int(self.db.execute("SELECT COALESCE(SUM(size), 0) FROM balls").fetchone()[0])

    # --- reads ---------------------------------------------------------------------------
    def get(self, bucket_id: str, key: str) -> Optional[Ball]:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM balls WHERE bucket_id = ? AND key = ?",
                              (bucket_id, key)).fetchone()
        return Ball.from_row(row) if row is not None else None

    def list_bucket(self, bucket_id: str, *, include_disabled: bool, after: Optional[str],
                    start: int, end: int) -> list[Ball]:
        where, params = ["bucket_id = ?"], [bucket_id]
        if after is not None:
            where.append("key > ?")
            params.append(after)
        return self._select(where, params, include_disabled, start, end)

    def list_all(self, *, include_disabled: bool, after: Optional[tuple[str, str]], start: int,
                 end: int) -> list[Ball]:
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            where.append("(bucket_id, key) > (?, ?)")
            params.extend(after)
        return self._select(where, params, include_disabled, start, end)

    def group(self, bucket_id: str, ball_id: str, *, include_disabled: bool) -> list[Ball]:
        return self._select(["bucket_id = ?", "ball_id = ?"], [bucket_id, ball_id], include_disabled, 0, 0)

    def count(self, *, include_disabled: bool) -> int:
        sql = "SELECT COUNT(*) FROM balls" + ("" if include_disabled else " WHERE is_disabled = 0")
        return int(self.db.execute(sql).fetchone()[0])

    def _select(self, where: list[str], params: list[Any], include_disabled: bool, start: int,
                end: int) -> list[Ball]:
        if not include_disabled:
            where = [*where, "is_disabled = 0"]
        limit, offset = _window(start, end)
        if limit == 0:
            return []
        sql = f"SELECT {_COLUMNS} FROM balls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY bucket_id, key LIMIT ? OFFSET ?"
        return [Ball.from_row(row) for row in self.db.execute(sql, (*params, limit, offset))]

    # --- writes (each one transaction) ------------------------------------------------------
    def put(self, ball: Ball) -> Optional[Ball]:
        """Insert or replace the row of ``ball``: the commit point. Returns the replaced ball."""
        old = self.get(ball.bucket_id, ball.key)
        self.db.execute(f"INSERT OR REPLACE INTO balls ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", ball.row())
        self.used += ball.size - (old.size if old is not None else 0)
        return old

    def update_meta(self, ball: Ball) -> None:
        """Replace the metadata of a committed ball, keeping its file and task id."""
        self.db.execute(
            "UPDATE balls SET tags = ?, content_type = ?, producer_id = ?, ball_id = ?, is_disabled = ? "
            "WHERE bucket_id = ? AND key = ?",
            (json.dumps(ball.tags), ball.content_type, ball.producer_id, ball.ball_id, int(ball.is_disabled),
             ball.bucket_id, ball.key))

    def disable(self, bucket_id: str, key: str) -> bool:
        cursor = self.db.execute("UPDATE balls SET is_disabled = 1 WHERE bucket_id = ? AND key = ?",
                                 (bucket_id, key))
        return cursor.rowcount > 0

    def delete(self, bucket_id: str, key: str) -> Optional[Ball]:
        """Remove the row, then the file (an open reader keeps its data)."""
        ball = self.get(bucket_id, key)
        if ball is None:
            return None
        self.db.execute("DELETE FROM balls WHERE bucket_id = ? AND key = ?", (bucket_id, key))
        self.used -= ball.size
        self.unlink(ball.file)
        return ball

    def delete_ball_id(self, bucket_id: str, ball_id: str) -> list[Ball]:
        balls = self.group(bucket_id, ball_id, include_disabled=True)
        if not balls:
            return []
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM balls WHERE bucket_id = ? AND ball_id = ?", (bucket_id, ball_id))
        self.db.execute("COMMIT")
        for ball in balls:
            self.used -= ball.size
            self.unlink(ball.file)
        return balls

    # --- P19 nodes -------------------------------------------------------------------------
    def put_node(self, node: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO nodes (id, body) VALUES (?, ?)", (node["id"], json.dumps(node)))

    def nodes(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self.db.execute("SELECT body FROM nodes ORDER BY id")]


def _remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return
        os.unlink(path)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

