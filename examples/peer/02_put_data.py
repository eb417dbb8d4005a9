"""Phase 2 of a put straight on a storage peer: upload the data for a task id.

    python examples/peer/02_put_data.py --task_id <printed by 01_put_metadata.py> --key hello --path README.md

The bytes must be those declared in phase 1 (same ``--path``, or neither for the same
generated payload): the peer checks their size and SHA-256 before storing them.
The peer defaults to localhost:24000; ``--uri`` or ``MICTLANX_PEER_URI`` overrides it.
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser(description="Phase 2 of a put on a peer: upload the data for a task id")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_PEER_URI", DEFAULT_URI))
    parser.add_argument("--task_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path", help="file declared in phase 1 (default: the generated payload)")
    parser.add_argument("--content_type", default="application/octet-stream")
    args = parser.parse_args()

    data = payload(args.path, args.key)
    with MictlanXURI.parse_peers(args.uri)[0] as peer:
        result = peer.put_data(args.task_id, args.key, data, args.content_type)
    if result.is_err:
        print(f"put_data failed: {result.unwrap_err()}", file=sys.stderr)
        return 1
    response = result.unwrap()
    print(f"stored {response.bucket_id}/{response.key}: {response.size} bytes on {response.node_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
