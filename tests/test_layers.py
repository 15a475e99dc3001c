"""The project's import graph, read with ``ast`` (nothing is imported): no module-level import cycle,
and the layers point down only — ``upgrade`` (CLI, plan, hosts) -> ``services`` (OpenStack knowledge)
-> ``statemachine`` (engine) -> ``journal`` (journal, vault); ``scripts`` (lab, bench, demo) sits on
top and no layer imports it.

A cycle hidden in a function body is still a cycle of the design, and still an upward import when it
crosses a layer: function-level imports are checked against the layers too, and listed (``-s``) so
that each stays a deliberate choice (an optional dependency, a slow import), not a dodge.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("upgrade", "services", "statemachine", "journal", "scripts")
#: a layer may import the layers after it, never those before it
LAYERS = ("scripts", "upgrade", "services", "statemachine", "journal")


@dataclass(frozen=True)
class Edge:
    """One import statement: *source* imports *target* (both dotted module names)."""

    source: str
    target: str
    line: int
    #: inside a function body: runs when called, not when the module is imported
    deferred: bool


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of *packages* under *root*, by dotted name."""
    out: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            out[_module_name(root, path)] = path
    return out


class _Collector(ast.NodeVisitor):
    """The import statements of one module, each marked module-level or deferred (in a function)."""

    def __init__(self, name: str, is_package: bool, known: dict[str, Path]) -> None:
        self.name, self.is_package, self.known = name, is_package, known
        self.depth = 0
        self.edges: list[Edge] = []

    def _add(self, target: str, node: ast.stmt) -> None:
        # `import a.b.c` or `from a.b import c`: the deepest name that is a module of the project
        parts = target.split(".")
        while parts and ".".join(parts) not in self.known:
            parts.pop()
        edge = Edge(self.name, ".".join(parts), node.lineno, self.depth > 0)
        if parts and edge.target != self.name and edge not in self.edges:
            self.edges.append(edge)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            here = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join([*here, base] if base else here)
        for alias in node.names:
            self._add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.known else base, node)


def import_graph(root: Path, packages: Iterable[str]) -> list[Edge]:
    """Every import between modules of *packages* (imports of anything else are left out)."""
    known = modules(root, packages)
    edges: list[Edge] = []
    for name, path in known.items():
        collector = _Collector(name, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(), str(path)))
        edges += collector.edges
    return edges


def cycles(edges: Iterable[Edge], deferred: bool = False) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself), over
    module-level imports (*deferred*: function-level ones too); Tarjan's algorithm, iterative."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if deferred or not e.deferred:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def upward(edges: Iterable[Edge], layers: tuple[str, ...] = LAYERS) -> list[Edge]:
    """Imports from a lower layer into a higher one (module-level and deferred alike)."""
    rank = {name: i for i, name in enumerate(layers)}
    return [e for e in edges
            if rank[e.source.split(".")[0]] > rank[e.target.split(".")[0]]]


def _show(edges: Iterable[Edge]) -> str:
    return "\n".join(f"  {e.source}:{e.line} imports {e.target}{' (in a function)' if e.deferred else ''}"
                     for e in edges)


def test_the_project_has_no_import_cycle_and_its_layers_point_down():
    edges = import_graph(REPO, PACKAGES)
    assert len({e.source for e in edges}) > 50, "the graph is too small: the walk missed the packages"
    assert any(e.source.startswith("upgrade.") and e.target.startswith("journal.") for e in edges)
    assert cycles(edges) == [], f"module-level import cycles: {cycles(edges)}"
    # an import moved into a function to dodge a cycle is still one: move the shared part down instead
    assert cycles(edges, deferred=True) == [], f"cycles closed by function-level imports: {cycles(edges, True)}"
    bad = upward(edges)
    assert not bad, f"imports that point up a layer:\n{_show(bad)}"
    deferred = [e for e in edges if e.deferred]
    # listed, not forbidden: each one is a choice a reader should be able to see (pytest -s)
    sys.stdout.write(f"\n{len(deferred)} function-level imports between the project's modules:\n{_show(deferred)}\n")


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_is_found(tmp_path):
    """The check can fail: a cycle through three modules (one import relative, one `from pkg import mod`),
    and, when the last edge is deferred into a function, only as a dodged cycle."""
    _package(tmp_path, {
        "journal/__init__.py": "",
        "journal/a.py": "from journal import b\n",
        "journal/b.py": "from .c import thing\n",
        "journal/c.py": "import journal.a\nthing = 1\n",
        "journal/d.py": "from journal.a import b\n",
    })
    found = cycles(import_graph(tmp_path, ["journal"]))
    assert found == [["journal.a", "journal.b", "journal.c"]], found
    (tmp_path / "journal" / "c.py").write_text("def later():\n    import journal.a\n\nthing = 1\n")
    edges = import_graph(tmp_path, ["journal"])
    assert cycles(edges) == []
    assert cycles(edges, deferred=True) == [["journal.a", "journal.b", "journal.c"]]
    assert [(e.source, e.target) for e in edges if e.deferred] == [("journal.c", "journal.a")]


@pytest.mark.parametrize("text", ["from upgrade.cli import main\n",
                                  "def f():\n    from upgrade import cli\n"])
def test_a_planted_upward_import_is_found(tmp_path, text):
    """The check can fail: the bottom layer importing the top one, at module level or in a function."""
    _package(tmp_path, {
        "journal/__init__.py": "",
        "journal/store.py": text,
        "upgrade/__init__.py": "",
        "upgrade/cli.py": "from journal import store\n",
    })
    edges = import_graph(tmp_path, ["journal", "upgrade"])
    assert [(e.source, e.target) for e in upward(edges)] == [("journal.store", "upgrade.cli")]
