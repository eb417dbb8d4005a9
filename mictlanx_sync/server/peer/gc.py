"""The background sweep of docs/consistency.md §4: superseded versions and old tombstones."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from . import versionstore
from .config import PeerConfig
from .storage import Storage

log = logging.getLogger("mictlanx_sync.server.peer")


class Swept(Protocol):
    """What the sweep needs of a peer (``PeerState``, which starts it)."""

    config: PeerConfig
    storage: Storage


def sweep_once(peer: Swept) -> tuple[int, int]:
    """One sweep on the event-loop thread (where all index access happens)."""
    config = peer.config
    storage = peer.storage
    removed = storage.essential(versionstore.sweep, storage, config.version_grace, config.tombstone_grace)
    storage.hold_reserve()  # re-held once space is back, even when nothing was swept
    return removed


async def run(peer: Swept) -> None:
    """Sweep every ``gc_interval`` seconds until cancelled; a failed sweep is logged and retried."""
    while True:
        await asyncio.sleep(peer.config.gc_interval)
        try:
            versions, tombstones = sweep_once(peer)
        except Exception:  # a full disk or a locked index must not end the loop
            log.exception("version GC failed")
            continue
        if versions or tombstones:
            log.info("GC removed %d superseded versions and %d tombstones", versions, tombstones)
