"""The public Python API: analyse, check, compile and load specs.

Analysis (parse, expand, infer, check) imports no torch; :func:`compile_file` and
:func:`compile_source` import the compiler on demand.

Example:
    >>> model_names_source("flow a {\\n input x: vector[2]\\n}\\nflow b {\\n input x: vector[2]\\n}\\n")
    ['a', 'b']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowdsl import layers as _layers  # noqa: F401  (registers the built-in layers)
from flowdsl.analysis.checks import run_checks
from flowdsl.errors import Diagnostic, FlowDSLError, Pos, has_errors
from flowdsl.language.expand import Limits, block_cycles, expand_model
from flowdsl.analysis.ir import ModelIR, build_graph
from flowdsl.language.loader import Unit, load_file, load_source

__all__ = [
    "Analysis", "analyze_file", "analyze_source", "check_file", "check_source", "model_names",
    "model_names_source", "compile_file", "compile_source", "load", "Limits",
]


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
            msg = "the file defines no model" if not self.models else f"the file defines several models ({names}); pick one"
            raise FlowDSLError([Diagnostic(Pos(file), "error", msg)], self.sources)
        if name not in self.models:
            from flowdsl.layers.registry import suggest

            raise FlowDSLError([Diagnostic(Pos(file), "error", f"no model named '{name}'",
                                           suggest(name, self.models) or f"models: {', '.join(self.models) or 'none'}")],
                               self.sources)
        return self.models[name]


def _analyze(unit: Unit, limits: Limits | None) -> Analysis:
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
        ir = build_graph(header, sites, spec_dir)
        if has_errors(unit.diagnostics[before:]):
            ir.complete = False  # a layer is missing: model-level checks would only add noise
        ir.diagnostics.extend(run_checks(ir, limits))
        analysis.models[model.name] = ir
        analysis.diagnostics.extend(ir.diagnostics)
    analysis.diagnostics.extend(unit.diagnostics)
    analysis.diagnostics.sort(key=Diagnostic.sort_key)
    return analysis


def analyze_source(text: str | bytes, filename: str = "<string>", limits: Limits | None = None) -> Analysis:
    """Parse, expand, infer and check a spec given as text."""
    return _analyze(load_source(text, filename), limits)


def analyze_file(path: str | Path, limits: Limits | None = None) -> Analysis:
    """Parse, expand, infer and check a spec file."""
    return _analyze(load_file(path), limits)


def check_file(path: str | Path, limits: Limits | None = None) -> list[Diagnostic]:
    """All diagnostics of a spec file (errors, warnings, notes), sorted by position."""
    return analyze_file(path, limits).diagnostics


def check_source(text: str, filename: str = "<string>", limits: Limits | None = None) -> list[Diagnostic]:
    return analyze_source(text, filename, limits).diagnostics


def model_names(path: str | Path) -> list[str]:
    """Names of the models a spec file defines, in order (raises FlowDSLError on a syntax error)."""
    unit = load_file(path)
    if has_errors(unit.diagnostics) and unit.main not in unit.programs:
        raise FlowDSLError(unit.diagnostics, unit.sources)
    return [m.name for m in unit.models]


def model_names_source(text: str, filename: str = "<string>") -> list[str]:
    unit = load_source(text, filename)
    if unit.main not in unit.programs:
        raise FlowDSLError(unit.diagnostics, unit.sources)
    return [m.name for m in unit.models]


def _compile(analysis: Analysis, model: str | None):
    if not analysis.ok:
        raise analysis.error()
    ir = analysis.model(model)
    from flowdsl.runtime.compiler import compile_model

    return compile_model(ir, analysis.unit)


def compile_file(path: str | Path, model: str | None = None, limits: Limits | None = None):
    """Compile one model of a spec file into a torch module (FlowDSLError on any error)."""
    return _compile(analyze_file(path, limits), model)


def compile_source(text: str, model: str | None = None, filename: str = "<string>", limits: Limits | None = None):
    """Compile one model of a spec given as text into a torch module."""
    return _compile(analyze_source(text, filename, limits), model)


def load(path: str | Path, map_location=None):
    """Restore a model saved by ``flowdsl compile -o`` (or ``save``): spec source, hash, state."""
    from flowdsl.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)
