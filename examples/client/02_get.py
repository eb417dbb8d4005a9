"""Read an object back with the high-level ``Client``: into memory, or streamed to a file.

    python examples/client/02_get.py --bucket_id b1 --key report --chunk_size 1MB
    python examples/client/02_get.py --bucket_id b1 --key report --to_file --out ./downloads

Every chunk and the whole object are checked against their SHA-256. With ``--to_file``
the file is named after the ``fullname`` tag set at put time, unless ``--fullname`` is given.
The router defaults to localhost:60666; ``--uri`` or ``MICTLANX_URI`` overrides it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

from mictlanx_sync import Client

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"


def main() -> int:
    parser = argparse.ArgumentParser(description="Read a MictlanX object")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_URI", DEFAULT_URI))
    parser.add_argument("--bucket_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--chunk_size", default="1MB", help="read piece size (default 1MB)")
    parser.add_argument("--to_file", action="store_true", help="stream to a file instead of memory")
    parser.add_argument("--out", default="downloads", help="directory for --to_file (default ./downloads)")
    parser.add_argument("--fullname", default="", help="file name for --to_file (default: the fullname tag)")
    args = parser.parse_args()

    with Client(args.uri) as client:
        if args.to_file:
            result = client.get_to_file(args.bucket_id, args.key, output_path=args.out, fullname=args.fullname,
                                        chunk_size=args.chunk_size, overwrite=True)
            if result.is_err:
                print(f"GET FAILED: {result.unwrap_err()}", file=sys.stderr)
                return 1
            print(f"saved to {result.unwrap()}")
            return 0
        got = client.get(args.bucket_id, args.key, chunk_size=args.chunk_size)
    if got.is_err:
        print(f"GET FAILED: {got.unwrap_err()}", file=sys.stderr)
        return 1
    data = got.unwrap().data.tobytes()
    print(f"GET OK {args.bucket_id}/{args.key}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
