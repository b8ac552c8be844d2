"""Model-level rules of autoregressive families that read more than one layer.

- :func:`check_residual_streams`: consecutive ``gated_residual`` blocks share one residual
  stream, so their widths must agree (an error);
- :func:`check_attention_patterns`: a note with each attention pattern's density;
- :func:`dilation_schedule`: the receptive-field note's detail for dilated stacks.

They are listed, in order, in the model-kind registry (:mod:`flowdsl.analysis.kinds`).

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive w {\\n input x: sequence[64] levels 4\\n embed(dim=8)\\n"
    >>> text += " for d in [1, 2, 4] { causal_conv(kernel=2, dilation=d, channels=8) }\\n}\\n"
    >>> dilation_schedule(analyze_source(text, "w.ar").models["w"])
    '1 stack of dilations 1..4, kernel 2'
"""

from __future__ import annotations

from flowdsl.analysis.ir import ModelIR
from flowdsl.errors import Diagnostic
from flowdsl.layers.ar_attention import AttentionSpec
from flowdsl.layers.ar_sequence import GatedResidualSpec, describe_dilations

__all__ = ["check_residual_streams", "check_attention_patterns", "dilation_schedule"]


def dilation_schedule(model: ModelIR) -> str | None:
    """The stacks of dilated layers ("3 stacks of dilations 1..512, kernel 2"), or None.

    A stack is a run of dilated layers (not the model's first layer) whose dilation keeps growing.
    """
    runs: list[tuple[list[int], list[int]]] = []
    for node in model.layers:
        meta = node.meta
        if "dilation" not in meta or meta.get("first"):
            continue
        if not runs or meta["dilation"] <= runs[-1][0][-1]:
            runs.append(([], []))
        runs[-1][0].append(meta["dilation"])
        runs[-1][1].append(meta["kernel"])
    if not runs or max(max(d) for d, _ in runs) == 1:
        return None
    return describe_dilations([(tuple(d), tuple(k)) for d, k in runs])


def check_residual_streams(model: ModelIR, limits) -> list[Diagnostic]:
    """Consecutive gated_residual blocks share one residual stream, so their widths must agree."""
    prev, out = None, []
    for node in model.layers:
        layer = node.layer
        if (isinstance(layer, GatedResidualSpec) and isinstance(prev, GatedResidualSpec)
                and prev.residual != layer.residual):
            out.append(Diagnostic(node.pos, "error",
                                  f"gated_residual continues a residual stream of {prev.residual} features, but "
                                  f"declares residual={layer.residual}",
                                  f"use residual={prev.residual} in every block of the stack"))
        prev = layer
    return out


def check_attention_patterns(model: ModelIR, limits) -> list[Diagnostic]:
    """A note with each attention pattern's density (attended pairs / causal pairs), once per pattern."""
    seen, out = set(), []
    for node in model.layers:
        layer, meta = node.layer, node.meta
        if not isinstance(layer, AttentionSpec) or layer.pattern in seen:
            continue
        seen.add(layer.pattern)
        attended, causal = meta["density"]
        labels = layer.pattern.labels()
        heads = "; ".join(f"head{'s' if len(hs) > 1 else ''} {', '.join(map(str, hs))}: {name}"
                          for name, hs in _heads_by_set(meta["head_sets"], labels).items())
        out.append(Diagnostic(node.pos, "note",
                              f"attention pattern {layer.pattern.describe()} is causal and attends {attended:,} of "
                              f"{causal:,} causal pairs ({100.0 * attended / causal:.1f}%); {heads}"))
    return out


def _heads_by_set(assign, labels) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for h, ks in enumerate(assign):
        out.setdefault(" + ".join(labels[k] for k in ks), []).append(h)
    return out
