"""The analysis of a loaded unit: expand each model, build its typed IR, run its kind's checks.

Torch-free. :func:`analyze_unit` is what :mod:`flowdsl.api` and checkpoint loading both call.

Example:
    >>> from flowdsl.language.loader import load_source
    >>> a = analyze_unit(load_source("flow f {\\n input x: vector[2]\\n actnorm\\n}\\n", "f.flow"))
    >>> a.ok, list(a.models), a.model().params
    (True, ['f'], 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowdsl.analysis.ir import ModelIR, build_ir
from flowdsl.analysis.kinds import model_kind, run_checks
from flowdsl.errors import Diagnostic, FlowDSLError, Pos, has_errors
from flowdsl.language.expand import Limits, block_cycles, expand_model
from flowdsl.language.loader import Unit

__all__ = ["Analysis", "analyze_unit"]


@dataclass
class Analysis:
    """Everything the checker knows about one file."""

    unit: Unit
    models: dict[str, ModelIR] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def sources(self) -> dict[str, str]:
        return self.unit.sources

    def error(self) -> FlowDSLError:
        return FlowDSLError(self.diagnostics, self.sources)

    def model(self, name: str | None = None) -> ModelIR:
        """The named model (or the only one); FlowDSLError if it is absent or ambiguous."""
        file = self.unit.main
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            names = ", ".join(self.models) or "none"
            msg = ("the file defines no model" if not self.models else
                   f"the file defines several models ({names}); pick one")
            raise FlowDSLError([Diagnostic(Pos(file), "error", msg)], self.sources)
        if name not in self.models:
            from flowdsl.layers.registry import suggest

            hint = suggest(name, self.models) or f"models: {', '.join(self.models) or 'none'}"
            raise FlowDSLError([Diagnostic(Pos(file), "error", f"no model named '{name}'", hint)], self.sources)
        return self.models[name]


def analyze_unit(unit: Unit, limits: Limits | None = None) -> Analysis:
    """Expand, infer and check every model of a loaded unit (a unit's errors are kept as diagnostics)."""
    limits = limits or Limits()
    recursive: set[str] = set()
    for cycle in block_cycles(unit.blocks):
        recursive.update(cycle)
        first = unit.blocks[cycle[0]]
        path = " -> ".join(cycle + [cycle[0]])
        unit.error(first.pos, f"block '{cycle[0]}' is recursive: {path}")
    analysis = Analysis(unit=unit)
    spec_dir = str(Path(unit.main).parent)
    for model in unit.models:
        if model.name in analysis.models:
            continue
        before = len(unit.diagnostics)
        header, sites = expand_model(unit, model, limits, recursive)
        ir = build_ir(header, sites, model_kind(header.kind), spec_dir, limits)
        if has_errors(unit.diagnostics[before:]):
            ir.complete = False  # a layer is missing: model-level checks would only add noise
        ir.diagnostics.extend(run_checks(ir, limits))
        analysis.models[model.name] = ir
        analysis.diagnostics.extend(ir.diagnostics)
    analysis.diagnostics.extend(unit.diagnostics)
    analysis.diagnostics.sort(key=Diagnostic.sort_key)
    return analysis
