"""The ``mictlanx-sync`` command line.

Server subcommands (``peer``, ``router``, ``vss``) live with their servers; each module
exposes ``add_arguments(parser)`` and ``run(args) -> int`` and imports its heavy
dependencies only inside ``run``, so ``--help`` works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from . import __version__

_SUBCOMMANDS = (
    ("peer", "mictlanx_sync.server.peer.cli", "run a storage peer"),
    ("router", "mictlanx_sync.server.router.cli", "run a router in front of peers"),
    ("vss", "mictlanx_sync.server.vss_cli", "run a local Virtual Storage Space (router + peers)"),
    ("demo", "mictlanx_sync.tools.demo", "store and read back a generated file on an embedded local VSS"),
    ("put", "mictlanx_sync.tools.client_cli", "upload a file as an object"),
    ("get", "mictlanx_sync.tools.client_cli", "download an object to a file (or stdout)"),
    ("ls", "mictlanx_sync.tools.client_cli", "list the objects of a bucket"),
    ("stat", "mictlanx_sync.tools.client_cli", "show an object's metadata"),
    ("rm", "mictlanx_sync.tools.client_cli", "delete an object"),
    ("rm-bucket", "mictlanx_sync.tools.client_cli", "delete every object of a bucket"),
    ("peers", "mictlanx_sync.tools.client_cli", "list the peers the routers know"),
    ("health", "mictlanx_sync.tools.client_cli", "check that the routers are up"),
    ("repair", "mictlanx_sync.tools.repair_cli", "re-create missing replicas of a bucket's balls"),
    ("rebalance", "mictlanx_sync.tools.rebalance_cli", "show (or start) the routers' rebalancing"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mictlanx-sync", description="MictlanX object store tools")
    parser.add_argument("--version", action="version", version=f"mictlanx-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("mictlanx_sync"):
                continue  # subcommand not part of this build
            raise
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_run=module.run, _parser=command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``mictlanx-sync`` and ``python -m mictlanx_sync``."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # the subcommand's own usage, not the top-level one (exit status 2)
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"mictlanx-sync: {exc}. Install the server extra: pip install 'mictlanx-sync[server]'", file=sys.stderr)
        return 2
