"""Pending deletes and commits (hinted handoff), protocol §P4.6 and docs/consistency.md §2.3-2.4.

For every known peer that is unavailable when R13, R14 or R26 runs, the router appends one
record to ``{data_dir}/pending-deletes.jsonl`` (flushed before it answers). When that peer
is available again, and at router start, the records are replayed in journal order (P8 with
the recorded preconditions and version, P9, or P24) before anything else is routed to it.
A 200, 404 or 412 completes a delete record, a 200 or 404 a commit record; any other outcome
keeps it for the next check.

Records written before versions existed have no ``kind`` (they are deletes) and no
``version``: they replay exactly as before. A versioned delete replays as a tombstone at its
version, so it can never remove a write newer than itself.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from ...protocol.atomic_file import write_atomically
from ...protocol.versions import IF_VERSION_HEADER, VERSION_HEADER
from .peer_client import PeerError

log = logging.getLogger("mictlanx_sync.server.router")

ANY = "any"


class PendingDeletes:
    """The per-router journal of deletes owed to unavailable peers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("skipping a corrupt pending-delete record: %r", line[:200])
                continue
            if isinstance(record, dict) and isinstance(record.get("peer_id"), str):
                self.records.append(record)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` and flush them to disk before returning."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records.extend(records)

    def for_peer(self, peer_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["peer_id"] == peer_id]

    def has(self, peer_id: str) -> bool:
        return any(r["peer_id"] == peer_id for r in self.records)

    def complete(self, done: list[dict[str, Any]]) -> None:
        """Forget ``done`` (by identity) and rewrite the journal atomically."""
        if not done:
            return
        done_ids = {id(r) for r in done}
        self.records = [r for r in self.records if id(r) not in done_ids]
        lines = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in self.records)
        write_atomically(str(self.path), lines.encode("utf-8"))


COMMIT = "commit"


def _versions(version: Optional[str], if_version: Optional[str]) -> dict[str, str]:
    """Only the fields that are set, so unversioned records keep the old journal shape."""
    fields = {}
    if version:
        fields["version"] = version
    if if_version:
        fields["if_version"] = if_version
    return fields


def key_record(peer_id: str, bucket_id: str, key: str, if_match: Optional[str], task_id: Optional[str],
               version: Optional[str] = None, if_version: Optional[str] = None) -> dict:
    return {"peer_id": peer_id, "bucket_id": bucket_id, "key": key, "if_match": if_match or ANY,
            "task_id": task_id, **_versions(version, if_version)}


def ball_record(peer_id: str, bucket_id: str, ball_id: str, version: Optional[str] = None,
                if_version: Optional[str] = None) -> dict:
    return {"peer_id": peer_id, "bucket_id": bucket_id, "ball_id": ball_id, "if_match": ANY, "task_id": None,
            **_versions(version, if_version)}


def commit_record(peer_id: str, bucket_id: str, ball_id: str, version: str) -> dict:
    return {"peer_id": peer_id, "kind": COMMIT, "bucket_id": bucket_id, "ball_id": ball_id, "version": version}


def _request(record: dict[str, Any]) -> tuple[str, str, dict[str, str], tuple[int, ...]]:
    """The peer request that replays ``record``: method, path, headers, statuses that complete it."""
    bucket = record.get("bucket_id", "")
    headers: dict[str, str] = {}
    if record.get("version"):
        headers[VERSION_HEADER] = record["version"]
    if record.get("if_version"):
        headers[IF_VERSION_HEADER] = record["if_version"]
    if record.get("kind") == COMMIT:
        return "POST", f"/api/v4/buckets/{bucket}/{record['ball_id']}/commit", headers, (200, 404)
    if "ball_id" in record:
        return "DELETE", f"/api/v4/buckets/{bucket}/bid/{record['ball_id']}", headers, (200, 404, 412)
    if record.get("if_match") and record["if_match"] != ANY:
        headers["If-Match"] = f'"{record["if_match"]}"'
    if record.get("task_id"):
        headers["Task-Id"] = record["task_id"]
    return "DELETE", f"/api/v4/buckets/{bucket}/{record['key']}", headers, (200, 404, 412)


async def replay(send: Callable[[str, str, dict[str, str]], Awaitable[int]], pending: PendingDeletes,
                 peer_id: str) -> bool:
    """Replay ``peer_id``'s records in order with ``send(method, path, headers) -> status`` (raises
    :class:`~.peer_client.PeerError` on transport errors); True when none is left."""
    records = pending.for_peer(peer_id)
    if not records:
        return True
    done: list[dict[str, Any]] = []
    ok = True
    for record in records:
        method, path, headers, completes = _request(record)
        try:
            status = await send(method, path, headers)
        except PeerError as exc:
            log.info("pending record for %s not replayed yet: %s", peer_id, exc)
            ok = False
            break
        if status in completes:
            done.append(record)
        else:
            ok = False
    pending.complete(done)
    return ok
