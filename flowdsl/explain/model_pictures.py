"""Which pictures a model gets, and the position they are drawn for (``--position``).

Autoregressive models: what one prediction reads (``reads``), the receptive field layer by layer
(``layers``), masked-convolution kernels (``masks``), a gated block's two stacks (``stacks``),
attention heads (``attention``) and their reachability (``reach``), and a MADE's connectivity
(``made``). Flows: coupling masks, each layer's Jacobian structure, the whole Jacobian, the
factored-out parts of multi-scale flows and the MADE of an autoregressive layer. A picture that
does not apply to a model is left out.

A position is a flat index into the input (``37``) or its coordinates, every axis (``0,4,4``) or the
grid without the channel (``4,4``: channel 0). The default is the position where the checker found
the worst blind spot, else the centre pixel of an image (of the last frame of a video), else the last
generated position of a vector or sequence.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive m {\\n input x: image[1, 4, 4] levels 2\\n masked_conv(mask=A, channels=4)\\n}\\n"
    >>> ir = analyze_source(text, "m.ar").models["m"]
    >>> parse_position("1,1", ir), default_position(ir)
    (5, 10)
    >>> [p.name for p in model_pictures(ir)]
    ['reads', 'layers', 'masks']
    >>> try:
    ...     parse_position("4,0", ir)
    ... except ExplainError as err:
    ...     print(err.diagnostics[0].message)
    --position 4,0 is outside the input image[1, 4, 4] (rows 0..3, columns 0..3)
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis import receptive
from flowdsl.analysis.causality import analyze
from flowdsl.analysis.ir import ModelIR
from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.explain import attention, flows, kernels, made, reads
from flowdsl.explain.pictures import Picture

__all__ = ["ExplainError", "explain_error", "parse_position", "default_position", "model_pictures",
           "AR_PICTURES", "FLOW_PICTURES"]

AR_PICTURES = ("reads", "layers", "masks", "stacks", "attention", "reach", "made")
FLOW_PICTURES = ("coupling-masks", "jacobian-structure", "jacobian", "factored", "made")


class ExplainError(FlowDSLError):
    """A bad argument of ``flowdsl explain``: one line, ``flowdsl explain: error: ...``."""


def explain_error(message: str, hint: str | None = None) -> ExplainError:
    return ExplainError([Diagnostic(Pos("flowdsl explain"), "error", message, hint)])


_AXES = {1: ("positions",), 3: ("channels", "rows", "columns"), 4: ("frames", "channels", "rows", "columns")}


def _describe(ir: ModelIR) -> str:
    return f"{ir.input.type_name}[{', '.join(map(str, ir.input.shape))}]"


def parse_position(text: str, ir: ModelIR) -> int:
    """The flat input index ``text`` names (see the module docstring)."""
    if ir.kind != "autoregressive":
        raise explain_error(f"--position applies to autoregressive models; '{ir.name}' is a flow")
    shape = tuple(int(v) for v in ir.input.shape)
    try:
        coords = [int(part) for part in text.replace("(", "").replace(")", "").split(",")]
    except ValueError:
        raise explain_error(f"--position must be an index or comma-separated coordinates, got '{text}'") from None
    axes, channel = _AXES[len(shape)], _AXES[len(shape)].index("channels") if len(shape) >= 3 else None
    if len(coords) == 1:
        names, sizes = ["flat index"], [int(np.prod(shape))]
    elif len(coords) == len(shape):
        names, sizes = list(axes), list(shape)
    elif channel is not None and len(coords) == len(shape) - 1:
        names = [a for k, a in enumerate(axes) if k != channel]
        sizes = [s for k, s in enumerate(shape) if k != channel]
    else:
        takes = "1" if len(shape) == 1 else f"1, {len(shape) - 1} or {len(shape)}"
        raise explain_error(f"--position {text} has {len(coords)} coordinates; the input {_describe(ir)} takes "
                            f"{takes}")
    if any(not 0 <= c < s for c, s in zip(coords, sizes)):
        ranges = ", ".join(f"{a} 0..{s - 1}" for a, s in zip(names, sizes))
        raise explain_error(f"--position {text} is outside the input {_describe(ir)} ({ranges})")
    if len(coords) == 1:
        return coords[0]
    if len(coords) < len(shape):
        assert channel is not None
        coords.insert(channel, 0)
    return int(np.ravel_multi_index(tuple(coords), shape))


def default_position(ir: ModelIR) -> int:
    """Where the checker found the worst blind spot, if any; else the centre pixel (channel 0) of an image or
    of a video's last frame, or the last generated position of a vector or sequence."""
    result = analyze(ir)
    layout = result.layout
    if result.final is not None:
        count, worst, _ = receptive.blind_spots(result.final, layout, reads.ranks(result))
        if count:
            return int(worst)
    if len(layout.grid) == 2:
        return int(layout.index[0, layout.grid[0] // 2, layout.grid[1] // 2])
    if len(layout.grid) == 3:
        return int(layout.index[0, -1, layout.grid[1] // 2, layout.grid[2] // 2])
    return int(analyze(ir).orders[0][-1])


def _ar_pictures(ir: ModelIR, p: int) -> list[Picture | None]:
    return [reads.reads_picture(ir, p), reads.layers_picture(ir, p), kernels.masks_picture(ir),
            kernels.stacks_picture(ir), attention.attention_picture(ir), attention.reach_picture(ir),
            made.made_picture(ir)]


def _flow_pictures(ir: ModelIR) -> list[Picture | None]:
    return [flows.mask_picture(ir), flows.structure_picture(ir), flows.jacobian_picture(ir),
            flows.factored_picture(ir), made.made_picture(ir)]


def model_pictures(ir: ModelIR, position: int | None = None, only: tuple[str, ...] = ()) -> list[Picture]:
    """The pictures of one checked model (``only``: those names), in the order listed above."""
    if not ir.complete:
        raise explain_error(f"model '{ir.name}' has errors: run flowdsl check {ir.header.file}")
    if ir.kind == "autoregressive":
        result = analyze(ir)
        if result.final is None:
            raise explain_error(f"model '{ir.name}' did not pass the causality check: run flowdsl check "
                                f"{ir.header.file}")
        found = _ar_pictures(ir, default_position(ir) if position is None else position)
    else:
        found = _flow_pictures(ir)
    return [p for p in found if p is not None and (not only or p.name in only)]
