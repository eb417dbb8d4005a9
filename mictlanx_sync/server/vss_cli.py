"""``mictlanx-sync vss``: one router and N peers in the foreground (protocol §7).

Defaults follow the seed's Docker stack: router ``mictlanx-router-0`` on 60666, peers
``mictlanx-peer-0``/``-1`` on 24000/24001, data under ``./mictlanx-data/``, all on
127.0.0.1. Runs until Ctrl-C or SIGTERM (exit 0); a port already in use is a one-line
error and a non-zero exit. Port 0 lets the OS pick. ``--tls`` serves everything over HTTPS
with a self-signed certificate made at start (its path is printed: clients pass it as
``verify=``, the client commands as ``--ca-file``; docs/tls.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..protocol.errors import MictlanXError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", type=int, default=2, help="number of peers (default 2)")
    parser.add_argument("--router-port", type=int, default=60666, help="router port (default 60666; 0: any)")
    parser.add_argument("--peer-ports", default=None,
                        help="comma-separated peer ports (default 24000,24001,...; 0: any)")
    parser.add_argument("--data-dir", default="mictlanx-data", help="data directory (default ./mictlanx-data)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--health-interval", type=float, default=2.0, help="router health interval (s)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--tls", action="store_true",
                        help="serve the router and the peers over HTTPS with a self-signed certificate for "
                             "127.0.0.1/localhost made at start with openssl (its path is printed; clients "
                             "trust it with verify=PATH)")


def _peer_ports(args: argparse.Namespace) -> list[int]:
    if args.peer_ports is None:
        return [24000 + i for i in range(args.peers)]
    try:
        ports = [int(p) for p in str(args.peer_ports).split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"invalid --peer-ports: {args.peer_ports!r}") from None
    if len(ports) < args.peers:
        raise ValueError(f"--peer-ports lists {len(ports)} ports for {args.peers} peers")
    if any(not 0 <= p <= 65535 for p in ports):
        raise ValueError(f"invalid --peer-ports: {args.peer_ports!r}")
    return ports[: args.peers]


def run(args: argparse.Namespace) -> int:
    # The server stack (and the server extra) loads when the command runs, not to build --help.
    from .local import LocalVSS
    from .serving import tune_malloc

    try:
        if args.peers < 1:
            raise ValueError("--peers must be >= 1")
        ports = _peer_ports(args)
    except ValueError as exc:
        print(f"mictlanx-sync vss: {exc}", file=sys.stderr)
        return 2
    tune_malloc()
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    vss = LocalVSS(peers=args.peers, routers=1, data_dir=args.data_dir, host=args.host, mode="thread",
                   health_interval=args.health_interval, log_level=args.log_level, fsync=True,
                   peer_ports=ports, router_ports=[args.router_port], tls=args.tls)
    try:
        try:
            vss.start()
        except (OSError, MictlanXError, RuntimeError, TimeoutError, ValueError) as exc:  # ValueError: TLS set-up
            print(f"mictlanx-sync vss: {exc}", file=sys.stderr)
            return 1
        print("MictlanX VSS is ready", flush=True)
        print(f"client URI: {vss.uri}", flush=True)
        if vss.ca_file is not None:
            print(f"CA file: {vss.ca_file} (self-signed; Client(uri, verify=PATH), or --ca-file PATH / "
                  f"MICTLANX_CA_FILE for the client commands)", flush=True)
        for url in vss.router_urls:
            print(f"router health: {url}/health", flush=True)
        for peer_id, url in vss.peer_urls.items():
            print(f"peer health: {url}/health ({peer_id})", flush=True)
        print("press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        vss.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
