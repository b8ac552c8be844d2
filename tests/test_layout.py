"""The package layout keeps its promises: no import cycle, small modules, torch-free front stages."""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent / "flowdsl"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    """Modules of flowdsl that ``name`` imports (at any depth of its code, lazily or not)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):  # lazy and TYPE_CHECKING imports count: a cycle is a design knot
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        g.add_edges_from((name, t) for t in _imports(name, path, modules))
    return g


def test_no_import_cycle_inside_flowdsl():
    g = _graph()
    # a package's __init__ that re-exports its modules is not a cycle of code: drop package -> child edges
    g.remove_edges_from([(u, v) for u, v in list(g.edges) if v.startswith(u + ".")])
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], f"{len(cycles)} import cycles, e.g. {' -> '.join(cycles[0] + [cycles[0][0]])}"


@pytest.mark.parametrize("name,path", sorted(_modules().items()))
def test_module_is_small(name, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"


def test_front_stages_never_import_torch():
    """language/, layers/, analysis/ and errors import no torch, however deep (lazy imports included)."""
    modules = _modules()
    front = [m for m in modules if m.startswith(("flowdsl.language", "flowdsl.layers", "flowdsl.analysis"))]
    front.append("flowdsl.errors")
    offenders = []
    for name in front:
        tree = ast.parse(modules[name].read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name} imports {n}" for n in names if n.split(".")[0] == "torch"]
    reach = nx.descendants(_graph(), "flowdsl.analysis.analyze") | {"flowdsl.analysis.analyze"}
    outside = sorted(m for m in reach if not m.startswith(("flowdsl.language", "flowdsl.layers",
                                                            "flowdsl.analysis", "flowdsl.errors")))
    assert offenders == [] and outside == [], (offenders, outside)


def test_every_subpackage_says_what_it_owns():
    for init in ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc) > 80 and "import" in doc, f"{init.relative_to(ROOT.parent)} does not say what it may import"
