"""The model-kind registry: each kind of model declares, in one place, everything about it.

A :class:`ModelKind` names its sink (a flow's ``base`` density, an autoregressive model's
``output``), the sink rule that infers it, its model-level checks **in the order they run**,
its compiler (a ``"module:callable"`` name, imported only when compiling: the analysis never
imports torch) and what the compile report says of it. :data:`MODEL_KINDS` is the whole
registry; nothing appends to it at import time.

Checks run in the stated order and every check's diagnostics are collected: an error in one
check does not hide another's findings. A check that cannot run without the results of the
ones before it declares ``needs_clean=True``; it is then skipped after an error, and the
skip is stated by a note.

Example:
    >>> [c.name for c in model_kind("flow").checks]
    ['resources', 'coverage', 'condition']
    >>> model_kind("autoregressive").compiler
    'flowdsl.runtime.autoregressive:compile_autoregressive'
"""

from __future__ import annotations

from flowdsl.analysis import ar_checks, causality, checks
from flowdsl.analysis.model_kind import ModelCheck, ModelKind
from flowdsl.errors import Diagnostic
from flowdsl.layers.ar_output import output_head

__all__ = ["ModelCheck", "ModelKind", "MODEL_KINDS", "model_kind", "run_checks"]


_RESOURCES = ModelCheck("resources", checks.check_resources)
_CONDITION = ModelCheck("condition", checks.check_condition)

MODEL_KINDS: dict[str, ModelKind] = {
    "flow": ModelKind(
        name="flow", sink="base", sink_rule=None,
        checks=(_RESOURCES, ModelCheck("coverage", checks.check_coverage, proves="coverage"), _CONDITION),
        compiler="flowdsl.runtime.compiler:compile_flow", infer_past_errors=True,
    ),
    "autoregressive": ModelKind(
        name="autoregressive", sink="output", sink_rule=output_head,
        checks=(
            _RESOURCES, _CONDITION,
            ModelCheck("residual streams", ar_checks.check_residual_streams),
            # the dependency engine propagates through every layer: it needs the streams' widths to agree
            ModelCheck("causality", causality.check_causality, needs_clean=True),
            ModelCheck("attention patterns", ar_checks.check_attention_patterns),
        ),
        compiler="flowdsl.runtime.autoregressive:compile_autoregressive", infer_past_errors=False,
    ),
}


def model_kind(name: str) -> ModelKind:
    return MODEL_KINDS[name]


def run_checks(model, limits) -> list[Diagnostic]:
    """Run the kind's checks in order and collect every diagnostic.

    Checks other than ``resources`` look at complete models only (inference reached the end).
    """
    kind = model_kind(model.kind)
    out: list[Diagnostic] = []
    for check in kind.checks:
        if check is not _RESOURCES and not model.complete:
            continue
        if check.needs_clean and any(d.severity == "error" for d in out + model.diagnostics):
            out.append(Diagnostic(model.header.pos, "note", f"the {check.name} check did not run: it needs the "
                                                            f"errors above fixed first"))
            continue
        try:
            out.extend(check.run(model, limits))
        except MemoryError:  # checks size what they build first; this is the last line of defence
            out.append(Diagnostic(model.header.pos, "error", f"the {check.name} check ran out of memory",
                                  hint=f"check a smaller input shape, or lower {limits.flag('max_analysis_bytes')} "
                                       f"so that it is refused before it is built"))
        except Exception as err:  # a bug in a check must reach the user as a diagnostic, not a traceback
            out.append(Diagnostic(model.header.pos, "error",
                                  f"internal error in the {check.name} check: {type(err).__name__}: {err}",
                                  hint="this is a bug in flowdsl, not in the spec; please report it"))
    return out
