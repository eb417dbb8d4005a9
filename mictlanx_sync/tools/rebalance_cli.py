"""``mictlanx-sync rebalance [--start] [--watch] [--uri URI] [--json]``: rebalancing progress.

Shows ``GET /api/v4/rebalance`` of every router of the URI (``--uri``, else
``$MICTLANX_URI``, else the local VSS of ``mictlanx-sync vss``); each router rebalances on
its own (docs/rebalancing.md). ``--start`` first asks each to start a pass now
(``POST /api/v4/rebalance``); ``--watch`` repeats every ``--interval`` seconds until no
router is running a pass. A ``token=`` in the URI is sent as the bearer token.

Exit status: 0 when every router answered and none has failed copies, 1 otherwise, 2 for a
bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Optional

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mictlanx-sync rebalance``."""
    parser.add_argument("--start", action="store_true", help="start a pass now on every router")
    parser.add_argument("--watch", action="store_true", help="repeat until no router is rebalancing")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between --watch rounds (default 1)")
    parser.add_argument("--uri", default=None,
                        help="MictlanX URI of the routers (default: $MICTLANX_URI, else the local VSS)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--json", action="store_true", help="print each router's JSON status")


def _line(name: str, st: dict[str, Any]) -> str:
    return (f"{name}: {st.get('state')} epoch {st.get('epoch')} ({st.get('reason') or '-'}): "
            f"checked {st.get('checked')}, planned {st.get('planned')}, moved {st.get('moved')}, "
            f"in place {st.get('in_place')}, skipped {st.get('skipped')}, deferred {st.get('deferred')}, "
            f"failed {st.get('failed')}, removed {st.get('removed', 0)}, surplus {st.get('surplus')}, "
            f"{st.get('bytes')} bytes"
            f"{' [running]' if st.get('running') else ''}")


def run(args: argparse.Namespace) -> int:
    """See the module docstring."""
    import requests

    from ..protocol.uri import parse
    from .client_cli import DEFAULT_URI

    uri = args.uri or os.environ.get("MICTLANX_URI") or DEFAULT_URI
    try:
        endpoints = parse(uri, default_protocol="http")
    except ValueError as exc:
        print(f"mictlanx-sync rebalance: invalid URI: {exc}", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("mictlanx-sync rebalance: --interval must be > 0", file=sys.stderr)
        return 2
    session = requests.Session()
    session.trust_env = False

    def request(endpoint: Any, method: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
        headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
        try:
            resp = session.request(method, f"{endpoint.base_url}/api/v4/rebalance", headers=headers,
                                   timeout=args.timeout)
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if resp.status_code not in (200, 202):
            return None, f"HTTP {resp.status_code}: {resp.text[:200]}"
        return resp.json(), None

    try:
        failed = False
        if args.start:
            for endpoint in endpoints:
                _, error = request(endpoint, "POST")
                if error:
                    print(f"{endpoint.id or endpoint.base_url}: {error}", file=sys.stderr)
                    failed = True
        while True:
            running = False
            round_failed = False
            statuses = {}
            for endpoint in endpoints:
                name = endpoint.id or endpoint.base_url
                st, error = request(endpoint, "GET")
                if st is None:
                    print(f"{name}: {error}", file=sys.stderr)
                    round_failed = True
                    continue
                statuses[name] = st
                running = running or bool(st.get("running"))
                round_failed = round_failed or bool(st.get("failed"))
            if args.json:
                print(json.dumps(statuses, indent=2))
            else:
                for name, st in statuses.items():
                    print(_line(name, st))
            sys.stdout.flush()
            if not (args.watch and running):
                return 1 if failed or round_failed else 0
            time.sleep(args.interval)
    finally:
        session.close()
