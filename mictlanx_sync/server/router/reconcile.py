"""Which copy is true: reconciling versions and tombstones across peers (docs/consistency.md §2.2).

Ranking decides placement; versions decide truth. A key's answer is the highest version any
available peer holds, unless some peer reports a tombstone at or above it (a delete that
reached that peer while the holder of the stale copy was down). Legacy copies have version
``""``; among equal versions the highest-ranked peer wins, which is the spec's old rule.

Both R3's lookup and the listings answer early (:func:`.fanout.fan_out_early`): once a holder
replied, peers silent ``fanout_grace`` later are *late* and count as unavailable for this
request, exactly as if the registry had marked them down (docs/consistency.md §2.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from ..asgi.errors import HTTPError
from .fanout import Reply, fan_out_early, missing
from .peers import PeerEntry
from .placement import score
from .state import RouterState
from .versions import TOMBSTONE_HEADER, VERSION_HEADER, newest, observe_meta, reply_tombstone, reply_version


@dataclass
class Resolution:
    """The outcome of asking every available peer for one key (P4)."""

    #: the reply that wins (None: nothing visible), and the version it names
    best: Optional[Reply] = None
    version: str = ""
    #: peers whose answer names ``version``, in ranking order (the ones to read from)
    holders: list[PeerEntry] = field(default_factory=list)
    #: the highest tombstone any peer reported for the key (None: none)
    tombstone: Optional[str] = None
    failed: list[str] = field(default_factory=list)
    #: peers that did not answer within the grace: unavailable for this request
    late: list[str] = field(default_factory=list)


async def resolve(st: RouterState, bucket_id: str, key: str, pin: Optional[str] = None,
                  entries: Optional[list[PeerEntry]] = None,
                  extra_headers: Optional[dict[str, str]] = None) -> Resolution:
    """Ask ``entries`` (default: every available peer, ranked) for ``key`` in parallel (P4).

    Unpinned: the highest version wins unless a tombstone ≥ it was reported. Pinned: the first
    peer, in ranking order, that answers 200 for exactly ``pin``. ``extra_headers`` go with
    every P4 (R3's ``Mictlanx-Inline-Max``).
    """
    ranked = entries if entries is not None else st.ranked_available(bucket_id, key)
    headers = {**(extra_headers or {}), **({VERSION_HEADER: pin} if pin else {})} or None
    def decides(reply: Reply) -> bool:  # a holder (of the pinned version, when pinned)
        if reply.status != 200 or not isinstance(reply.body, dict):
            return False
        return pin is None or reply_version(reply, st.clock) == pin

    replies = await fan_out_early(st.registry, ranked, "GET", f"/buckets/{bucket_id}/metadata/{key}",
                                  decides=decides, headers=headers)
    result = Resolution()
    found: list[tuple[PeerEntry, Reply, str]] = []
    for entry, reply in zip(ranked, replies, strict=True):
        if reply.status == 200 and isinstance(reply.body, dict):
            found.append((entry, reply, reply_version(reply, st.clock)))
        elif reply.late:
            result.late.append(entry.peer_id)
        elif reply.failed:
            result.failed.append(entry.peer_id)
        else:
            result.tombstone = newest(result.tombstone, reply_tombstone(reply, st.clock))
    if pin is not None:
        found = [item for item in found if item[2] == pin]  # a peer without versions ignores the pin
    if not found:
        return result
    top = max(version for _, _, version in found)  # ``found`` is ranked: the first at ``top`` wins
    if result.tombstone is not None and result.tombstone >= top and pin is None:
        return result
    result.holders = [entry for entry, _, version in found if version == top]
    result.best = next(reply for _, reply, version in found if version == top)
    result.version = top
    return result


def not_found(st: RouterState, res: Resolution, what: str, **extra: Any) -> HTTPError:
    """The §4.3 outcome for a key nothing visible holds, naming the hiding tombstone if any."""
    error = missing(st.registry, res.failed, what, late=res.late, **extra)
    if res.tombstone is not None:
        error.headers[TOMBSTONE_HEADER] = res.tombstone
    return error


# --- listings (R2, R12) ---------------------------------------------------------------------
@dataclass
class Tombstones:
    """Tombstones reported in P6/P7 answers (``include_tombstones=1``), highest per id."""

    keys: dict[str, str] = field(default_factory=dict)
    balls: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, ident: Any, version: Any) -> None:
        if not isinstance(ident, str) or not isinstance(version, str) or not version:
            return
        table = self.balls if kind == "ball" else self.keys
        table[ident] = newest(table.get(ident), version) or version

    def absorb(self, raw: Any) -> None:
        """Accept the peer's ``tombstones`` field: a list of ``{"scope": "key"|"ball_id", "name",
        "version"}`` objects (what our peer sends; ``{key|ball_id, version}`` is read too), or
        ``{"keys": {key: v}, "ball_ids": {ball_id: v}}``."""
        if isinstance(raw, dict):
            for name, kind in (("keys", "key"), ("ball_ids", "ball"), ("balls", "ball")):
                table = raw.get(name)
                if isinstance(table, dict):
                    for ident, version in table.items():
                        self.add(kind, ident, version)
            return
        if not isinstance(raw, list):
            return
        for item in raw:
            if not isinstance(item, dict):
                continue
            kind = str(item.get("scope", item.get("kind", "")))
            if kind in ("ball", "ball_id", "bid") or (not kind and "ball_id" in item and "key" not in item):
                self.add("ball", item.get("name", item.get("ball_id")), item.get("version"))
            else:
                self.add("key", item.get("name", item.get("key")), item.get("version"))

    def hides(self, meta: dict, version: str) -> bool:
        """True when a tombstone of the key or of its ``ball_id`` is at or above ``version``."""
        key_stone = self.keys.get(str(meta.get("key")))
        ball_stone = self.balls.get(str(meta.get("ball_id") or meta.get("key")))
        stone = newest(key_stone, ball_stone)
        return stone is not None and stone >= version


def _better(candidate: tuple[str, str], current: tuple[str, str], bucket_id: str, key: str) -> bool:
    """Higher version first, then the higher-ranked peer (the spec's rule among equals)."""
    (cand_version, cand_peer), (cur_version, cur_peer) = candidate, current
    if cand_version != cur_version:
        return cand_version > cur_version
    return (-score(cand_peer, bucket_id, key), cand_peer) < (-score(cur_peer, bucket_id, key), cur_peer)


def listing_decides(reply: Reply) -> bool:
    """A listing that shows something: it starts the grace of a listing fan-out."""
    return reply.status == 200 and isinstance(reply.body, dict) and bool(reply.body.get("balls"))


def merge_listings(st: RouterState, bucket_id: str, replies: Iterable[Reply]) -> tuple[list[dict], list[str]]:
    """Merge P6/P7 answers: one Metadata per key, its highest version, minus tombstoned keys.

    Returns the visible balls (unsorted) and the peers whose listing answered 200.
    """
    best: dict[str, tuple[str, str, dict]] = {}  # key -> (version, peer_id, meta)
    stones = Tombstones()
    answered: list[str] = []
    for reply in replies:
        if reply.status != 200 or not isinstance(reply.body, dict) or not isinstance(reply.body.get("balls"), list):
            continue
        answered.append(reply.peer_id)
        stones.absorb(reply.body.get("tombstones"))
        for meta in reply.body["balls"]:
            if not isinstance(meta, dict) or not isinstance(meta.get("key"), str):
                continue
            key, version = meta["key"], observe_meta(meta, st.clock)
            current = best.get(key)
            if current is None or _better((version, reply.peer_id), current[:2], bucket_id, key):
                best[key] = (version, reply.peer_id, meta)
    for version in (*stones.keys.values(), *stones.balls.values()):
        st.clock.observe(version)
    visible = [meta for version, _, meta in best.values() if not stones.hides(meta, version)]
    return visible, answered
