"""The import graph of the engine and the benchmarks: no cycles, nothing imports the command line.

Every import counts, also those inside functions: a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = "CUTSSegmentationLib"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(folder: Path, is_package: bool) -> dict[str, Path]:
    """Dotted name -> file: a package's names start with its folder name, a script folder's are bare stems."""
    root = folder.parent if is_package else folder
    return {_module_name(p, root): p for p in sorted(folder.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative levels resolved against `module`)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(folder: Path, is_package: bool = True) -> dict[str, set[str]]:
    """module -> the engine modules and modules of `folder` it imports anywhere (function bodies included)."""
    modules = _modules(folder, is_package)
    known = set(modules) | set(_modules(REPO / ENGINE, True))
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, path.name == "__init__.py", node)
                targets.add(source)
                targets.update(f"{source}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_engine_walk_sees_the_pipeline() -> None:
    graph = import_graph(REPO / ENGINE)
    assert len(graph) > 30
    assert f"{ENGINE}.learn.training" in graph[f"{ENGINE}.pipeline"]
    assert f"{ENGINE}.core.errors" in graph[f"{ENGINE}.io.reading"]


def test_benchmark_walk_sees_the_scripts() -> None:
    graph = import_graph(REPO / "benchmarks", is_package=False)
    assert "baselines" in graph["retina_table1"]
    assert f"{ENGINE}.evaluate.metrics" in graph["retina_scoring"]


@pytest.mark.parametrize("folder, is_package", [(ENGINE, True), ("benchmarks", False)])
def test_no_import_cycles(folder: str, is_package: bool) -> None:
    assert cycles(import_graph(REPO / folder, is_package)) == []


def test_nothing_imports_the_command_line() -> None:
    graph = import_graph(REPO / ENGINE)
    importers = sorted(m for m, targets in graph.items() if f"{ENGINE}.cli" in targets)
    assert importers == [f"{ENGINE}.__main__"]
