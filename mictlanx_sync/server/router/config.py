"""The router's configuration (protocol §7, docs/reliability.md "Limits and timeouts")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..units import MIB
from .peers import PeerEntry


@dataclass
class RouterConfig:
    router_id: str = "mictlanx-router-0"
    data_dir: Path = Path("./mictlanx-data/mictlanx-router-0")
    peers: list[PeerEntry] = field(default_factory=list)
    health_interval: float = 2.0
    unhealthy_threshold: int = 3
    task_ttl: float = 600.0
    exists_ttl: float = 60.0
    peer_connect_timeout: float = 5.0
    peer_read_timeout: float = 120.0
    piece_size: int = MIB
    queue_depth: int = 4
    cache_size: int = 0
    root_path: str = ""
    #: bearer token clients must send (None: no authentication); ``/health`` stays open
    token: Optional[str] = field(default=None, repr=False)
    #: bearer token sent to the trusted peers (configured ones, see ``registry``), never to an
    #: address a request supplied without proving it knows this token
    peer_token: Optional[str] = field(default=None, repr=False)
    #: issue 12 point 4 (docs/reliability.md "Limits and timeouts"): deadline of one
    #: metadata-sized peer call (P1, P4, P6/P7, P8/P9, P11, P23, P24, ...), seconds
    peer_meta_timeout: float = 2.0
    #: a data read (P5) whose first body byte has not arrived after this many seconds fails over
    peer_first_byte_timeout: float = 2.0
    #: fan-outs (R3, R10/R11's lookup, R2, R12) answer this long after the first holder replied,
    #: counting the peers still silent as unavailable; also the hedging delay of data reads and
    #: of R5's placement
    fanout_grace: float = 0.5
    #: fault-injection spec (``server.faults``); None: the middleware is not installed
    faults: Optional[str] = None
    #: read peer data (P5) with the lean client of ``rawhttp``; 0 in ``MICTLANX_ROUTER_RAW_READS`` uses httpx
    raw_reads: bool = field(default_factory=lambda: os.environ.get("MICTLANX_ROUTER_RAW_READS", "1") != "0")
    #: every other peer request (fan-out calls, P3 uploads, health checks, pending deletes, repair)
    #: with the lean client too; 0 in ``MICTLANX_ROUTER_RAW_WRITES`` uses httpx (an escape hatch).
    raw_writes: bool = field(default_factory=lambda: os.environ.get("MICTLANX_ROUTER_RAW_WRITES", "1") != "0")
    #: issue 16 rebalancing (``rebalance``, docs/rebalancing.md): plan on peer-set changes
    rebalance_auto: bool = True
    #: an unavailable peer counts as gone after this many seconds
    rebalance_grace: float = 300.0
    #: a peer-set change must be stable this long before a pass starts, seconds
    rebalance_settle: float = 2.0
    #: copies per ball when it has no ``mictlanx_rf`` tag
    rebalance_rf: int = 2
    #: copied bytes per second (0: unlimited) and copies at once
    rebalance_bytes_per_second: float = 50 * MIB
    rebalance_concurrency: int = 2
    #: once every target of a ball verified its version, remove that version from the holders
    #: outside the targets (peer P8 with Mictlanx-Drop-Current); False leaves them as ``surplus``
    rebalance_drop_surplus: bool = True
    #: the CA bundle (PEM) https peers' certificates are verified with; None: the system's
    #: trusted CAs (docs/tls.md)
    peer_ca_file: Optional[str] = None
