"""Non-current versions and tombstones in the peer's index (docs/consistency.md §1.2, §2.3, §2.4, §4).

Every function that changes more than one row runs in one ``Storage.change()`` transaction,
so a crash leaves the old state or the new one. Files are shared between the records of one
key with identical content; ``Change.release`` unlinks a file only when no record names it.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .storage import COLUMNS, CURRENT, PLACEHOLDERS, STAGED, SUPERSEDED, Ball, Change, Storage

KEY, BALL_ID = "key", "ball_id"


# --- reads ---------------------------------------------------------------------------------------
def non_current(storage: Storage, bucket_id: str, key: str, version: str) -> Optional[Ball]:
    """The staged or superseded record of exactly ``version``, if any."""
    row = storage.db.execute(f"SELECT {COLUMNS}, state FROM versions WHERE bucket_id = ? AND key = ? AND version = ?",
                             (bucket_id, key, version)).fetchone()
    return Ball.from_row(row, row[12]) if row is not None else None


def find(storage: Storage, bucket_id: str, key: str, version: str) -> Optional[Ball]:
    """Exactly ``version`` of the key, whatever its state (a pinned read)."""
    current = storage.get(bucket_id, key)
    if current is not None and current.version == version:
        return current
    return non_current(storage, bucket_id, key, version)


def tombstone(storage: Storage, scope: str, bucket_id: str, name: str) -> str:
    """The version of the tombstone of a key or ball_id, ``""`` when there is none."""
    row = storage.db.execute("SELECT version FROM tombstones WHERE scope = ? AND bucket_id = ? AND name = ?",
                             (scope, bucket_id, name)).fetchone()
    return str(row[0]) if row is not None else ""


def tombstone_over(storage: Storage, bucket_id: str, key: str, ball_id: str) -> str:
    """The larger of the key's tombstone and its ball_id's tombstone (``""``: none)."""
    return max(tombstone(storage, KEY, bucket_id, key), tombstone(storage, BALL_ID, bucket_id, ball_id))


def hidden_by(storage: Storage, bucket_id: str, key: str) -> str:
    """The tombstone that explains why a key has no current version (``""``: none known).

    The key's own tombstone, else the ball_id tombstone of a ball_id that the key's other
    versions name, or that the chunk naming convention ``{ball_id}_{index}`` gives.
    """
    found = tombstone(storage, KEY, bucket_id, key)
    ball_ids = {key, key.rsplit("_", 1)[0]}
    ball_ids.update(row[0] for row in storage.db.execute(
        "SELECT DISTINCT ball_id FROM versions WHERE bucket_id = ? AND key = ?", (bucket_id, key)))
    for ball_id in ball_ids:
        found = max(found, tombstone(storage, BALL_ID, bucket_id, ball_id))
    return found


def records_of(storage: Storage, bucket_id: str, ball_id: str, state: str) -> list[Ball]:
    """The non-current records of one state whose ball_id is ``ball_id``."""
    rows = storage.db.execute(f"SELECT {COLUMNS}, state FROM versions WHERE bucket_id = ? AND ball_id = ? "
                              "AND state = ? ORDER BY key, version", (bucket_id, ball_id, state))
    return [Ball.from_row(row, row[12]) for row in rows]


def staged_of_key(storage: Storage, bucket_id: str, key: str) -> list[Ball]:
    rows = storage.db.execute(f"SELECT {COLUMNS}, state FROM versions WHERE bucket_id = ? AND key = ? "
                              "AND state = ?", (bucket_id, key, STAGED))
    return [Ball.from_row(row, row[12]) for row in rows]


def _tombstone_dicts(rows: Any) -> list[dict[str, str]]:
    return [{"scope": row[0], "name": row[1], "version": row[2]} for row in rows]


def tombstones_in_bucket(storage: Storage, bucket_id: str, after: Optional[str],
                         upto: Optional[str]) -> list[dict[str, str]]:
    """P6: key tombstones in ``(after, upto]`` (the window of the keys listed) and every ball_id tombstone."""
    where, params = ["scope = ?", "bucket_id = ?"], [KEY, bucket_id]
    if after is not None:
        where.append("name > ?")
        params.append(after)
    if upto is not None:
        where.append("name <= ?")
        params.append(upto)
    keys = storage.db.execute(f"SELECT scope, name, version FROM tombstones WHERE {' AND '.join(where)} "
                              "ORDER BY name", params)
    groups = storage.db.execute("SELECT scope, name, version FROM tombstones WHERE scope = ? AND bucket_id = ? "
                                "ORDER BY name", (BALL_ID, bucket_id))
    return _tombstone_dicts(keys) + _tombstone_dicts(groups)


def tombstones_of_ball_id(storage: Storage, bucket_id: str, ball_id: str) -> list[dict[str, str]]:
    """P7: the ball_id's tombstone and the key tombstones of ``{ball_id}`` and ``{ball_id}_*``."""
    prefix = f"{ball_id}_"
    rows = storage.db.execute(
        "SELECT scope, name, version FROM tombstones WHERE bucket_id = ? AND "
        "((scope = ? AND name = ?) OR (scope = ? AND (name = ? OR substr(name, 1, ?) = ?))) ORDER BY scope, name",
        (bucket_id, BALL_ID, ball_id, KEY, ball_id, len(prefix), prefix))
    return _tombstone_dicts(rows)


# --- writes ----------------------------------------------------------------------------------------
def _put_record(storage: Storage, change: Change, ball: Ball, state: str, now: float) -> None:
    """Insert (or replace) the non-current record of ``ball.version`` in ``state``."""
    previous = non_current(storage, ball.bucket_id, ball.key, ball.version)
    change.attach(ball.file, ball.size)
    storage.db.execute(f"INSERT OR REPLACE INTO versions ({COLUMNS}, state, superseded_at) "
                       f"VALUES ({PLACEHOLDERS}, ?, ?)", (*ball.row(), state, now if state == SUPERSEDED else 0.0))
    if previous is not None and previous.file != ball.file:
        change.release(previous.file, previous.size)


def _supersede_current(storage: Storage, change: Change, current: Ball, now: float) -> None:
    """Move the current record to ``versions`` as superseded (its file stays named).

    The new record is written before the old row goes, so the file is never unreferenced
    in between (``Change.attach`` would count it twice).
    """
    _put_record(storage, change, current, SUPERSEDED, now)
    storage.db.execute("DELETE FROM balls WHERE bucket_id = ? AND key = ?", (current.bucket_id, current.key))


def _mark_superseded(storage: Storage, record: Ball, now: float) -> None:
    storage.db.execute("UPDATE versions SET state = ?, superseded_at = ? WHERE bucket_id = ? AND key = ? "
                       "AND version = ?", (SUPERSEDED, now, record.bucket_id, record.key, record.version))


def _make_current(storage: Storage, change: Change, ball: Ball, now: float) -> None:
    """``ball`` becomes current; the replaced current (another version) becomes superseded."""
    change.attach(ball.file, ball.size)  # first: the rows below may name the same file
    old = storage.get(ball.bucket_id, ball.key)
    if old is not None and old.version != ball.version:
        _supersede_current(storage, change, old, now)
    elif old is not None:
        change.release(old.file, old.size)
    record = non_current(storage, ball.bucket_id, ball.key, ball.version)
    if record is not None:  # the version now lives in balls
        storage.db.execute("DELETE FROM versions WHERE bucket_id = ? AND key = ? AND version = ?",
                           (ball.bucket_id, ball.key, ball.version))
        change.release(record.file, record.size)
    storage.db.execute(f"INSERT OR REPLACE INTO balls ({COLUMNS}) VALUES ({PLACEHOLDERS})", ball.row())


def commit_current(storage: Storage, ball: Ball, data: Optional[bytes] = None) -> None:
    """Commit ``ball`` as the current version; the previous current stays readable, superseded.

    ``data``: the bytes of an inline version, stored in the same transaction (``ball.file``
    becomes its name), so the record and its bytes appear together or not at all.
    """
    with storage.change() as change:
        if data is not None:
            ball.file = change.store(data)
        _make_current(storage, change, ball, time.time())


def stage(storage: Storage, ball: Ball, data: Optional[bytes] = None) -> None:
    """Store ``ball`` as a staged version (visible only to pinned reads); ``data`` as in ``commit_current``."""
    with storage.change() as change:
        if data is not None:
            ball.file = change.store(data)
        _put_record(storage, change, ball, STAGED, time.time())


def _raise_tombstone(storage: Storage, scope: str, bucket_id: str, name: str, version: str, now: float) -> None:
    if version > tombstone(storage, scope, bucket_id, name):
        storage.db.execute("INSERT OR REPLACE INTO tombstones (scope, bucket_id, name, version, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (scope, bucket_id, name, version, now))


def _bury(storage: Storage, change: Change, currents: list[Ball], staged: list[Ball], version: str,
          now: float) -> list[Ball]:
    """Supersede the currents and staged records below ``version``; the currents removed."""
    removed = []
    for current in currents:
        if current.version < version:
            _supersede_current(storage, change, current, now)
            removed.append(current)
    for record in staged:
        if record.version < version:
            _mark_superseded(storage, record, now)
    return removed


def delete_key(storage: Storage, bucket_id: str, key: str, version: str) -> list[Ball]:
    """P8 with a version: tombstone D for the key; versions below D superseded. The currents removed."""
    now = time.time()
    with storage.change() as change:
        _raise_tombstone(storage, KEY, bucket_id, key, version, now)
        current = storage.get(bucket_id, key)
        return _bury(storage, change, [current] if current else [], staged_of_key(storage, bucket_id, key),
                     version, now)


def delete_ball_id(storage: Storage, bucket_id: str, ball_id: str, version: str) -> list[Ball]:
    """P9 with a version: tombstone D for the ball_id; its versions below D superseded."""
    now = time.time()
    with storage.change() as change:
        _raise_tombstone(storage, BALL_ID, bucket_id, ball_id, version, now)
        return _bury(storage, change, storage.group(bucket_id, ball_id, include_disabled=True),
                     records_of(storage, bucket_id, ball_id, STAGED), version, now)


def drop_current(storage: Storage, bucket_id: str, key: str, version: str) -> Optional[Ball]:
    """Drop-Current: the current version becomes superseded if it is exactly ``version``; no tombstone.

    The dropped record (None when ``version`` is not current, and then nothing changed). It stays
    readable by pinned reads for ``version_grace``, like any superseded version, so a read that
    chose this peer before the drop finishes; its file is freed by the GC after that.
    """
    now = time.time()
    with storage.change() as change:
        current = storage.get(bucket_id, key)
        if current is None or current.version != version:
            return None
        _supersede_current(storage, change, current, now)
        return current


def remove_versions(storage: Storage, records: list[Ball]) -> None:
    """Drop exactly these non-current records (Mictlanx-If-Version)."""
    with storage.change() as change:
        for record in records:
            storage.db.execute("DELETE FROM versions WHERE bucket_id = ? AND key = ? AND version = ?",
                               (record.bucket_id, record.key, record.version))
            change.release(record.file, record.size)


def commit_ball_id(storage: Storage, bucket_id: str, ball_id: str, version: str) -> tuple[int, int]:
    """P24: the three steps of docs/consistency.md §2.4 in one transaction; (committed, superseded)."""
    now = time.time()
    committed = superseded = 0
    with storage.change() as change:
        holding_version: set[str] = set()
        for record in records_of(storage, bucket_id, ball_id, STAGED):  # 1. promote staged V
            if record.version != version:
                continue
            holding_version.add(record.key)
            current = storage.get(bucket_id, record.key)
            high = max(current.version if current else "", tombstone_over(storage, bucket_id, record.key, ball_id))
            if version > high:
                superseded += 1 if current is not None else 0
                record.state = CURRENT
                _make_current(storage, change, record, now)
                committed += 1
            else:
                _mark_superseded(storage, record, now)
                superseded += 1
        for record in records_of(storage, bucket_id, ball_id, SUPERSEDED):
            if record.version == version:
                holding_version.add(record.key)
        for current in storage.group(bucket_id, ball_id, include_disabled=True):  # 2. leftover chunks
            if current.version == version:
                holding_version.add(current.key)
            elif current.version < version and current.key not in holding_version:
                _supersede_current(storage, change, current, now)
                superseded += 1
        for record in records_of(storage, bucket_id, ball_id, STAGED):  # 3. abandoned older puts
            if record.version < version:
                _mark_superseded(storage, record, now)
                superseded += 1
    return committed, superseded


def sweep(storage: Storage, version_grace: float, tombstone_grace: float,
          now: Optional[float] = None) -> tuple[int, int]:
    """GC (§4): drop superseded versions and tombstones past their grace; (versions, tombstones) removed."""
    now = time.time() if now is None else now
    rows = storage.db.execute(f"SELECT {COLUMNS}, state FROM versions WHERE state = ? AND superseded_at < ?",
                              (SUPERSEDED, now - version_grace)).fetchall()
    expired = [Ball.from_row(row, row[12]) for row in rows]
    if expired:
        remove_versions(storage, expired)
    cursor = storage.db.execute("DELETE FROM tombstones WHERE created_at < ?", (now - tombstone_grace,))
    return len(expired), cursor.rowcount
