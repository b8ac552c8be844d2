"""The public Python API: analyse, check, compile and load specs.

Analysis (parse, expand, infer, check) imports no torch; :func:`compile_file` and
:func:`compile_source` import the compiler on demand. Arguments of the wrong kind (``None`` for a
spec, a number for a path) raise :class:`~flowdsl.input_errors.InputTypeError`, a
:class:`~flowdsl.errors.FlowDSLError` and a :class:`TypeError`; file names may be ``str`` or any ``os.PathLike``.

Example:
    >>> model_names_source("flow a {\\n input x: vector[2]\\n}\\nflow b {\\n input x: vector[2]\\n}\\n")
    ['a', 'b']
    >>> compile_source(None)
    Traceback (most recent call last):
    flowdsl.input_errors.InputTypeError: compile_source: error: text must be the spec as str or bytes, got NoneType
"""

from __future__ import annotations

import os
from pathlib import Path

from flowdsl.analysis.analyze import Analysis, analyze_unit
from flowdsl.errors import Diagnostic, FlowDSLError, has_errors
from flowdsl.input_errors import InputError, InputTypeError
from flowdsl.language.expand import Limits
from flowdsl.language.loader import load_file, load_source

__all__ = [
    "Analysis", "analyze_file", "analyze_source", "check_file", "check_source", "model_names",
    "model_names_source", "compile_file", "compile_source", "load", "Limits", "InputError", "InputTypeError",
]


def _text(text, function: str):
    if not isinstance(text, (str, bytes)):
        raise InputTypeError(f"text must be the spec as str or bytes, got {type(text).__name__}", function)
    return text


def _name(name, function: str, what: str = "filename") -> str:
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not isinstance(name, str):
        raise InputTypeError(f"{what} must be a str or a path, got {type(name).__name__}", function)
    return name


def _limits(limits, function: str):
    if limits is not None and not isinstance(limits, Limits):
        raise InputTypeError(f"limits must be a flowdsl.Limits or None, got {type(limits).__name__}", function)
    return limits


def _model(model, function: str):
    if model is not None and not isinstance(model, str):
        raise InputTypeError(f"model must be a model's name (str) or None, got {type(model).__name__}", function)
    return model


def analyze_source(text: str | bytes, filename: str = "<string>", limits: Limits | None = None, *,
                   allow_outside: bool = False) -> Analysis:
    """Parse, expand, infer and check a spec given as text (``allow_outside``: ``use`` may load spec files
    outside the project root, see :mod:`flowdsl.language.loader`)."""
    where = "analyze_source"
    unit = load_source(_text(text, where), _name(filename, where), allow_outside=bool(allow_outside))
    return analyze_unit(unit, _limits(limits, where))


def analyze_file(path: str | Path, limits: Limits | None = None, *, allow_outside: bool = False) -> Analysis:
    """Parse, expand, infer and check a spec file (``allow_outside``: ``use`` may leave the project root)."""
    where = "analyze_file"
    unit = load_file(_name(path, where, "path"), allow_outside=bool(allow_outside))
    return analyze_unit(unit, _limits(limits, where))


def check_file(path: str | Path, limits: Limits | None = None) -> list[Diagnostic]:
    """All diagnostics of a spec file (errors, warnings, notes), sorted by position."""
    return analyze_file(path, limits).diagnostics


def check_source(text: str, filename: str = "<string>", limits: Limits | None = None) -> list[Diagnostic]:
    return analyze_source(text, filename, limits).diagnostics


def model_names(path: str | Path) -> list[str]:
    """Names of the models a spec file defines, in order (raises FlowDSLError on a syntax error)."""
    unit = load_file(_name(path, "model_names", "path"))
    if has_errors(unit.diagnostics) and unit.main not in unit.programs:
        raise FlowDSLError(unit.diagnostics, unit.sources)
    return [m.name for m in unit.models]


def model_names_source(text: str, filename: str = "<string>") -> list[str]:
    unit = load_source(_text(text, "model_names_source"), _name(filename, "model_names_source"))
    if unit.main not in unit.programs:
        raise FlowDSLError(unit.diagnostics, unit.sources)
    return [m.name for m in unit.models]


def _compile(analysis: Analysis, model: str | None, optimize: bool | None = None, torch_compile=False):
    if not analysis.ok:
        raise analysis.error()
    ir = analysis.model(model)
    from flowdsl.runtime.compiler import compile_model

    built = compile_model(ir, analysis.unit, optimize=optimize)
    if torch_compile:
        from flowdsl.runtime.torch_compile import use_torch_compile

        use_torch_compile(built, torch_compile)
    return built


def _torch_compile(value, where: str):
    from flowdsl.runtime.torch_compile import MODES

    if not (isinstance(value, bool) or (isinstance(value, str) and value in MODES)):
        raise InputTypeError(f"torch_compile must be True, False or one of {', '.join(MODES)}, got {value!r}", where)
    return value


def _optimize(value, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InputTypeError(f"optimize must be True, False or None, got {value!r}", where)
    return value


def compile_file(path: str | Path, model: str | None = None, limits: Limits | None = None, *,
                 allow_outside: bool = False, optimize: bool | None = None, torch_compile: bool | str = False):
    """Compile one model of a spec file into a torch module (FlowDSLError on any error).

    ``optimize=False`` turns the compiler's optimisations off (None: on unless ``FLOWDSL_NO_OPTIMIZE=1``).
    ``torch_compile``: True (or a torch.compile mode, such as "reduce-overhead") compiles the model's tensor
    paths with ``torch.compile``, for every batch size (:mod:`flowdsl.runtime.torch_compile`).
    """
    where = "compile_file"
    _name(path, where, "path"), _model(model, where), _limits(limits, where)
    return _compile(analyze_file(path, limits, allow_outside=allow_outside), model, _optimize(optimize, where),
                    _torch_compile(torch_compile, where))


def compile_source(text: str, model: str | None = None, filename: str = "<string>", limits: Limits | None = None,
                   *, allow_outside: bool = False, optimize: bool | None = None, torch_compile: bool | str = False):
    """Compile one model of a spec given as text into a torch module (``optimize``, ``torch_compile`` as in
    compile_file)."""
    where = "compile_source"
    _text(text, where), _name(filename, where), _model(model, where), _limits(limits, where)
    return _compile(analyze_source(text, filename, limits, allow_outside=allow_outside), model,
                    _optimize(optimize, where), _torch_compile(torch_compile, where))


def load(path: str | Path, map_location=None):
    """Restore a model saved by ``flowdsl compile -o`` (or ``save``): spec source, hash, state."""
    from flowdsl.checkpoint import load_checkpoint

    return load_checkpoint(_name(path, "load", "path"), map_location=map_location)
