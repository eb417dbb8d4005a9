"""Version files and the SQLite index of one peer (protocol §3.1, docs/consistency.md §1.2).

Layout under ``data_dir``::

    index.sqlite3        the index (WAL mode): current balls, other versions, tombstones, nodes,
                         and the bytes of small versions (table ``blobs``, docs/storage.md)
    balls/{sha256(bucket@key)}.{task_id}   one file per stored version (shared by the
                                           records of identical content of one key)
    tmp/                 phase-2 uploads in progress
    index.sqlite3-reserve  the held part of the index headroom: space only deletes, metadata
                         updates and GC may use when the file system is full (``essential``)

Tables: ``balls`` holds the *current* version of each key, ``versions`` the *staged* and
*superseded* ones, ``tombstones`` the versioned deletes (``versionstore`` implements their
rules). ``intents`` names the version files a crash could leave unnamed (renamed in, not yet
committed; freed, not yet unlinked) and ``meta`` the persisted ``used`` bytes and the
clean-shutdown mark, so a start checks ``tmp/`` and the intents, never every file of
``balls/`` (``reconcile``; the full ``fsck`` on request).

Small versions (at most ``inline_max`` bytes) have no file: their bytes are a row of
``blobs``, inserted in the same transaction as the record that names it, and a record's
``file`` is then ``inline:{blob rowid}`` (:data:`INLINE_PREFIX`). The same reference rules
hold for both kinds of name; an inline name no row names any more is deleted inside the
transaction that dropped its last record, so it needs no intent.

The index row is the single commit point: a version file becomes visible only when a row
naming it is written, and a file is unlinked only after the last row naming it is gone.
All index access happens on the event-loop thread, so a check followed by a swap is atomic,
and every multi-row change is one SQLite transaction (``Storage.change``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

from ...protocol.ids import new_task_id

log = logging.getLogger("mictlanx_sync.server.peer")

CURRENT, STAGED, SUPERSEDED = "current", "staged", "superseded"
RESERVE_FILE = "index.sqlite3-reserve"
#: SQLite's default WAL pages before an automatic checkpoint (used without a reserve)
WAL_AUTOCHECKPOINT = 1000


def wal_pages(reserve: int) -> int:
    """WAL pages between automatic checkpoints: the WAL (which SQLite reuses, never shrinks)
    stays within a quarter of the reserve, so on a full disk the released reserve holds its
    growth and the checkpoint's growth of the database file (256 pages, 1 MiB, by default)."""
    return WAL_AUTOCHECKPOINT if reserve <= 0 else max(16, min(WAL_AUTOCHECKPOINT, reserve // (4 * 4096)))
_SQLITE_FULL = 13
_T = TypeVar("_T")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT and for SQLite's "database or disk is full" (SQLITE_FULL)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc)
    return False

_SCHEMA = """
CREATE TABLE IF NOT EXISTS balls (
    bucket_id TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    tags TEXT NOT NULL, content_type TEXT NOT NULL, producer_id TEXT NOT NULL, ball_id TEXT NOT NULL,
    is_disabled INTEGER NOT NULL, task_id TEXT NOT NULL, file TEXT NOT NULL, version TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS balls_by_ball_id ON balls (bucket_id, ball_id, key);
CREATE TABLE IF NOT EXISTS versions (
    bucket_id TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    tags TEXT NOT NULL, content_type TEXT NOT NULL, producer_id TEXT NOT NULL, ball_id TEXT NOT NULL,
    is_disabled INTEGER NOT NULL, task_id TEXT NOT NULL, file TEXT NOT NULL, version TEXT NOT NULL,
    state TEXT NOT NULL, superseded_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_id, key, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS versions_by_ball_id ON versions (bucket_id, ball_id, state);
CREATE INDEX IF NOT EXISTS versions_by_file ON versions (file);
CREATE INDEX IF NOT EXISTS versions_by_expiry ON versions (state, superseded_at);
CREATE TABLE IF NOT EXISTS tombstones (
    scope TEXT NOT NULL, bucket_id TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (scope, bucket_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (created_at);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- A rowid table on purpose: a WITHOUT ROWID row over ~1000 bytes (a 4 KiB page) spills to an
-- overflow page of its own, and new rowids (max + 1) append, so leaf pages are filled whole.
CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
#: Created after the migration: ``balls.file`` lets a file's references be counted quickly; the
#: ``version`` indexes let ``max_version`` (run at every start) avoid scanning every row.
_LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS balls_by_file ON balls (file);
CREATE INDEX IF NOT EXISTS balls_by_version ON balls (version);
CREATE INDEX IF NOT EXISTS versions_by_version ON versions (version);
CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones (version);
"""
#: ``meta`` rows: the persisted ``used`` bytes, and the clean-shutdown mark (the ``balls/`` mtime at close)
META_USED, META_CLEAN = "used", "clean_close"
#: rows per keyset batch of a streamed listing
LIST_BATCH = 1000
COLUMNS = ("bucket_id, key, size, checksum, tags, content_type, producer_id, ball_id, is_disabled, task_id, file, "
           "version")
PLACEHOLDERS = ",".join("?" * 12)
#: a record's ``file`` naming bytes kept in the index (``blobs``) instead of a file of ``balls/``
INLINE_PREFIX = "inline:"
#: the largest ``inline_max`` accepted: inline bytes are held in memory until their commit
INLINE_MAX_CAP = 1024 * 1024


def is_inline(name: str) -> bool:
    """True when ``name`` (a record's ``file``) names a row of ``blobs``, not a file."""
    return name.startswith(INLINE_PREFIX)


def _blob_id(name: str) -> int:
    return int(name[len(INLINE_PREFIX):])


@dataclass
class Ball:
    """One stored version: the metadata of §2.3, its task id, file, version and state."""

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
    version: str = ""
    state: str = CURRENT

    @property
    def inline(self) -> bool:
        """The bytes are in the index (``Storage.blob``), not in ``balls/``."""
        return is_inline(self.file)

    def meta(self) -> dict[str, Any]:
        """The Metadata object (§2.3) plus ``version`` (``""`` for balls older than versions)."""
        return {
            "key": self.key, "size": self.size, "checksum": self.checksum, "tags": self.tags,
            "content_type": self.content_type, "producer_id": self.producer_id, "ball_id": self.ball_id,
            "bucket_id": self.bucket_id, "is_disabled": self.is_disabled, "version": self.version,
        }

    def row(self) -> tuple[Any, ...]:
        return (self.bucket_id, self.key, self.size, self.checksum, json.dumps(self.tags), self.content_type,
                self.producer_id, self.ball_id, int(self.is_disabled), self.task_id, self.file, self.version)

    @classmethod
    def from_row(cls, row: tuple[Any, ...], state: str = CURRENT) -> Ball:
        return cls(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], bool(row[8]),
                   row[9], row[10], row[11], state)


def _window(start: int, end: int) -> tuple[int, int]:
    """``LIMIT, OFFSET`` for the ``[start:end]`` slice of §2.7 (``end <= 0``: to the end)."""
    if end > 0:
        return max(0, end - start), start
    return -1, start


class Change:
    """The file bookkeeping of one transaction: capacity gained now, files to release after COMMIT."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.added = 0
        self.released: dict[str, int] = {}

    def store(self, data: bytes) -> str:
        """Insert ``data`` as a blob in this transaction; its name, for the record that names it.

        This transaction is its commit point: a crash before COMMIT leaves neither the blob nor
        the record (nothing to reconcile), after it both. No fsync of its own: the COMMIT's is it.
        """
        cursor = self.storage.db.execute("INSERT INTO blobs (data) VALUES (?)", (data,))
        return f"{INLINE_PREFIX}{cursor.lastrowid}"

    def attach(self, name: str, size: int) -> None:
        """Call before inserting a row naming ``name``: a file named for the first time counts as used
        (and its rename intent, if any, is settled by this transaction)."""
        if not self.storage.referenced(name):
            self.added += size
            self.storage.db.execute("DELETE FROM intents WHERE name = ?", (name,))

    def release(self, name: str, size: int) -> None:
        """A row naming ``name`` is removed: unlink it after COMMIT if no row names it any more."""
        self.released[name] = size


class Storage:
    """Version files and the SQLite index of one peer."""

    def __init__(self, data_dir: Path, *, fsync: bool = True, reserve: int = 0, fsck: bool = False,
                 inline_max: int = 0) -> None:
        self.data_dir = Path(data_dir)
        #: versions of at most this many bytes are kept in ``blobs``, not as files (0: none)
        self.inline_max = max(0, min(inline_max, INLINE_MAX_CAP))
        self.balls_dir = self.data_dir / "balls"
        self.tmp_dir = self.data_dir / "tmp"
        self.fsync = fsync
        #: size of the ``index.sqlite3-reserve`` file (0: none)
        self.reserve = max(0, reserve)
        self.reserve_path = self.data_dir / RESERVE_FILE
        self.balls_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.data_dir / "index.sqlite3"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self.db.execute("PRAGMA temp_store=MEMORY")  # no temporary files on a full disk
        self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages(self.reserve)}")
        self.db.executescript(_SCHEMA)
        self._migrate()
        self.db.executescript(_LATE_INDEXES)
        self.used = 0
        #: names unlinked after their intent row was committed; cleared in the next transaction
        self._cleared: list[str] = []
        #: what the last start-up did: "intents" (the fast path) or "fsck" (a full scan)
        self.startup = ""
        self.reconcile(full=fsck)
        self.hold_reserve()

    def _migrate(self) -> None:
        """Databases made before versions have no ``balls.version``: their balls are version ``""``."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(balls)")}
        if "version" not in columns:
            self.db.execute("ALTER TABLE balls ADD COLUMN version TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        """Record a clean shutdown: the ``balls/`` mtime, so the next start can tell that nothing
        touched the directory while the peer was down (else it runs the full scan)."""
        try:
            self._clear_intents()
            self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                            (META_CLEAN, str(self.balls_dir.stat().st_mtime_ns)))
        except (OSError, sqlite3.Error) as exc:  # the next start runs the full scan
            log.warning("cannot record a clean shutdown: %s", exc)
        self.db.close()

    # --- transactions ------------------------------------------------------------------------
    @contextmanager
    def change(self) -> Iterator[Change]:
        """BEGIN ... COMMIT (ROLLBACK on error); then account capacity and unlink released files."""
        change = Change(self)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cleared = len(self._cleared)
            if cleared:
                self.db.executemany("DELETE FROM intents WHERE name = ?", [(n,) for n in self._cleared[:cleared]])
            yield change
            # The files no row names any more are decided inside the transaction (nothing else
            # runs on this thread in between): each gets an intent row, so a crash between the
            # COMMIT and the unlink leaves a name the next start checks, not an orphan to hunt.
            freed = {name: size for name, size in change.released.items() if not self.referenced(name)}
            files = [name for name in freed if not is_inline(name)]
            if files:
                self.db.executemany("INSERT OR IGNORE INTO intents (name) VALUES (?)", [(n,) for n in files])
            # Inline bytes go with their last record, in this transaction: no window to cover.
            blobs = [(_blob_id(name),) for name in freed if is_inline(name)]
            if blobs:
                self.db.executemany("DELETE FROM blobs WHERE id = ?", blobs)
            delta = change.added - sum(freed.values())
            if delta:
                self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE name = ?",
                                (delta, META_USED))
            # A COMMIT that fails (SQLITE_FULL) leaves the transaction open: roll it back too,
            # or every later BEGIN would fail and the peer would be wedged.
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        del self._cleared[:cleared]
        self.used += delta
        for name in files:
            self.unlink(name)

    # --- the full-disk reserve -----------------------------------------------------------------
    def reserve_held(self) -> int:
        """The bytes ``index.sqlite3-reserve`` holds now (0 when released)."""
        try:
            return min(self.reserve, self.reserve_path.stat().st_size)
        except OSError:
            return 0

    def hold_reserve(self) -> bool:
        """(Re)create the reserve file with real blocks if missing and the file system has twice its size free."""
        if self.reserve == 0:
            if self.reserve_path.exists():  # left by a run with a headroom
                _remove_quietly(str(self.reserve_path))
            return True
        if self.reserve_held() >= self.reserve:
            return True
        try:
            if shutil.disk_usage(self.data_dir).free < 2 * self.reserve:
                return False
            fd = os.open(str(self.reserve_path), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                _allocate(fd, self.reserve)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot hold the index reserve %s: %s", self.reserve_path, exc)
            _remove_quietly(str(self.reserve_path))
            return False
        return True

    def release_reserve(self) -> bool:
        """Unlink ``index.sqlite3-reserve`` so the index can grow on a full disk; True if it held space."""
        if self.reserve_held() == 0:
            return False
        log.warning("file system full: releasing the index reserve (%d bytes) for an index change", self.reserve)
        _remove_quietly(str(self.reserve_path))
        return True

    def essential(self, operation: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run an index change that must work on a full disk (deletes, metadata updates, GC).

        When it fails for lack of space (it was rolled back), the reserve is released and it
        runs once more; afterwards the reserve is held again as soon as there is room.
        """
        try:
            result = operation(*args, **kwargs)
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc) or not self.release_reserve():
                raise
            result = operation(*args, **kwargs)
        self.hold_reserve()
        return result

    def referenced(self, name: str) -> bool:
        """True when a current or non-current record names the file ``name``."""
        return self.db.execute(
            "SELECT EXISTS(SELECT 1 FROM balls WHERE file = ?) OR EXISTS(SELECT 1 FROM versions WHERE file = ?)",
            (name, name)).fetchone()[0] == 1

    # --- files -------------------------------------------------------------------------
    def version_name(self, bucket_id: str, key: str, task_id: str) -> str:
        """``{sha256(bucket@key)}.{task_id}``, made unique if that name is taken."""
        digest = hashlib.sha256(f"{bucket_id}@{key}".encode()).hexdigest()
        name = f"{digest}.{task_id}"
        while (self.balls_dir / name).exists() or self.referenced(name):
            name = f"{digest}.{task_id}.{new_task_id()}"
        return name

    def path(self, name: str) -> Path:
        if is_inline(name):  # a caller that forgot Ball.inline: never open a made-up path
            raise ValueError(f"{name} is kept in the index, not in balls/")
        return self.balls_dir / name

    def inlines(self, size: int) -> bool:
        """True when a new version of ``size`` bytes is kept in the index (``blobs``)."""
        return self.inline_max > 0 and size <= self.inline_max

    def index_free(self) -> int:
        """Bytes of the index's free pages (reused by new rows before the file grows)."""
        pages = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(self.db.execute("PRAGMA page_size").fetchone()[0])

    def blob(self, name: str) -> Optional[bytes]:
        """The bytes of an inline version (None when no blob has that name any more)."""
        row = self.db.execute("SELECT data FROM blobs WHERE id = ?", (_blob_id(name),)).fetchone()
        return bytes(row[0]) if row is not None else None

    def temp_path(self) -> Path:
        return self.tmp_dir / f"{new_task_id()}.part"

    def intend(self, name: str) -> None:
        """Record, before a file is renamed into ``balls/`` as ``name``, that it may exist unnamed.

        The commit that names it (``Change.attach``) or the unlink of a failed upload settles the
        intent; a crash in between leaves the row, and the next start removes the file unless a
        record names it. Written with ``synchronous=NORMAL``: a process crash keeps it, and the
        next committed change (synced) makes it durable with everything before it; only a power
        loss in that window can leave an orphan file, which ``--fsck`` removes.
        """
        if self.fsync:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("INSERT OR IGNORE INTO intents (name) VALUES (?)", (name,))
        finally:
            if self.fsync:
                self.db.execute("PRAGMA synchronous=FULL")

    def unlink(self, name: str) -> None:
        try:
            os.unlink(self.balls_dir / name)
        except FileNotFoundError:
            pass
        except OSError as exc:  # its intent row stays: the next start-up retries
            log.warning("cannot remove %s: %s", name, exc)
            return
        self._cleared.append(name)

    def _clear_intents(self) -> None:
        if self._cleared:
            self.db.executemany("DELETE FROM intents WHERE name = ?", [(name,) for name in self._cleared])
            del self._cleared[:]

    def _meta(self, name: str) -> Optional[str]:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row is not None else None

    def reconcile(self, full: bool = False) -> None:
        """Start-up: O(files in ``tmp/`` + pending intents), never a scan of ``balls/``.

        Drops temp files and the intent files no record names. The full scan (:meth:`fsck`)
        runs only when asked (``full``, the peer's ``--fsck``), when the index has no persisted
        ``used`` (made by an older version), or when the last shutdown was clean but ``balls/``
        changed since (someone added or removed files while the peer was down).
        """
        for entry in os.scandir(self.tmp_dir):
            _remove_quietly(entry.path)
        pending = [row[0] for row in self.db.execute("SELECT name FROM intents")]
        for name in pending:
            if not self.referenced(name):
                _remove_quietly(str(self.balls_dir / name), missing_ok=True)
        clean = self._meta(META_CLEAN)
        used = self._meta(META_USED)
        touched = clean is not None and clean != str(self.balls_dir.stat().st_mtime_ns)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM intents")
        self.db.execute("DELETE FROM meta WHERE name = ?", (META_CLEAN,))  # a crash from now on is unclean
        self.db.execute("COMMIT")
        if full or used is None or touched:
            if touched:
                log.warning("balls/ changed while the peer was down: checking every file")
            self.fsck()
            return
        self.startup = "intents"
        self.used = int(used)

    def fsck(self) -> None:
        """The full check: drop files no record names and records whose file is missing; recount ``used``.

        Inline versions are checked against ``blobs``, not ``balls/`` (a blob no record names,
        or a record naming no blob, cannot come from a crash: both change in one transaction).
        """
        self.startup = "fsck"
        named = {row[0] for row in self.db.execute("SELECT file FROM balls UNION SELECT file FROM versions")}
        referenced = {name for name in named if not is_inline(name)}
        present = {entry.name for entry in os.scandir(self.balls_dir)}
        for name in present - referenced:
            _remove_quietly(str(self.balls_dir / name))
        missing = referenced - present
        blobs = {f"{INLINE_PREFIX}{row[0]}" for row in self.db.execute("SELECT id FROM blobs")}
        missing |= (named - referenced) - blobs
        self.db.execute("BEGIN")
        unnamed = blobs - named
        if unnamed:
            log.warning("dropping %d inline blobs no record names", len(unnamed))
            self.db.executemany("DELETE FROM blobs WHERE id = ?", [(_blob_id(name),) for name in unnamed])
        if missing:
            log.warning("dropping the index records of %d missing files", len(missing))
            for table in ("balls", "versions"):
                self.db.executemany(f"DELETE FROM {table} WHERE file = ?", [(name,) for name in missing])
        self.used = self.count_used()
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (META_USED, str(self.used)))
        self.db.execute("COMMIT")

    def count_used(self) -> int:
        """The bytes of every file named by some record, each file counted once."""
        return int(self.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM "
            "(SELECT file, size FROM balls UNION SELECT file, size FROM versions)").fetchone()[0])

    def max_version(self) -> str:
        """The largest version this peer stores or has a tombstone of (the clock observes it at start)."""
        row = self.db.execute("SELECT MAX(v) FROM (SELECT MAX(version) v FROM balls UNION ALL "
                              "SELECT MAX(version) FROM versions UNION ALL SELECT MAX(version) FROM tombstones)")
        return str(row.fetchone()[0] or "")

    # --- reads of current balls --------------------------------------------------------------
    def get(self, bucket_id: str, key: str) -> Optional[Ball]:
        row = self.db.execute(f"SELECT {COLUMNS} FROM balls WHERE bucket_id = ? AND key = ?",
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

    def scan(self, bucket_id: Optional[str], *, include_disabled: bool, after: Any, start: int,
             limit: Optional[int], batch: int = LIST_BATCH) -> Iterator[list[Ball]]:
        """The listing window of ``list_bucket`` (``bucket_id``) or ``list_all`` (None) in keyset batches.

        ``start`` rows are skipped once, then each batch continues strictly after the last row
        sent, so a listing never holds more than ``batch`` rows and each key comes at most once.
        Writes between batches are not isolated from it (it is no snapshot): a key written
        behind the cursor is missed, one ahead of it is listed. ``limit`` None: to the end.
        """
        offset, position, left = start, after, limit
        while left is None or left > 0:
            size = batch if left is None else min(batch, left)
            if bucket_id is not None:
                rows = self.list_bucket(bucket_id, include_disabled=include_disabled, after=position,
                                        start=offset, end=offset + size)
            else:
                rows = self.list_all(include_disabled=include_disabled, after=position, start=offset,
                                     end=offset + size)
            if rows:
                yield rows
            if len(rows) < size:
                return
            if left is not None:
                left -= len(rows)
            offset = 0
            last = rows[-1]
            position = last.key if bucket_id is not None else (last.bucket_id, last.key)

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
        sql = f"SELECT {COLUMNS} FROM balls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY bucket_id, key LIMIT ? OFFSET ?"
        return [Ball.from_row(row) for row in self.db.execute(sql, (*params, limit, offset))]

    # --- writes of current balls (each one transaction) --------------------------------------
    def put(self, ball: Ball, data: Optional[bytes] = None) -> Optional[Ball]:
        """Make ``ball`` current and drop the replaced one at once (an unversioned overwrite).

        Returns the replaced ball. Versioned commits use ``versionstore.commit_current``,
        which keeps the replaced version as superseded instead. ``data``: the bytes of an
        inline version, stored in this same transaction (``ball.file`` is set to its name).
        """
        with self.change() as change:
            if data is not None:
                ball.file = change.store(data)
            old = self.get(ball.bucket_id, ball.key)
            change.attach(ball.file, ball.size)
            self.db.execute(f"INSERT OR REPLACE INTO balls ({COLUMNS}) VALUES ({PLACEHOLDERS})", ball.row())
            if old is not None:
                change.release(old.file, old.size)
        return old

    def update_meta(self, ball: Ball) -> None:
        """Replace the metadata of a committed ball, keeping its file, task id and version."""
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
        """Remove the current row, then its file unless another record names it."""
        with self.change() as change:
            ball = self.get(bucket_id, key)
            if ball is None:
                return None
            self.db.execute("DELETE FROM balls WHERE bucket_id = ? AND key = ?", (bucket_id, key))
            change.release(ball.file, ball.size)
        return ball

    def delete_ball_id(self, bucket_id: str, ball_id: str) -> list[Ball]:
        with self.change() as change:
            balls = self.group(bucket_id, ball_id, include_disabled=True)
            self.db.execute("DELETE FROM balls WHERE bucket_id = ? AND ball_id = ?", (bucket_id, ball_id))
            for ball in balls:
                change.release(ball.file, ball.size)
        return balls

    # --- bulk loading (benchmarks and tests; not an API path) ---------------------------------
    def bulk_load(self, items: Iterable[tuple[Ball, bytes]], batch: int = 5000) -> int:
        """Write new current balls straight through this layer, ``batch`` per transaction.

        For filling a peer to millions of balls (``benchmarks/scale.py``), where the two HTTP
        phases per ball would take hours. It is *not* what the API does: no task, no capacity,
        existing-key or version check, no fsync of the files; the keys must be new. Each ball's
        file is written first and its row committed after, with the same intents as an upload,
        so a crash during a load leaves no unnamed file behind at the next start. Balls of at
        most ``inline_max`` bytes go to ``blobs`` in the rows' transaction, as on the API path.
        """
        loaded = 0
        pending: list[tuple[Ball, bytes]] = []
        for ball, data in items:
            digest = hashlib.sha256(f"{ball.bucket_id}@{ball.key}".encode()).hexdigest()
            ball.task_id = ball.task_id or new_task_id()
            ball.file = "" if self.inlines(len(data)) else f"{digest}.{ball.task_id}"  # "": inline, named at commit
            pending.append((ball, data))
            if len(pending) >= batch:
                loaded += self._load(pending)
                pending = []
        if pending:
            loaded += self._load(pending)
        return loaded

    def _load(self, pending: list[tuple[Ball, bytes]]) -> int:
        names = [(ball.file,) for ball, _ in pending if ball.file]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO intents (name) VALUES (?)", names)
        self.db.execute("COMMIT")
        for ball, data in pending:
            if ball.file:
                _write_file(self.balls_dir / ball.file, data)
        with self.change() as change:
            for ball, data in pending:
                if not ball.file:
                    ball.file = change.store(data)
            self.db.executemany(f"INSERT INTO balls ({COLUMNS}) VALUES ({PLACEHOLDERS})",
                                [ball.row() for ball, _ in pending])
            self.db.executemany("DELETE FROM intents WHERE name = ?", names)
            change.added += sum(ball.size for ball, _ in pending)
        return len(pending)

    # --- P19 nodes -------------------------------------------------------------------------
    def put_node(self, node: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO nodes (id, body) VALUES (?, ?)", (node["id"], json.dumps(node)))

    def nodes(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self.db.execute("SELECT body FROM nodes ORDER BY id")]


def _remove_quietly(path: str, missing_ok: bool = False) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            log.warning("cannot remove %s: it is gone", path)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def _allocate(fd: int, size: int) -> None:
    """Give ``fd`` ``size`` bytes of real blocks (a sparse file would reserve nothing)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    block = b"\0" * 65536
    written = 0
    while written < size:
        written += os.pwrite(fd, block[: size - written], written)


def fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
