"""Store a file as a chunked, replicated object with the high-level ``Client``.

    python examples/client/01_put.py --bucket_id b1 --ball_id report --path README.md \\
        --chunk_size 256kb --rf 2 --tag owner=alice --tag project=demo

The router defaults to the local VSS (localhost:60666, ``mictlanx-sync vss``); ``--uri`` or
the ``MICTLANX_URI`` environment variable points elsewhere.
"""

from __future__ import annotations

import argparse
import os
import sys

from mictlanx_sync import Client

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"


def parse_tags(items: list[str]) -> dict[str, str]:
    """``["k=v", "x=y"]`` -> ``{"k": "v", "x": "y"}``."""
    tags = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--tag expects k=v, got {item!r}")
        tags[name.strip()] = value.strip()
    return tags


def main() -> int:
    parser = argparse.ArgumentParser(description="Store a file as a MictlanX object")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_URI", DEFAULT_URI))
    parser.add_argument("--bucket_id", required=True)
    parser.add_argument("--ball_id", required=True, help="the object's key")
    parser.add_argument("--path", required=True, help="file to upload")
    parser.add_argument("--chunk_size", default="1MB", help="chunk size, e.g. 256kb, 1MB (default 1MB)")
    parser.add_argument("--rf", type=int, default=1, help="replication factor (default 1)")
    parser.add_argument("--tag", action="append", default=[], help="metadata tag k=v (repeatable)")
    args = parser.parse_args()

    with Client(args.uri) as client:
        result = client.put_file(args.bucket_id, args.ball_id, args.path, tags=parse_tags(args.tag),
                                 chunk_size=args.chunk_size, rf=args.rf)
        if result.is_err:
            print(f"PUT FAILED: {result.unwrap_err()}", file=sys.stderr)
            return 1
        ball = client.get_metadata(args.bucket_id, args.ball_id).unwrap()
    print(f"PUT OK {args.bucket_id}/{args.ball_id}: {ball.size} bytes in {len(ball.chunks)} chunks, "
          f"sha256 {ball.checksum}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
