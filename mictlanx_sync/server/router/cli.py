"""``mictlanx-sync router``: run a router in front of peers (protocol §P7)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from ...protocol.errors import ValidationError
from ...protocol.sizes import parse_size
from ...protocol.uri import parse
from ..faults import parse_spec
from ..limits import add_limit_arguments, limits_from_args
from ..tls import TLSSetupError, add_server_tls_arguments, peer_ssl_context, server_tls_from_args
from .config import RouterConfig
from .peers import PeerEntry


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    return os.environ.get(name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--router-id", default=_env("MICTLANX_ROUTER_ID", "mictlanx-router-0"))
    add("--host", default=_env("MICTLANX_ROUTER_HOST", "127.0.0.1"))
    add("--port", type=int, default=int(_env("MICTLANX_ROUTER_PORT", "60666") or 60666),
        help="0 lets the OS pick a free port")
    add("--data-dir", default=_env("MICTLANX_ROUTER_DATA_DIR"), help="default ./mictlanx-data/{router_id}")
    add("--peers", default=_env("MICTLANX_PEERS"),
        help="a MictlanX URI of peers, e.g. mictlanx://p0@127.0.0.1:24000 (plain http); "
             "mictlanx://p0@host:24000/?protocol=https reaches them over TLS [MICTLANX_PEERS]")
    add("--peer-ca-file", default=_env("MICTLANX_ROUTER_PEER_CA_FILE") or None, metavar="PEM",
        help="CA bundle the certificates of https peers are verified with [MICTLANX_ROUTER_PEER_CA_FILE] "
             "(default: the system's trusted CAs)")
    add("--health-interval", type=float, default=float(_env("MICTLANX_HEALTH_INTERVAL", "2") or 2))
    add("--unhealthy-threshold", type=int, default=int(_env("MICTLANX_UNHEALTHY_THRESHOLD", "3") or 3))
    add("--task-ttl", type=float, default=float(_env("MICTLANX_TASK_TTL", "600") or 600))
    add("--exists-ttl", type=float, default=float(_env("MICTLANX_EXISTS_TTL", "60") or 60))
    add("--peer-connect-timeout", type=float, default=5.0)
    add("--peer-read-timeout", type=float, default=120.0,
        help="longest silence of a peer while a data transfer is under way, seconds (default 120)")
    add("--peer-meta-timeout", type=float, default=float(_env("MICTLANX_ROUTER_PEER_META_TIMEOUT", "2") or 2),
        help="deadline of one metadata-sized peer call (P1, P4, P6/P7 silence, P8/P9, P11, P23, P24); a peer "
             "that misses it is marked unavailable at once; seconds [MICTLANX_ROUTER_PEER_META_TIMEOUT] "
             "(default 2)")
    add("--peer-first-byte-timeout", type=float,
        default=float(_env("MICTLANX_ROUTER_PEER_FIRST_BYTE_TIMEOUT", "2") or 2),
        help="a data read (P5) whose first byte has not come after this many seconds fails over to the next "
             "holder and marks the peer unavailable [MICTLANX_ROUTER_PEER_FIRST_BYTE_TIMEOUT] (default 2)")
    add("--fanout-grace", type=float, default=float(_env("MICTLANX_ROUTER_FANOUT_GRACE", "0.5") or 0.5),
        help="R3/R10/R11 lookups and R2/R12 listings answer this long after the first holder replied, "
             "counting silent peers as unavailable; also the hedging delay of data reads and of R5 "
             "placement; seconds [MICTLANX_ROUTER_FANOUT_GRACE] (default 0.5)")
    add("--piece-size", default="1MiB", help="relay piece size (size string)")
    add("--queue-depth", type=int, default=4, help="pieces queued per replica")
    add("--cache-size", default=_env("MICTLANX_ROUTER_CACHE", "0"), help="router cache (only 0 is supported)")
    add("--root-path", default=_env("MICTLANX_ROOT_PATH", ""))
    add("--token", default=_env("MICTLANX_ROUTER_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on every request but /health [MICTLANX_ROUTER_TOKEN]")
    add("--peer-token", default=_env("MICTLANX_PEER_TOKEN"),
        help="bearer token sent to the peers on every request [MICTLANX_PEER_TOKEN] "
             "(default: the token= of --peers, if any). Sent only to the peers of --peers (and to "
             "peers registered through R15/R17 by a request carrying 'Mictlanx-Peer-Token: TOKEN'), "
             "never to an address a request supplied")
    add("--faults", default=_env("MICTLANX_FAULTS"), metavar="SPEC",
        help="enable fault injection: a JSON list of rules or @file (testing only; see "
             "mictlanx_sync.server.faults) [MICTLANX_FAULTS]")
    add("--rebalance", default=_env("MICTLANX_REBALANCE", "auto"), choices=("auto", "manual"),
        help="auto: move balls whose placement changed when the peer set changes; manual: only on "
             "POST /api/v4/rebalance [MICTLANX_REBALANCE] (default auto)")
    add("--rebalance-grace", type=float, default=float(_env("MICTLANX_REBALANCE_GRACE", "300") or 300),
        help="an unavailable peer counts as gone after this many seconds [MICTLANX_REBALANCE_GRACE] (default 300)")
    add("--rebalance-settle", type=float, default=float(_env("MICTLANX_REBALANCE_SETTLE", "2") or 2),
        help="a peer-set change must last this long before a pass starts, seconds (default 2)")
    add("--rebalance-rf", type=int, default=int(_env("MICTLANX_REBALANCE_RF", "2") or 2),
        help="copies of a ball without a mictlanx_rf tag [MICTLANX_REBALANCE_RF] (default 2)")
    add("--rebalance-bytes-per-second", default=_env("MICTLANX_REBALANCE_BYTES_PER_SECOND", "50MiB"),
        help="copy throughput limit, a size string per second, 0 = unlimited "
             "[MICTLANX_REBALANCE_BYTES_PER_SECOND] (default 50MiB)")
    add("--rebalance-concurrency", type=int, default=int(_env("MICTLANX_REBALANCE_CONCURRENCY", "2") or 2),
        help="copies at once [MICTLANX_REBALANCE_CONCURRENCY] (default 2)")
    add("--rebalance-drop-surplus", default=_env("MICTLANX_REBALANCE_DROP_SURPLUS", "on"), choices=("on", "off"),
        help="on: once every new holder of a ball verified its copy, remove the copies left on holders outside "
             "its top-rf (needs peers that know Mictlanx-Drop-Current); off: leave them as surplus "
             "[MICTLANX_REBALANCE_DROP_SURPLUS] (default on)")
    add("--log-level", default=_env("MICTLANX_LOG_LEVEL", "WARNING"))
    add_server_tls_arguments(parser, "MICTLANX_ROUTER")
    add_limit_arguments(parser)


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise SystemExit(f"mictlanx-sync router: {name} must be > 0")
    return float(value)


def build_config(args: argparse.Namespace) -> RouterConfig:
    peers = []
    peer_token = args.peer_token or None
    if args.peers:
        for index, endpoint in enumerate(parse(args.peers, default_protocol="http")):
            peer_id = endpoint.id or f"mictlanx-peer-{index}"
            peers.append(PeerEntry(peer_id, endpoint.host, endpoint.port, endpoint.protocol))
            peer_token = peer_token or endpoint.token
    faults = args.faults or None
    if faults is not None:
        try:
            parse_spec(faults)
        except (ValueError, OSError) as exc:
            raise SystemExit(f"mictlanx-sync router: invalid --faults: {exc}") from None
    try:
        piece_size = parse_size(args.piece_size)
        cache_size = parse_size(args.cache_size or "0")
        rebalance_rate = parse_size(str(args.rebalance_bytes_per_second or "0"))
    except ValidationError as exc:
        raise SystemExit(f"mictlanx-sync router: {exc.message}") from None
    if cache_size:
        print("mictlanx-sync router: the router cache is not implemented; running without it", file=sys.stderr)
    if args.rebalance_drop_surplus not in ("on", "off"):  # argparse leaves a default from the environment unchecked
        raise SystemExit(f"mictlanx-sync router: invalid --rebalance-drop-surplus / MICTLANX_REBALANCE_DROP_SURPLUS: "
                         f"{args.rebalance_drop_surplus!r} (use on or off)")
    peer_ca_file = args.peer_ca_file or None
    if peer_ca_file is not None:
        try:
            peer_ssl_context(peer_ca_file)
        except TLSSetupError as exc:
            raise SystemExit(f"mictlanx-sync router: invalid --peer-ca-file: {exc}") from None
    data_dir = Path(args.data_dir) if args.data_dir else Path("mictlanx-data") / args.router_id
    return RouterConfig(
        router_id=args.router_id, data_dir=data_dir, peers=peers, health_interval=args.health_interval,
        unhealthy_threshold=args.unhealthy_threshold, task_ttl=args.task_ttl, exists_ttl=args.exists_ttl,
        peer_connect_timeout=args.peer_connect_timeout, peer_read_timeout=args.peer_read_timeout,
        peer_meta_timeout=_positive(args.peer_meta_timeout, "--peer-meta-timeout"),
        peer_first_byte_timeout=_positive(args.peer_first_byte_timeout, "--peer-first-byte-timeout"),
        fanout_grace=max(0.0, args.fanout_grace),
        piece_size=max(4096, piece_size), queue_depth=max(1, args.queue_depth), cache_size=0,
        root_path=args.root_path or "", token=args.token or None, peer_token=peer_token, faults=faults,
        rebalance_auto=args.rebalance == "auto", rebalance_grace=max(0.0, args.rebalance_grace),
        rebalance_settle=max(0.0, args.rebalance_settle), rebalance_rf=max(1, args.rebalance_rf),
        rebalance_bytes_per_second=float(rebalance_rate), rebalance_concurrency=max(1, args.rebalance_concurrency),
        rebalance_drop_surplus=args.rebalance_drop_surplus == "on",
        peer_ca_file=peer_ca_file,
    )


def run(args: argparse.Namespace) -> int:
    # The server stack (and the server extra) loads when the command runs, not to build --help.
    from ..serving import configure_logging, serve_forever, tune_malloc
    from .app import create_app

    tune_malloc()
    configure_logging(args.log_level)
    tls = server_tls_from_args(args, "mictlanx-sync router")
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"mictlanx-sync router: invalid --peers: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    return serve_forever(create_app(config), args.host, args.port, log_level=args.log_level,
                         limits=limits_from_args(args), tls=tls)
