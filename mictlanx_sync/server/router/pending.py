"""Pending deletes (hinted handoff), protocol §P4.6.

For every known peer that is unavailable when R13 or R14 runs, the router appends one
record to ``{data_dir}/pending-deletes.jsonl`` (flushed before it answers). When that peer
is available again, and at router start, the records are replayed (P8 with the recorded
preconditions, or P9) before anything else is routed to it. A 200, 404 or 412 completes a
record; any other outcome keeps it for the next check.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

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
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in self.records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def key_record(peer_id: str, bucket_id: str, key: str, if_match: Optional[str], task_id: Optional[str]) -> dict:
    return {"peer_id": peer_id, "bucket_id": bucket_id, "key": key, "if_match": if_match or ANY,
            "task_id": task_id}


def ball_record(peer_id: str, bucket_id: str, ball_id: str) -> dict:
    return {"peer_id": peer_id, "bucket_id": bucket_id, "ball_id": ball_id, "if_match": ANY, "task_id": None}


async def replay(delete: Callable[[str, dict[str, str]], Awaitable[int]], pending: PendingDeletes,
                 peer_id: str) -> bool:
    """Replay ``peer_id``'s records with ``delete(path, headers) -> status`` (raises
    ``peerio.PeerError`` on transport errors); True when none is left."""
    from .peerio import PeerError

    records = pending.for_peer(peer_id)
    if not records:
        return True
    done: list[dict[str, Any]] = []
    ok = True
    for record in records:
        bucket = record.get("bucket_id", "")
        try:
            if "ball_id" in record:
                status = await delete(f"/api/v4/buckets/{bucket}/bid/{record['ball_id']}", {})
            else:
                headers = {}
                if record.get("if_match") and record["if_match"] != ANY:
                    headers["If-Match"] = f'"{record["if_match"]}"'
                if record.get("task_id"):
                    headers["Task-Id"] = record["task_id"]
                status = await delete(f"/api/v4/buckets/{bucket}/{record['key']}", headers)
        except PeerError as exc:
            log.info("pending delete for %s not replayed yet: %s", peer_id, exc)
            ok = False
            break
        if status in (200, 404, 412):
            done.append(record)
        else:
            ok = False
    pending.complete(done)
    return ok
