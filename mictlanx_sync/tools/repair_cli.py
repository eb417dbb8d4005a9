"""``mictlanx-sync repair BUCKET [--rf N] [--uri URI] [--json]``: re-create missing replicas.

Calls the router's repair endpoint (``POST /api/v4/repair/buckets/{bucket_id}?rf=N``, see
``mictlanx_sync.server.router.repair``) on the first router of the URI that answers
(``--uri``, else ``$MICTLANX_URI``, else the local VSS of ``mictlanx-sync vss``). A
``token=`` in the URI is sent as the bearer token.

Exit status: 0 when every missing replica was re-created, 1 when some could not be (or the
call failed), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mictlanx-sync repair``."""
    parser.add_argument("bucket", metavar="BUCKET", help="the bucket whose balls are repaired")
    parser.add_argument("--rf", type=int, default=2, help="replicas every ball should have (default 2)")
    parser.add_argument("--uri", default=None,
                        help="MictlanX URI of the routers (default: $MICTLANX_URI, else the local VSS)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the router (default 3600)")
    parser.add_argument("--json", action="store_true", help="print the router's JSON summary")


def run(args: argparse.Namespace) -> int:
    """Run the repair; see the module docstring for the exit status."""
    from ..protocol.errors import MictlanXError, NetworkError
    from ..protocol.ids import is_valid_id
    from ..protocol.mictlanx_uri import MictlanXURI
    from .client_cli import DEFAULT_URI

    if not is_valid_id(args.bucket):
        print(f"mictlanx-sync repair: invalid bucket id {args.bucket!r}", file=sys.stderr)
        return 2
    if args.rf < 1:
        print("mictlanx-sync repair: --rf must be >= 1", file=sys.stderr)
        return 2
    uri = args.uri or os.environ.get("MICTLANX_URI") or DEFAULT_URI
    try:
        routers = MictlanXURI.parse(uri)
    except ValueError as exc:
        print(f"mictlanx-sync repair: invalid URI: {exc}", file=sys.stderr)
        return 2
    error: Any = None
    try:
        for router in routers:
            result = router.repair(args.bucket, rf=args.rf, timeout=args.timeout)
            if result.is_ok:
                return _report(result.unwrap(), args.json)
            error = result.unwrap_err()
            if not isinstance(error, NetworkError):
                break
    finally:
        for router in routers:
            router.close()
    assert isinstance(error, MictlanXError)
    if args.json:
        print(json.dumps({"error": error.get_name(), "status_code": error.status_code, "code": error.code,
                          "message": error.message}), file=sys.stderr)
    else:
        print(f"mictlanx-sync repair: {error}", file=sys.stderr)
    return 1


def _report(summary: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"bucket {summary.get('bucket_id')}: checked {summary.get('checked')} keys, "
              f"repaired {summary.get('repaired')} replicas, failed {summary.get('failed')} (rf={summary.get('rf')})")
        for item in summary.get("errors", []):
            print(f"  {item.get('key')} -> {item.get('peer_id')}: {item.get('msg')}")
    return 1 if summary.get("failed") else 0
