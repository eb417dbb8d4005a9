"""Phase 1 of a put through a router: it picks the peers and returns the task (group) id.

    python examples/router/01_put_metadata.py --bucket_id b1 --ball_id hello --key hello --path README.md

Phase 1 declares the size and SHA-256 of the data, so ``02_put_data.py`` must send the
same bytes: give it the same ``--path`` (or neither, for the same generated payload).
Only the task id goes to stdout, so shells can chain the two steps:

    TASK=$(python examples/router/01_put_metadata.py --bucket_id b1 --ball_id k --key k --rf 2)
    python examples/router/02_put_data.py --task_id "$TASK" --key k

The router defaults to the local VSS (localhost:60666); ``--uri`` or the ``MICTLANX_URI``
environment variable points elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

from mictlanx_sync import MictlanXURI

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"


def payload(path: str | None, key: str) -> bytes:
    """The bytes to store: the file at ``path``, else a small payload generated from ``key``."""
    if path:
        with open(path, "rb") as handle:
            return handle.read()
    return f"Hello from mictlanx-sync, this is {key}\n".encode()


def main() -> int:
    parser = argparse.ArgumentParser(description="Phase 1 of a put through a router: print the task id")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_URI", DEFAULT_URI))
    parser.add_argument("--bucket_id", required=True)
    parser.add_argument("--ball_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path", help="file to store (default: a small generated payload)")
    parser.add_argument("--rf", type=int, default=1, help="replication factor (default 1)")
    parser.add_argument("--content_type", default="application/octet-stream")
    args = parser.parse_args()

    data = payload(args.path, args.key)
    with MictlanXURI.parse(args.uri)[0] as router:
        result = router.put_metadata(
            key=args.key, size=len(data), checksum=hashlib.sha256(data).hexdigest(), producer_id="example",
            content_type=args.content_type, ball_id=args.ball_id, bucket_id=args.bucket_id,
            replication_factor=args.rf,
        )
    if result.is_err:
        print(f"put_metadata failed: {result.unwrap_err()}", file=sys.stderr)
        return 1
    response = result.unwrap()
    if response.extra.get("exists"):
        print(f"{args.bucket_id}/{args.key} is already stored with this content", file=sys.stderr)
    print(f"{args.bucket_id}/{args.key} goes to {', '.join(response.replicas)}", file=sys.stderr)
    print(response.tasks_ids[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
