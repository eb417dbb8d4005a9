"""MkDocs hooks: bring in the notes kept in ``docs/`` and generate the CLI and error-tree pages.

The notes in ``NOTES`` (``docs/protocol.md``, ``consistency.md``, ``reliability.md``,
``rebalancing.md``, ``tls.md``, ``storage.md``, ``protocol-extensions.md``, ``issue-14-deviations.md``,
``client-architecture.md``, ``client-api.md``) are
maintained next to the code, outside this site's ``docs_dir``: they are added as pages as they
are, never copied into the tree. ``cli.md`` gets every command's ``--help`` from the argparse
parser, and ``errors.md`` the error classes' tree from the package, so neither can drift from
the code.
"""

from __future__ import annotations

import argparse
import inspect
import os
from typing import Any

from mkdocs.structure.files import File, Files

HERE = os.path.dirname(os.path.abspath(__file__))
NOTES_DIR = os.path.dirname(HERE)  # docs/
NOTES = ("protocol.md", "consistency.md", "reliability.md", "rebalancing.md", "tls.md", "issue-14-deviations.md",
         "storage.md", "protocol-extensions.md", "client-architecture.md", "client-api.md")


def on_files(files: Files, config: Any) -> Files:
    for name in NOTES:
        files.append(File(name, NOTES_DIR, config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", _cli_help())
    if "<!-- error-tree -->" in markdown:
        markdown = markdown.replace("<!-- error-tree -->", _error_tree())
    return markdown


def _cli_help() -> str:
    from mictlanx_sync.cli import build_parser

    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    parts = ["## mictlanx-sync", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [f"## mictlanx-sync {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def _error_tree() -> str:
    from mictlanx_sync import errors

    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.MictlanXError)]
    lines: list[str] = []

    def walk(cls: type, depth: int) -> None:
        bases = [b.__name__ for b in cls.__bases__ if b is not object and not issubclass(b, errors.MictlanXError)]
        extra = f" (also {', '.join(bases)})" if bases else ""
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        lines.append(f"{'    ' * depth}- `{cls.__name__}`{extra}: {doc}")
        for child in sorted((c for c in classes if cls in c.__bases__), key=lambda c: c.__name__):
            walk(child, depth + 1)

    walk(errors.MictlanXError, 0)
    return "\n".join(lines)
