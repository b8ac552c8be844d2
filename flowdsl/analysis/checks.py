"""Model-level checks on the IR: coverage, resources, the condition, the model's shape contract.

Each check is a pure function ``(ModelIR, Limits) -> list[Diagnostic]``; layer-level rules
(shapes, invertibility) already ran in :func:`flowdsl.analysis.ir.build_ir`. Which checks a kind
of model runs, and in which order, is declared in :mod:`flowdsl.analysis.kinds`.

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[4]\\n  permute(reverse)\\n}\\n", "f.flow")
    >>> [d.message for d in a.diagnostics]
    ['no layer transforms dimensions 0, 1, 2, 3 (4 of 4): the flow leaves them as they are']
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis.ir import ModelIR
from flowdsl.errors import Diagnostic
from flowdsl.language.expand import Limits

__all__ = ["check_coverage", "check_resources", "check_condition"]


def _positions(indices, shape) -> str:
    if len(shape) == 1:
        return ", ".join(str(int(i)) for i in indices)
    return ", ".join(str(tuple(int(v) for v in np.unravel_index(int(i), shape))) for i in indices)


def check_coverage(model: ModelIR, limits: Limits) -> list[Diagnostic]:
    """Flows: a warning naming the input dimensions that no layer ever transforms."""
    if model.header.kind != "flow" or not model.complete:
        return []
    shape = model.input.shape
    size = int(np.prod(shape))
    origin = np.arange(size, dtype=np.int32 if size < 2**31 else np.int64)  # origin[i]: the input dim at i
    covered = np.zeros(size, dtype=bool)
    for node in model.layers:
        dep = node.dependency
        if node.factored is not None:  # split: the first part stays, the rest leaves for the base
            origin = origin[: int(np.prod(node.out_shape or ()))]
            continue
        if dep is None:  # a layer that declares nothing is taken to transform everything
            covered[origin] = True
            continue
        origin = origin[dep.source]
        covered[origin[dep.transformed]] = True
    missing = np.flatnonzero(~covered)
    if len(missing) == 0:
        return []
    shown = _positions(missing[:8], shape) + (", ..." if len(missing) > 8 else "")
    return [Diagnostic(model.header.pos, "warning",
                       f"no layer transforms dimensions {shown} ({len(missing)} of {size}): "
                       f"the flow leaves them as they are")]


def check_resources(model: ModelIR, limits: Limits) -> list[Diagnostic]:
    """Refuse a model whose parameter count exceeds the limit, before anything is allocated."""
    total = model.params
    if total > limits.max_params:
        return [Diagnostic(model.header.pos, "error",
                           f"model '{model.name}' would have {total:,} parameters (limit {limits.max_params:,})",
                           hint="raise the limit with --max-params if this is intended")]
    return []


def check_condition(model: ModelIR, limits: Limits) -> list[Diagnostic]:
    """A declared condition that no layer reads is a warning."""
    cond = model.header.condition
    if cond is None or not model.complete:
        return []
    if any(node.reads_condition for node in model.layers) or getattr(model.header.base, "conditional", False):
        return []
    opted_out = sum(not node.reads for node in model.layers)
    hint = (f"{opted_out} layer{'s say' if opted_out > 1 else ' says'} reads=false" if opted_out else None)
    return [Diagnostic(cond.pos, "warning", f"condition '{cond.name}' is declared but no layer reads it", hint)]
