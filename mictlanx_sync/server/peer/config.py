"""Peer settings (protocol §7): one dataclass, filled from the CLI or the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_PEER_ID = "mictlanx-peer-0"
DEFAULT_PORT = 25000
DEFAULT_MAX_BALL_SIZE = 10**9
DEFAULT_TASK_TTL = 600.0
DEFAULT_EXISTS_TTL = 60.0
DEFAULT_VERSION_GRACE = 300.0
DEFAULT_TOMBSTONE_GRACE = 604800.0
DEFAULT_GC_INTERVAL = 30.0
#: bytes of the file system kept free of ball data for the index, its WAL and deletes
#: (half is held as the ``index.sqlite3-reserve`` file that only deletes, metadata updates and GC may release)
DEFAULT_INDEX_HEADROOM = 8 * 1024 * 1024
#: seconds a phase-1 reservation is held for a task whose phase 2 has not started
DEFAULT_RESERVE_TIMEOUT = 30.0
#: the bytes one client may hold in reservations of not-yet-streaming tasks, as a fraction of the capacity;
#: 100% by default because behind a router every request comes from the router's address (one "client"),
#: so a lower default would throttle every router; set e.g. 50% for peers that clients reach directly
DEFAULT_MAX_RESERVED_FRACTION = 1.0
#: versions of at most this many bytes are kept in the index, not as files (docs/storage.md): the
#: largest ball whose row fits one 4 KiB index page whole (a 4096-byte one spills to an overflow
#: page and takes more disk than a file)
DEFAULT_INLINE_BALL_MAX = 4000


@dataclass
class PeerConfig:
    peer_id: str = DEFAULT_PEER_ID
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Optional[Path] = None
    capacity: Optional[int] = None
    max_ball_size: int = DEFAULT_MAX_BALL_SIZE
    task_ttl: float = DEFAULT_TASK_TTL
    exists_ttl: float = DEFAULT_EXISTS_TTL
    fsync: bool = True
    #: check every file of ``balls/`` against the index at start (the start-up is otherwise
    #: O(temp files + pending intents); docs/reliability.md "Listings at scale")
    fsck: bool = False
    #: seconds a superseded version stays readable by pinned reads (docs/consistency.md §1.2)
    version_grace: float = DEFAULT_VERSION_GRACE
    #: seconds a tombstone is kept; must exceed the longest outage a peer returns from with data
    tombstone_grace: float = DEFAULT_TOMBSTONE_GRACE
    #: seconds between two GC sweeps of superseded versions and tombstones
    gc_interval: float = DEFAULT_GC_INTERVAL
    #: see DEFAULT_INDEX_HEADROOM; 0 turns the headroom (and the reserve file) off
    index_headroom: int = DEFAULT_INDEX_HEADROOM
    #: see DEFAULT_RESERVE_TIMEOUT
    reserve_timeout: float = DEFAULT_RESERVE_TIMEOUT
    #: per-client cap of not-yet-streaming reservations in bytes (None: ``max_reserved_fraction`` of the capacity)
    max_reserved_per_client: Optional[int] = None
    max_reserved_fraction: float = DEFAULT_MAX_RESERVED_FRACTION
    #: see DEFAULT_INLINE_BALL_MAX; 0: every version is a file
    inline_ball_max: int = DEFAULT_INLINE_BALL_MAX
    root_path: str = ""
    log_level: str = "warning"
    #: bearer token every request except ``/health`` must carry (None: no authentication)
    token: Optional[str] = field(default=None, repr=False)
    #: the base URL clients reach this peer at (P21 ``advertise_url``; routers hand it out for
    #: direct reads); None: the routers' own address for it
    advertise_url: Optional[str] = None
    #: fault-injection spec (``server.faults``); None: the middleware is not installed
    faults: Optional[str] = None
    #: serve HTTPS with this certificate chain (PEM) and key (None: inside the certificate file);
    #: no certificate: plain HTTP (docs/tls.md)
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else Path("mictlanx-data") / self.peer_id

    def normalized_root_path(self) -> str:
        """``/prefix`` without a trailing slash, or ``""`` for none."""
        text = (self.root_path or "").strip().rstrip("/")
        if text and not text.startswith("/"):
            text = "/" + text
        return text
