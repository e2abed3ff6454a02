"""The modules of ``sacnn_lab`` import one another without a circle.

The graph is read from the source with :mod:`ast`, every import counted: at the top of a module, and the lazy
ones inside functions and methods too (a lazy import hides a circle from Python, not from a reader). An edge
``a -> b`` means that module ``a`` imports ``b`` (``from . import b``, ``from .b import x``, ``import
sacnn_lab.b``...); a package's ``__init__`` counts as the module ``sacnn_lab``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "sacnn_lab"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` statement reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a module's relative imports start from its package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (anywhere in its body)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node)
                # `from . import x` / `from .pkg import mod`: the names may be modules themselves
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in files:  # `import sacnn_lab.a.b` also runs sacnn_lab.a
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def test_the_graph_sees_top_level_and_lazy_imports():
    graph = import_graph()
    assert "sacnn_lab.inference" in graph["sacnn_lab.baseline"]  # at the top of the module
    assert "sacnn_lab.baseline" in graph["sacnn_lab.methods"]  # inside method_name
    assert "sacnn_lab.plots" in graph["sacnn_lab.cli"]  # `from . import plots`, inside a function


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


#: Circles that are known and not yet broken, each by its modules, with the lazy import that closes it (none: the
#: last two went when read_checkpoint moved to runfolder and winner_drift to mechanism). The test fails on any
#: other circle, and on a circle of this list that no longer exists (then strike it out).
KNOWN_CIRCLES: list[list[str]] = []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    found = cycles(graph)
    new = [c for c in found if c not in KNOWN_CIRCLES]
    detail = [" -> ".join(c) + f" (edges: {[(a, b) for a in c for b in sorted(graph[a]) if b in c]})" for c in new]
    assert not new, "import circles in sacnn_lab:\n" + "\n".join(detail)
    gone = [c for c in KNOWN_CIRCLES if c not in found]
    assert not gone, f"no longer a circle, strike it out of KNOWN_CIRCLES: {gone}"


def test_config_imports_no_model_code():
    """``sacnn_lab.config`` is read by everything, torch-free code included: it imports no model module."""
    assert import_graph()["sacnn_lab.config"] <= {"sacnn_lab.cam_methods"}
