"""Phase 2 of a put through a router: upload the data for a task id to every replica.

    python examples/router/02_put_data.py --task_id <printed by 01_put_metadata.py> --key hello --path README.md

The bytes must be those declared in phase 1 (same ``--path``, or neither for the same
generated payload): the peers check their size and SHA-256 before storing them.
The router defaults to localhost:60666; ``--uri`` or ``MICTLANX_URI`` overrides it.
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser(description="Phase 2 of a put through a router: upload the data")
    parser.add_argument("--uri", default=os.environ.get("MICTLANX_URI", DEFAULT_URI))
    parser.add_argument("--task_id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path", help="file declared in phase 1 (default: the generated payload)")
    parser.add_argument("--content_type", default="application/octet-stream")
    args = parser.parse_args()

    data = payload(args.path, args.key)
    with MictlanXURI.parse(args.uri)[0] as router:
        result = router.put_data(args.task_id, args.key, data, args.content_type)
    if result.is_err:
        print(f"put_data failed: {result.unwrap_err()}", file=sys.stderr)
        return 1
    response = result.unwrap()
    where = ", ".join(response.peer_ids) if response is not None else "the peers"
    print(f"stored {args.key}: {len(data)} bytes on {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
