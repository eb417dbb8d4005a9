"""Read a ball straight from a storage peer into a file, checked against its SHA-256.

    python examples/peer/03_get.py --bucket_id b1 --key hello --out /tmp/hello.txt

The peer defaults to localhost:24000; ``--uri`` or ``MICTLANX_PEER_URI`` overrides it.
"""

from __future__ import annotations

import argparse
import os
import sys

from mictlanx_sync import MictlanXURI

DEFAULT_URI = "mictlanx://mictlanx-peer-0@localhost:24000/?protocol=http"


def main() -> int:
    parser = argparse.ArgumentParser(description="Read a ball from a peer into a file")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_PEER_URI", DEFAULT_URI))
    parser.add_argument("--bucket_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--out", help="file to write (default: ./KEY)")
    args = parser.parse_args()

    out = os.path.abspath(args.out or args.key)
    with MictlanXURI.parse_peers(args.uri)[0] as peer:
        meta = peer.get_metadata(args.bucket_id, args.key)
        if meta.is_err:
            print(f"get_metadata failed: {meta.unwrap_err()}", file=sys.stderr)
            return 1
        metadata = meta.unwrap().metadata
        result = peer.get_to_file(args.bucket_id, args.key, sink_folder_path=os.path.dirname(out),
                                  filename=os.path.basename(out))
    if result.is_err:
        print(f"get failed: {result.unwrap_err()}", file=sys.stderr)
        return 1
    print(f"{args.bucket_id}/{args.key}: {metadata.size} bytes, sha256 {metadata.checksum}")
    print(f"saved to {result.unwrap()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
