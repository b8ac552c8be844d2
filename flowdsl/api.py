"""The public Python API: analyse, check, compile and load specs.

Analysis (parse, expand, infer, check) imports no torch; :func:`compile_file` and
:func:`compile_source` import the compiler on demand.

Example:
    >>> model_names_source("flow a {\\n input x: vector[2]\\n}\\nflow b {\\n input x: vector[2]\\n}\\n")
    ['a', 'b']
"""

from __future__ import annotations

from pathlib import Path

from flowdsl.analysis.analyze import Analysis, analyze_unit
from flowdsl.errors import Diagnostic, FlowDSLError, has_errors
from flowdsl.language.expand import Limits
from flowdsl.language.loader import load_file, load_source

__all__ = [
    "Analysis", "analyze_file", "analyze_source", "check_file", "check_source", "model_names",
    "model_names_source", "compile_file", "compile_source", "load", "Limits",
]


def analyze_source(text: str | bytes, filename: str = "<string>", limits: Limits | None = None) -> Analysis:
    """Parse, expand, infer and check a spec given as text."""
    return analyze_unit(load_source(text, filename), limits)


def analyze_file(path: str | Path, limits: Limits | None = None) -> Analysis:
    """Parse, expand, infer and check a spec file."""
    return analyze_unit(load_file(path), limits)


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
