"""The import layers of ``mictlanx_sync``, read from the source with ``ast`` (issue 15).

The graph: one node per module of the package; one edge per import statement naming a module
of the package, wherever it stands (module level, ``try`` blocks, class bodies, inside
functions, under ``if TYPE_CHECKING:``). ``from p import x`` is an edge to ``p.x`` when that
is a module, else to ``p``; relative imports are resolved. The package ``__init__`` modules
that Python runs before a submodule are not edges (every module would depend on
``mictlanx_sync/__init__.py``). The *runtime* graph leaves out the ``TYPE_CHECKING`` imports.

What is asserted:

1. **Layers.** ``protocol`` imports neither ``client``, ``server`` nor ``tools``; ``server``
   never imports ``client`` or ``tools``; ``client`` never imports ``server`` or ``tools``.
   Checked on every direct edge, and on everything a module reaches through the runtime graph.
2. **No cycles.** The runtime graph has no cycle between modules. The whole graph (types
   included: a cycle of types is still a cycle of design) has none either, except those in
   :data:`KNOWN_CYCLES`, which must stay exactly as listed (a list entry that disappears fails too).
3. **No imports inside functions** of a ``mictlanx_sync`` module, except in the command-line
   subcommand modules (``mictlanx_sync.cli._SUBCOMMANDS``): all of them are imported to build
   ``--help`` for every command, so each defers to its ``run`` what only its command needs.
   Check 2 counts those imports, so none of them hides a cycle. Exceptions outside those
   modules are in :data:`KNOWN_FUNCTION_IMPORTS`, each with its reason.
4. **No dynamic imports** (``importlib.import_module``, ``__import__``) outside
   ``mictlanx_sync/__init__.py`` (its lazily loaded public names) and ``mictlanx_sync/cli.py``
   (its subcommand table): they would escape checks 1-3.

The checker itself is tested on small synthetic packages that break each rule.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pytest

import mictlanx_sync
from mictlanx_sync import cli

PACKAGE = "mictlanx_sync"
ROOT = Path(mictlanx_sync.__file__).resolve().parent

#: layer -> the layers it must not import
FORBIDDEN = {
    f"{PACKAGE}.protocol": (f"{PACKAGE}.client", f"{PACKAGE}.server", f"{PACKAGE}.tools"),
    f"{PACKAGE}.server": (f"{PACKAGE}.client", f"{PACKAGE}.tools"),
    f"{PACKAGE}.client": (f"{PACKAGE}.server", f"{PACKAGE}.tools"),
}
#: cycles of the whole graph that exist today, by their modules (none since the client was
#: rebuilt by composition in issue 15; an entry here must exist, or the test fails)
KNOWN_CYCLES: set[frozenset[str]] = set()
#: (module, imported module) -> why it is imported inside a function (none left)
KNOWN_FUNCTION_IMPORTS: dict[tuple[str, str], str] = {}
DYNAMIC_IMPORTS_ALLOWED = {PACKAGE, f"{PACKAGE}.cli"}


@dataclass
class Imports:
    """What the checker found in a package."""

    modules: dict[str, Path] = field(default_factory=dict)
    #: every edge: (importer, imported) -> ``"module"``, ``"function"`` or ``"types"``
    edges: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: (module, line) of each importlib.import_module / __import__ call
    dynamic: list[tuple[str, int]] = field(default_factory=list)

    def graph(self, *, types: bool) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {name: set() for name in self.modules}
        for (source, target), kinds in self.edges.items():
            if types or kinds != {"types"}:
                out[source].add(target)
        return out

    def function_level(self) -> set[tuple[str, str]]:
        return {edge for edge, kinds in self.edges.items() if "function" in kinds}


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("__import__", "import_module")


def scan(root: Path, package: str) -> Imports:
    """The imports of the package whose directory is ``root``."""
    found = Imports()
    trees = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root, package)
        found.modules[name] = path
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for name, tree in trees.items():
        is_package = found.modules[name].name == "__init__.py"
        _visit(found, name, is_package, tree, "module")
    return found


def _visit(found: Imports, module: str, is_package: bool, node: ast.AST, kind: str) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            for target in _targets(found, module, is_package, child):
                found.edges.setdefault((module, target), set()).add(kind)
            continue
        if isinstance(child, ast.Call) and _is_dynamic_import(child):
            found.dynamic.append((module, child.lineno))
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _visit(found, module, is_package, child, "function")
        elif isinstance(child, ast.If) and _is_type_checking(child) and kind == "module":
            for statement in child.body:
                _visit(found, module, is_package, ast.Module(body=[statement], type_ignores=[]), "types")
            for statement in child.orelse:
                _visit(found, module, is_package, ast.Module(body=[statement], type_ignores=[]), kind)
        else:
            _visit(found, module, is_package, child, kind)


def _targets(found: Imports, module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's modules an import statement names."""
    if isinstance(node, ast.Import):
        named = (_known(found, alias.name) for alias in node.names)
        return [target for target in named if target is not None and target != module]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        target = sub if sub in found.modules else _known(found, source)
        if target is not None and target != module:
            out.append(target)
    return out


def _known(found: Imports, dotted: str) -> Optional[str]:
    """``dotted`` or its nearest enclosing package, when it is a module of the package."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in found.modules:
            return candidate
        parts.pop()
    return None


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[frozenset[str]] = set()
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                out.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return out


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in graph[node]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def layer_violations(found: Imports) -> list[str]:
    runtime = found.graph(types=False)
    problems = []
    for module in sorted(found.modules):
        for layer, forbidden in FORBIDDEN.items():
            if not _in(module, layer):
                continue
            direct = {target for (source, target) in found.edges if source == module}
            for target in sorted(direct | _reachable(runtime, module)):
                if any(_in(target, bad) for bad in forbidden):
                    how = "imports" if target in direct else "reaches"
                    problems.append(f"{module} {how} {target}")
    return sorted(problems, key=lambda problem: " reaches " in problem)  # direct imports first


def function_imports(found: Imports, allowed_modules: Iterable[str]) -> dict[tuple[str, str], str]:
    """Function-level imports of package modules outside ``allowed_modules``, with the reason
    recorded for each known one (empty for the others)."""
    allowed = set(allowed_modules)
    return {edge: KNOWN_FUNCTION_IMPORTS.get(edge, "") for edge in sorted(found.function_level())
            if edge[0] not in allowed}


# --- the package -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def found() -> Imports:
    return scan(ROOT, PACKAGE)


def test_the_scan_sees_the_whole_package(found: Imports) -> None:
    assert f"{PACKAGE}.server.asgi.routing" in found.modules and f"{PACKAGE}.client.client" in found.modules
    assert (f"{PACKAGE}.server.router.registry", f"{PACKAGE}.server.router.peer_client") in found.edges
    assert len(found.edges) > 300


def test_layers(found: Imports) -> None:
    assert layer_violations(found) == []


def test_no_import_cycle_at_run_time(found: Imports) -> None:
    assert cycles(found.graph(types=False)) == set()


def test_no_import_cycle_but_the_known_ones_even_for_types(found: Imports) -> None:
    present = cycles(found.graph(types=True))
    assert present - KNOWN_CYCLES == set(), "new import cycle"
    assert KNOWN_CYCLES - present == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_no_function_level_import_of_the_package(found: Imports) -> None:
    subcommands = {module for _, module, _ in cli._SUBCOMMANDS}
    assert subcommands and all(module in found.modules for module in subcommands)
    left = function_imports(found, subcommands)
    assert {edge for edge, why in left.items() if not why} == set(), "imports inside functions"
    assert set(KNOWN_FUNCTION_IMPORTS) <= set(left), "a known function-level import is gone: remove it from the list"


def test_no_dynamic_import_outside_the_lazy_entry_points(found: Imports) -> None:
    assert {module for module, _ in found.dynamic} <= DYNAMIC_IMPORTS_ALLOWED


# --- the checker fails where it must ---------------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Imports:
    root = tmp_path / PACKAGE
    for name, text in {"__init__.py": "", "protocol/__init__.py": "", "server/__init__.py": "",
                       "client/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return scan(root, PACKAGE)


def test_a_cycle_hidden_behind_a_function_level_import_is_found(tmp_path: Path) -> None:
    found = _package(tmp_path, {
        "server/a.py": "from . import b\n",
        "server/b.py": "def later():\n    from .a import x\n    return x\n",
    })
    assert cycles(found.graph(types=False)) == {frozenset({f"{PACKAGE}.server.a", f"{PACKAGE}.server.b"})}
    assert found.function_level() == {(f"{PACKAGE}.server.b", f"{PACKAGE}.server.a")}
    assert function_imports(found, ()) == {(f"{PACKAGE}.server.b", f"{PACKAGE}.server.a"): ""}


def test_a_cycle_of_types_counts_in_the_whole_graph_only(tmp_path: Path) -> None:
    found = _package(tmp_path, {
        "client/a.py": "from .b import B\n",
        "client/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n",
    })
    assert cycles(found.graph(types=False)) == set()
    assert cycles(found.graph(types=True)) == {frozenset({f"{PACKAGE}.client.a", f"{PACKAGE}.client.b"})}


def test_layer_crossings_are_found_directly_and_through_other_modules(tmp_path: Path) -> None:
    found = _package(tmp_path, {
        "server/a.py": "from ..client import c\n",
        "client/c.py": "",
        "middle.py": "import mictlanx_sync.client.c\n",
        "protocol/p.py": "from .. import middle\n",
        "protocol/q.py": "def f():\n    from ..server import a\n",
    })
    assert sorted(layer_violations(found)) == [
        f"{PACKAGE}.protocol.p reaches {PACKAGE}.client.c",
        f"{PACKAGE}.protocol.q imports {PACKAGE}.server.a",
        f"{PACKAGE}.protocol.q reaches {PACKAGE}.client.c",
        f"{PACKAGE}.server.a imports {PACKAGE}.client.c",
    ]


def test_dynamic_imports_are_found(tmp_path: Path) -> None:
    found = _package(tmp_path, {"server/a.py": "import importlib\nm = importlib.import_module('x')\n"})
    assert found.dynamic == [(f"{PACKAGE}.server.a", 2)]
