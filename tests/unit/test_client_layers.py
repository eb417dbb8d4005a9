"""The client's modules stay in layers, so ``Client.get`` reads top to bottom (issue 15).

A module imports only modules of its own layer or below (docs/client-architecture.md), the
import graph has no cycle, the protocol layer imports neither the client nor the servers, and
no module imports inside a function to dodge a cycle (the allowed lazy imports are optional
dependencies, listed here with their reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mictlanx_sync"

LAYERS = {
    "core": {"lifecycle", "dispatch", "executor", "coordinator", "balancer", "breaker", "operation", "messages"},
    "steps": {"locate", "chunk_task", "chunk_fetch", "full_hash", "object_sinks", "sinks", "chunk_upload", "sources",
              "files", "layout", "cache", "content_types", "read_options", "write_options", "options", "progress",
              "result_buffers"},
    "operations": {"object_read", "object_write", "buckets", "bulk"},
    "facade": {"client", "setup", "delete_order"},
}
RANK = {module: rank for rank, layer in enumerate(LAYERS.values()) for module in layer}

#: Function-level imports that are not about cycles: optional dependencies, and requests kept
#: out of the servers' import of the error module.
LAZY_ALLOWED = {
    ("client/progress.py", "IPython"), ("client/progress.py", "ipywidgets"), ("client/progress.py", "tqdm.notebook"),
    ("client/progress.py", "tqdm.std"), ("protocol/errors.py", "requests"),
    ("protocol/errors.py", "urllib3.exceptions"),
}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(sibling modules imported at the top level, every module imported in a function)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                top.add(node.module.split(".")[0])
            elif node.level == 1:
                top.update(alias.name for alias in node.names)
            elif node.level == 2 and node.module:
                top.add(f"..{node.module}")
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    lazy.add(("." * inner.level) + (inner.module or ""))
                elif isinstance(inner, ast.Import):
                    lazy.update(alias.name for alias in inner.names)
    return top, lazy


def _client_graph() -> dict[str, set[str]]:
    graph = {}
    for path in (PACKAGE / "client").glob("*.py"):
        if path.stem == "__init__":
            continue
        top, _ = _imports(path)
        graph[path.stem] = {name for name in top if not name.startswith("..")}
    return graph


def test_every_client_module_has_a_layer() -> None:
    assert set(_client_graph()) == set(RANK), set(_client_graph()) ^ set(RANK)


@pytest.mark.parametrize("module", sorted(RANK))
def test_client_modules_import_only_their_layer_or_below(module: str) -> None:
    upward = {name for name in _client_graph()[module] if RANK.get(name, -1) > RANK[module]}
    assert not upward, f"client/{module}.py imports {upward} from a layer above it"


def test_the_client_import_graph_has_no_cycle() -> None:
    graph = _client_graph()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for child in graph.get(node, ()):
            visit(child, (*path, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_protocol_imports_neither_the_client_nor_the_servers() -> None:
    for path in (PACKAGE / "protocol").rglob("*.py"):
        text = path.read_text()
        for layer in ("client", "server", "tools"):
            assert f"from ..{layer}" not in text and f"mictlanx_sync.{layer}" not in text, (path, layer)


def test_client_never_imports_the_servers() -> None:
    for path in (PACKAGE / "client").glob("*.py"):
        text = path.read_text()
        assert "from ..server" not in text and "mictlanx_sync.server" not in text, path


def test_no_import_inside_a_function_hides_a_cycle() -> None:
    for layer in ("client", "protocol"):
        for path in (PACKAGE / layer).rglob("*.py"):
            _, lazy = _imports(path)
            relative = str(path.relative_to(PACKAGE))
            unexpected = {name for name in lazy if (relative, name) not in LAZY_ALLOWED}
            assert not unexpected, f"{relative} imports {unexpected} inside a function"
