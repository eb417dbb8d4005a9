"""``mictlanx-sync peer``: options of protocol §7, each with its environment variable."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from ...protocol.direct import is_base_url
from ...protocol.errors import ValidationError
from ...protocol.ids import is_valid_id
from ...protocol.sizes import parse_size
from ..faults import parse_spec
from ..limits import add_limit_arguments, limits_from_args
from ..tls import ServerTLS, add_server_tls_arguments, server_tls_from_args
from . import config as cfg
from .storage import INLINE_MAX_CAP


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--peer-id", default=_env("MICTLANX_PEER_ID", cfg.DEFAULT_PEER_ID),
        help="peer id [MICTLANX_PEER_ID] (default mictlanx-peer-0)")
    add("--host", default=_env("MICTLANX_PEER_HOST", "127.0.0.1"), help="bind address [MICTLANX_PEER_HOST]")
    add("--port", default=_env("MICTLANX_PEER_PORT", str(cfg.DEFAULT_PORT)),
        help="port, 0 = any free port [MICTLANX_PEER_PORT] (default 25000)")
    add("--data-dir", default=_env("MICTLANX_PEER_DATA_DIR", None),
        help="data directory [MICTLANX_PEER_DATA_DIR] (default ./mictlanx-data/{peer_id})")
    add("--capacity", default=_env("MICTLANX_PEER_CAPACITY", None),
        help="storage capacity, a size string [MICTLANX_PEER_CAPACITY] (default: the file system size)")
    add("--max-ball-size", default=_env("MICTLANX_PEER_MAX_BALL_SIZE", "1GB"),
        help="largest accepted ball [MICTLANX_PEER_MAX_BALL_SIZE] (default 1GB)")
    add("--task-ttl", default=_env("MICTLANX_TASK_TTL", str(cfg.DEFAULT_TASK_TTL)),
        help="seconds a pending task lives [MICTLANX_TASK_TTL] (default 600)")
    add("--exists-ttl", default=_env("MICTLANX_EXISTS_TTL", str(cfg.DEFAULT_EXISTS_TTL)),
        help="seconds an exists:true task lives [MICTLANX_EXISTS_TTL] (default 60)")
    add("--version-grace", default=_env("MICTLANX_PEER_VERSION_GRACE", str(cfg.DEFAULT_VERSION_GRACE)),
        help="seconds a superseded version stays readable by pinned reads [MICTLANX_PEER_VERSION_GRACE] "
             "(default 300)")
    add("--tombstone-grace", default=_env("MICTLANX_PEER_TOMBSTONE_GRACE", str(cfg.DEFAULT_TOMBSTONE_GRACE)),
        help="seconds a delete's tombstone is kept [MICTLANX_PEER_TOMBSTONE_GRACE] (default 604800, 7 days)")
    add("--gc-interval", default=_env("MICTLANX_PEER_GC_INTERVAL", str(cfg.DEFAULT_GC_INTERVAL)),
        help="seconds between sweeps of expired versions and tombstones [MICTLANX_PEER_GC_INTERVAL] (default 30)")
    add("--index-headroom", default=_env("MICTLANX_PEER_INDEX_HEADROOM", "8MiB"),
        help="free space kept from ball data for the index, its WAL and deletes on a full disk; half of it is "
             "held as the file index.sqlite3-reserve, released only to let deletes, metadata updates and GC proceed "
             "[MICTLANX_PEER_INDEX_HEADROOM] (default 8MiB; 0 turns it off)")
    add("--reserve-timeout", default=_env("MICTLANX_PEER_RESERVE_TIMEOUT", str(cfg.DEFAULT_RESERVE_TIMEOUT)),
        help="seconds a phase-1 reservation is held while the task's phase 2 has not started; the task "
             "itself lives --task-ttl, and its phase 2 re-checks the capacity [MICTLANX_PEER_RESERVE_TIMEOUT] "
             "(default 30)")
    add("--max-reserved-per-client", default=_env("MICTLANX_PEER_MAX_RESERVED_PER_CLIENT", "100%"),
        help="bytes one client address may hold in reservations of tasks whose phase 2 has not started, a size "
             "or a percentage of the capacity; a client's first such reservation is always allowed; behind a "
             "router all clients share the router's address unless it forwards Mictlanx-Client (trusted only "
             "with --token) [MICTLANX_PEER_MAX_RESERVED_PER_CLIENT] (default 100%%; e.g. 50%% for a peer "
             "clients reach directly)")
    add("--inline-ball-max", default=_env("MICTLANX_PEER_INLINE_BALL_MAX", str(cfg.DEFAULT_INLINE_BALL_MAX)),
        help="versions of at most this size are stored in the index (SQLite) instead of one file each: "
             "less disk per small ball and one fsync per write; at most 1MiB [MICTLANX_PEER_INLINE_BALL_MAX] "
             f"(default {cfg.DEFAULT_INLINE_BALL_MAX}, the largest that fits one index page; 0 turns it off)")
    add("--fsync", dest="fsync", action="store_true", default=_env_bool("MICTLANX_FSYNC", True),
        help="fsync every committed ball [MICTLANX_FSYNC] (default on)")
    add("--no-fsync", dest="fsync", action="store_false", help="do not fsync committed balls")
    add("--fsck", action="store_true", default=_env_bool("MICTLANX_PEER_FSCK", False),
        help="at start, check every version file against the index (removes orphans, drops records of "
             "missing files); off by default: a start only checks temp files and pending intents [MICTLANX_PEER_FSCK]")
    add("--root-path", default=_env("MICTLANX_ROOT_PATH", ""),
        help="also serve every route under this prefix [MICTLANX_ROOT_PATH]")
    add("--advertise-url", default=_env("MICTLANX_PEER_ADVERTISE_URL", None), metavar="URL",
        help="the base URL clients reach this peer at, e.g. http://10.0.0.5:25000 (behind NAT or in a "
             "container); routers hand it out for direct reads. Default: the address the router uses "
             "[MICTLANX_PEER_ADVERTISE_URL]")
    add("--token", default=_env("MICTLANX_PEER_TOKEN", None),
        help="require 'Authorization: Bearer TOKEN' on every request but /health [MICTLANX_PEER_TOKEN]")
    add("--faults", default=_env("MICTLANX_FAULTS", None), metavar="SPEC",
        help="enable fault injection: a JSON list of rules or @file (testing only; see "
             "mictlanx_sync.server.faults) [MICTLANX_FAULTS]")
    add("--log-level", default=_env("MICTLANX_LOG_LEVEL", "warning"),
        choices=["critical", "error", "warning", "info", "debug"], type=str.lower,
        help="log level [MICTLANX_LOG_LEVEL] (default warning; info logs every request)")
    add_server_tls_arguments(parser, "MICTLANX_PEER")
    add_limit_arguments(parser)


def _parse(option: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    try:
        return parse(value)
    except (ValueError, ValidationError) as exc:
        raise SystemExit(f"mictlanx-sync peer: invalid {option}: {value!r} ({exc})") from None


def _seconds(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _port(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("out of range")
    return number


def _size(value: Any) -> int:
    number = parse_size(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _inline_max(value: Any) -> int:
    number = _size(value)
    if number > INLINE_MAX_CAP:
        raise ValueError(f"must be at most {INLINE_MAX_CAP} bytes (inline bytes are held in memory until committed)")
    return number


def _share(value: Any) -> tuple[Optional[int], float]:
    """``50%`` -> (None, 0.5); a size -> (bytes, 1.0)."""
    text = str(value).strip()
    if text.endswith("%"):
        fraction = float(text[:-1]) / 100
        if not 0 < fraction <= 1:
            raise ValueError("a percentage must be in (0, 100]")
        return None, fraction
    number = parse_size(text)
    if number <= 0:
        raise ValueError("must be > 0")
    return number, 1.0


def _base_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not is_base_url(url):
        raise ValueError("must be http(s)://host[:port] with no path, query or spaces")
    return url


def config_from_args(args: argparse.Namespace) -> cfg.PeerConfig:
    if not is_valid_id(args.peer_id):
        raise SystemExit(f"mictlanx-sync peer: invalid --peer-id: {args.peer_id!r}")
    capacity: Optional[int] = None
    if args.capacity not in (None, ""):
        capacity = _parse("--capacity", args.capacity, parse_size)
    per_client, fraction = _parse("--max-reserved-per-client", args.max_reserved_per_client, _share)
    tls = server_tls_from_args(args, "mictlanx-sync peer")
    return cfg.PeerConfig(
        peer_id=args.peer_id,
        host=args.host,
        port=_parse("--port", args.port, _port),
        data_dir=Path(args.data_dir) if args.data_dir else None,
        capacity=capacity,
        max_ball_size=_parse("--max-ball-size", args.max_ball_size, parse_size),
        task_ttl=_parse("--task-ttl", args.task_ttl, _seconds),
        exists_ttl=_parse("--exists-ttl", args.exists_ttl, _seconds),
        version_grace=_parse("--version-grace", args.version_grace, _seconds),
        tombstone_grace=_parse("--tombstone-grace", args.tombstone_grace, _seconds),
        gc_interval=_parse("--gc-interval", args.gc_interval, _seconds),
        index_headroom=_parse("--index-headroom", args.index_headroom, _size),
        reserve_timeout=_parse("--reserve-timeout", args.reserve_timeout, _seconds),
        inline_ball_max=_parse("--inline-ball-max", args.inline_ball_max, _inline_max),
        max_reserved_per_client=per_client,
        max_reserved_fraction=fraction,
        fsync=bool(args.fsync),
        fsck=bool(args.fsck),
        root_path=args.root_path or "",
        log_level=args.log_level,
        token=args.token or None,
        advertise_url=_parse("--advertise-url", args.advertise_url, _base_url) if args.advertise_url else None,
        faults=_faults(args.faults),
        ssl_certfile=tls.certfile if tls is not None else None,
        ssl_keyfile=tls.keyfile if tls is not None else None,
    )


def _faults(spec: Optional[str]) -> Optional[str]:
    """The spec, checked now so a bad one fails at start with a clear message."""
    if spec is None or spec == "":
        return None
    try:
        parse_spec(spec)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"mictlanx-sync peer: invalid --faults: {exc}") from None
    return spec


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    # The server stack (and the server extra) loads when the command runs, not to build --help.
    from ..serving import configure_logging, serve_forever, tune_malloc
    from .app import create_app

    tune_malloc()
    configure_logging(config.log_level)
    try:
        app = create_app(config)
    except OSError as exc:
        print(f"mictlanx-sync peer: cannot open data dir {config.resolved_data_dir()}: {exc}", file=sys.stderr)
        return 1
    tls = ServerTLS(config.ssl_certfile, config.ssl_keyfile) if config.ssl_certfile else None
    return serve_forever(app, config.host, config.port, log_level=config.log_level, limits=limits_from_args(args),
                         tls=tls)
