"""``mictlanx-sync demo``: a verified round trip through an embedded local VSS.

With nothing running, it starts a LocalVSS (one router, two peers, as subprocesses),
stores a generated file with rf=2, reads it back to another file, checks SHA-256, shows
which peers hold each chunk and the throughput, and stops everything.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

__all__ = ["add_arguments", "run"]

_MB = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="64MB", help="size of the generated file (default 64MB)")
    parser.add_argument("--chunk-size", default="8MB", help="chunk size (default 8MB)")
    parser.add_argument("--rf", type=int, default=2, help="replication factor (default 2)")
    parser.add_argument("--peers", type=int, default=2, help="peers in the local VSS (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..client.client import Client
    from ..protocol.sizes import parse_size
    from ..server.local import LocalVSS

    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="mictlanx-demo-") as workdir:
        source = os.path.join(workdir, "demo.bin")
        _generate(source, size)
        expected = _sha256(source)
        print(f"generated {size / _MB:.1f} MB  sha256 {expected[:16]}...")
        print(f"starting a local VSS: 1 router, {args.peers} peers ...", flush=True)
        with LocalVSS(peers=args.peers, data_dir=os.path.join(workdir, "vss"), mode="process") as vss:
            print(f"  {vss.uri}")
            with Client(vss.uri, capacity_storage="0", progress=False) as client:
                started = time.perf_counter()
                client.put_file("demo", "demo-object", source, chunk_size=args.chunk_size, rf=args.rf).unwrap()
                put_seconds = time.perf_counter() - started
                started = time.perf_counter()
                path = client.get_to_file("demo", "demo-object", output_path=os.path.join(workdir, "out"),
                                          chunk_size="1MiB").unwrap()
                get_seconds = time.perf_counter() - started
                actual = _sha256(path)
                _print_placement(client)
        ok = actual == expected
        print(f"put {size / _MB / put_seconds:8.1f} MB/s   ({put_seconds:.2f} s, rf={args.rf})")
        print(f"get {size / _MB / get_seconds:8.1f} MB/s   ({get_seconds:.2f} s, verified)")
        print(f"verified round trip: {'OK' if ok else 'FAILED'} (sha256 {actual[:16]}...)")
        print("local VSS stopped")
        return 0 if ok else 1


def _print_placement(client: object) -> None:
    ball = client.get_metadata("demo", "demo-object").unwrap()  # type: ignore[attr-defined]
    router = client.routers[0]  # type: ignore[attr-defined]
    print("chunk placement:")
    for meta in ball.chunks:
        holders = router.get_size("demo", meta.key).unwrap()
        peers = ", ".join(h.peer_id for h in holders)
        print(f"  {meta.key:<16} {meta.size / _MB:6.1f} MB  on {peers}")


def _generate(path: str, size: int) -> None:
    remaining = size
    with open(path, "wb") as handle:
        while remaining > 0:
            piece = os.urandom(min(remaining, 4 * 1024 * 1024))
            handle.write(piece)
            remaining -= len(piece)


def _sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(4 * 1024 * 1024):
            hasher.update(piece)
    return hasher.hexdigest()


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
