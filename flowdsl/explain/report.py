"""The compile report as data, from the IR alone (torch-free): header lines, one row a layer, the notes.

The same columns as ``flowdsl compile`` prints (position, source line, layer, shapes, parameters,
log-det kind, notes; a split says what it factors out), without building the model, plus the
checker's diagnostics for the model (the receptive-field note, blind-spot warnings, ...).

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n", "f.flow")
    >>> report = model_report(a, a.models["f"])
    >>> report.header[0], report.rows[0][2:6]
    ('flow f (f.flow:1)', ('coupling additive', '[4]', '[4]', '4,482'))
    >>> report.total
    '1 layers, 4,482 parameters'
"""

from __future__ import annotations

from dataclasses import dataclass

from flowdsl.analysis.ir import ModelIR
from flowdsl.explain.conditions import condition_summary

__all__ = ["ModelReport", "model_report", "COLUMNS"]

COLUMNS = ("#", "line", "layer", "input", "output", "params", "log-det", "notes")


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape is not None else "?"


@dataclass(frozen=True)
class ModelReport:
    """What the page shows above a model's pictures."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total: str
    #: (severity, message) of the checker's diagnostics about this model
    notes: tuple[tuple[str, str], ...]


def _header(ir: ModelIR) -> list[str]:
    h = ir.header
    lines = [f"{h.kind} {h.name} ({h.pos.file}:{h.pos.line})"]
    inp = ir.input
    lines.append(f"input {inp.name}: {inp.type_name}{_shape(inp.shape)}" + (f" levels {inp.levels}" if inp.levels
                                                                           else ""))
    if h.condition:
        lines.append(f"condition {condition_summary(h.condition, ir)}")
    spec = ir.sink.spec
    if spec is not None and hasattr(spec, "describe"):
        lines.append(f"{ir.sink.op}: {spec.describe()}")
    return lines


def model_report(analysis, ir: ModelIR) -> ModelReport:
    """The report of one model of an :class:`~flowdsl.analysis.analyze.Analysis`."""
    rows = []
    for node in ir.layers:
        what = node.report if node.factored is None else f"factors {_shape(node.factored)} out to the base"
        rows.append((str(node.position), f"{node.pos.line}:{node.pos.column}", node.layer.describe(),
                     _shape(node.in_shape), _shape(node.out_shape), f"{node.params:,}", str(node.logdet or "-"),
                     what))
    mine = set(map(id, ir.diagnostics))
    start, end = ir.header.pos, None
    later = [m.header.pos.line for m in analysis.models.values() if m.header.pos.line > start.line
             and m.header.pos.file == start.file]
    end = min(later) if later else None
    notes: list[tuple[str, str]] = []
    for d in analysis.diagnostics:
        inside = d.pos.file != start.file or (d.pos.line >= start.line and (end is None or d.pos.line < end))
        if id(d) in mine or inside:
            notes.append((d.severity, d.message))
    total = f"{len(rows)} layers, {ir.params:,} parameters"
    return ModelReport(tuple(_header(ir)), tuple(rows), total, tuple(notes))
