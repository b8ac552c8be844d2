"""The output of an autoregressive model: the sink rule adding the output head.

After a last layer that emits the output distribution's parameters itself (fvbn, nade, made:
``CausalFacts.emits_params``) there is no head; after any other, a 1x1 projection (mask B over
colour groups) maps the features to P parameters per position.

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("autoregressive m {\\n input x: vector[4] levels 2\\n made([8])\\n}\\n", "m.ar")
    >>> a.models["m"].sink.info.head is None, a.models["m"].sink.info.report
    (True, 'categorical: 2 parameters per position')
"""

from __future__ import annotations

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import check_groups
from flowdsl.layers.dependency_sets import group_allowed
from flowdsl.layers.distributions import CategoricalSpec
from flowdsl.layers.registry import OutputHead, SinkInfo

__all__ = ["output_head"]


def output_head(header, shape, last) -> SinkInfo:
    """The autoregressive sink rule: ``last`` is the last layer's LayerInfo (None without layers)."""
    out = header.output or CategoricalSpec()
    levels = header.input.levels
    if levels is None:
        raise SpecError(f"autoregressive model '{header.name}' needs a discrete input",
                        hint="add 'levels N' after the input type")
    if out.name == "bernoulli" and levels != 2:
        raise SpecError(f"output bernoulli needs binary data (levels 2), but the input has levels {levels}",
                        hint="use output categorical")
    p = out.params_per_position(levels)
    c = header.input.shape[0] if header.input.type_name == "image" else (
        header.input.shape[1] if len(header.input.shape) == 4 else 1)
    facts = dict(distribution=out.name, params_per_position=p, channels=c)
    if last is not None and last.causal is not None and last.causal.emits_params:
        return SinkInfo(params=0, report=f"{out.name}: {p} parameters per position", **facts)
    features = levels * c if last is None else shape[0]  # no layers: the head reads the one-hot input
    check_groups(features, c, "the number of features reaching the output head")
    head = OutputHead(in_features=features, out_features=c * p, channels=c,
                      allowed=group_allowed(c, strict=False) if c > 1 else None)
    return SinkInfo(params=features * c * p + c * p, head=head,
                    report=f"{out.name}: 1x1 head {features} -> {c * p} features ({p} per position)", **facts)
