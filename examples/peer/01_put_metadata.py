"""Phase 1 of a put straight on a storage peer: register the metadata, print the task id.

    python examples/peer/01_put_metadata.py --bucket_id b1 --ball_id hello --key hello --path README.md

Phase 1 declares the size and SHA-256 of the data, so ``02_put_data.py`` must send the
same bytes: give it the same ``--path`` (or neither, for the same generated payload).
Only the task id goes to stdout, so shells can chain the two steps:

    TASK=$(python examples/peer/01_put_metadata.py --bucket_id b1 --ball_id k --key k)
    python examples/peer/02_put_data.py --task_id "$TASK" --key k

The peer defaults to the local VSS's first peer (localhost:24000); ``--uri`` or the
``MICTLANX_PEER_URI`` environment variable points elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

from mictlanx_sync import MictlanXURI

DEFAULT_URI = "mictlanx://mictlanx-peer-0@localhost:24000/?protocol=http"


def payload(path: str | None, key: str) -> bytes:
    """The bytes to store: the file at ``path``, else a small payload generated from ``key``."""
    if path:
        with open(path, "rb") as handle:
            return handle.read()
    return f"Hello from mictlanx-sync, this is {key}\n".encode()


def main() -> int:
    parser = argparse.ArgumentParser(description="Phase 1 of a put on a peer: register the metadata, print the task id")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_PEER_URI", DEFAULT_URI))
    parser.add_argument("--bucket_id", required=True)
    parser.add_argument("--ball_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path", help="file to store (default: a small generated payload)")
    parser.add_argument("--content_type", default="application/octet-stream")
    args = parser.parse_args()

    data = payload(args.path, args.key)
    with MictlanXURI.parse_peers(args.uri)[0] as peer:
        result = peer.put_metadata(
            key=args.key, size=len(data), checksum=hashlib.sha256(data).hexdigest(), producer_id="example",
            content_type=args.content_type, ball_id=args.ball_id, bucket_id=args.bucket_id,
        )
    if result.is_err:
        print(f"put_metadata failed: {result.unwrap_err()}", file=sys.stderr)
        return 1
    response = result.unwrap()
    if response.exists:
        print(f"{args.bucket_id}/{args.key} is already stored with this content", file=sys.stderr)
    print(response.task_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
