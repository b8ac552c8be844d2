"""Drawing the IR: DOT text always, SVG/PNG through Graphviz when present, else through matplotlib.

Every node shows its layer, its shapes, its source line and its parameter count; edges that
carry a factored-out part (``split``) are dashed. No torch is imported.

Example:
    >>> from flowdsl.api import analyze_source
    >>> ir = analyze_source("flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n", "f.flow").model()
    >>> print(to_dot(ir).splitlines()[0])
    digraph "f" {
    >>> node_labels(ir)[0]  # layer positions count from 0
    'coupling additive\\n[4] -> [4]\\nline 3 · 4,482 params'
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx

__all__ = ["node_labels", "to_dot", "draw", "layout"]


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape is not None else "?"


def node_labels(ir) -> dict:
    """node id of :meth:`ModelIR.graph` -> a multi-line label: what it is, its shapes, its line and parameters."""
    header = ir.header
    inp = header.input
    text = f"input {inp.name}: {inp.type_name}{_shape(inp.shape)}" + (f" levels {inp.levels}" if inp.levels else "")
    if header.condition:
        text += f"\ncondition {header.condition.name}: {header.condition.describe()}"  # as declared, any type
    labels = {"input": text + f"\n{_where(inp.pos, (), header.file)}"}
    for node in ir.layers:
        text = f"{node.layer.describe()}\n{_shape(node.in_shape)} -> {_shape(node.out_shape)}\n"
        labels[node.position] = text + _where(node.pos, node.trace, header.file) + f" · {node.params:,} params"
        if node.factored is not None:
            labels[("latent", node.position)] = f"factored out\n{_shape(node.factored)}"
    sink = ir.sink
    what = sink.spec.describe() if sink.spec is not None and hasattr(sink.spec, "describe") else ""
    text = f"{sink.op} {what}".strip() + f"\n{_shape(sink.in_shape)}"
    labels[sink.op] = text + (f" · {sink.params:,} params" if sink.params else "")
    return labels


def _where(pos, trace, main: str) -> str:
    """``line 7``; in a block of another file ``glow_step.flow:3 (glow_step at line 9)``."""
    if pos is None or pos.line <= 0:
        return ""
    where = f"line {pos.line}" if pos.file == main else f"{Path(pos.file).name}:{pos.line}"
    calls = [p for _, p in trace if p.file == main]
    if pos.file != main and calls:
        where += f" ({trace[0][0]} at line {calls[0].line})"
    return where


def _id(n) -> str:
    return "n" + "_".join(map(str, n)) if isinstance(n, tuple) else f"n{n}"  # ("latent", 3) -> nlatent_3


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(ir) -> str:
    """The IR as Graphviz DOT text."""
    g, labels = ir.graph(), node_labels(ir)
    out = [f"digraph {_quote(ir.name)} {{", "  rankdir=TB;",
           '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for n, d in g.nodes(data=True):
        extra = ""
        if d["op"] in ("input", "base", "output"):
            extra = ', shape=ellipse, fillcolor="#fdf1d6"'
        elif d["op"] == "latent":
            extra = ', shape=ellipse, style="dashed"'
        out.append(f"  {_id(n)} [label={_quote(labels[n])}{extra}];")
    for u, v, port in g.edges(data="port"):
        style = ' [style=dashed, label="factored"]' if port == "factored" else ""
        out.append(f"  {_id(u)} -> {_id(v)}{style};")
    out.append("}")
    return "\n".join(out) + "\n"


def layout(graph: nx.DiGraph) -> dict:
    """node -> (x, y): the data path down the middle, one row a node; side nodes (factored-out parts)
    to the right of the node they leave."""
    main = nx.DiGraph((u, v) for u, v, port in graph.edges(data="port") if port == "main")
    pos = {n: (0.0, -float(i)) for i, n in enumerate(nx.topological_sort(main))}
    for n in graph:
        if n not in pos:
            before = [p for p in graph.predecessors(n) if p in pos]
            pos[n] = (0.8, pos[before[0]][1] if before else -float(len(pos)))
    return pos


def _matplotlib(ir, path: Path) -> None:
    from flowdsl.cli.plotting import _require

    mpl = _require("matplotlib")
    mpl.use("Agg", force=False)
    plt = _require("matplotlib.pyplot")
    g, labels = ir.graph(), node_labels(ir)
    pos = layout(g)
    rows = 1 - min(y for _, y in pos.values())
    cols = max(x for x, _ in pos.values()) - min(x for x, _ in pos.values()) + 1
    fig, ax = plt.subplots(figsize=(3.2 * cols + 2, 0.75 * rows + 0.5), dpi=100)
    ax.set_xlim(min(x for x, _ in pos.values()) - 0.6, max(x for x, _ in pos.values()) + 0.6)
    ax.set_ylim(-rows + 0.5, 0.5)
    ax.axis("off")
    for u, v, port in g.edges(data="port"):
        ax.annotate("", xy=pos[v], xytext=pos[u], arrowprops=dict(
            arrowstyle="-|>", color="0.35", linestyle="--" if port == "factored" else "-", shrinkA=14, shrinkB=14))
    for n, (x, y) in pos.items():
        op = g.nodes[n]["op"]
        colour = "#fdf1d6" if op in ("input", "base", "output") else "white" if op == "latent" else "#eef3fb"
        ax.text(x, y, labels[n], ha="center", va="center", fontsize=7, family="monospace",
                bbox=dict(boxstyle="round,pad=0.3", fc=colour, ec="0.4", ls="--" if op == "latent" else "-"))
    ax.set_title(f"{ir.header.kind} {ir.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw(ir, path, engine: str = "auto") -> str:
    """Write the IR to ``path`` (.dot, .svg or .png); returns the engine used (``dot``, ``graphviz``,
    ``matplotlib``). ``engine``: ``auto`` (Graphviz when its ``dot`` program is present), ``graphviz``
    or ``matplotlib``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".")
    text = to_dot(ir)
    if fmt in ("dot", "gv"):
        path.write_text(text)
        return "dot"
    if fmt not in ("svg", "png"):
        raise ValueError(f"cannot draw to '{path.suffix}': use .dot, .svg or .png")
    dot = shutil.which("dot")
    if engine == "graphviz" or (engine == "auto" and dot):
        if not dot:
            raise ValueError("Graphviz's `dot` program is not installed (apt-get install graphviz); "
                             "use --engine matplotlib")
        subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=text, text=True, check=True, timeout=60)
        return "graphviz"
    _matplotlib(ir, path)
    return "matplotlib"
