"""Translation-invariant models: the causality check on a compressed grid instead of the whole input.

A layer is *translation-invariant* when its dependency rule is "output s reads input s + o for
each of a fixed set of offsets o (per channel group), zero outside the grid": masked and gated
convolutions, dilated causal 1-d convolutions, residual and 1x1 layers (:data:`REACH` lists them,
each with the offsets its rule can move by along each axis). In a model made only of such layers,
every path from position s stays inside the window ``[s - L, s + U]`` (per axis, L and U the summed
backward and forward reach of the layers), so what s reads, relative to s, depends only on where
the grid's borders cut that window: on ``(min(s, L), min(D - 1 - s, U))`` per axis. A grid of
``L + U + 1`` positions per axis holds every such class once, and its middle position stands for
all the interior of a larger grid (:class:`Compressed`). The dense engine run on that small grid
therefore gives, exactly, every per-position fact of the large one: the verdict, the first
offending position in generation order (mapped back by :meth:`Compressed.to_real`), how many
positions offend (each class weighted by how many real positions it stands for), the receptive
field, the most positions read, and the blind spots (per position, from its own reads).

The compression applies when every layer is listed, the input is a vector, sequence or image in
raster order, and each axis of the grid is at least ``L + U + 1`` long; otherwise the dense check
runs as before.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive w {\\n input x: sequence[100000] levels 4\\n embed(dim=8)\\n"
    >>> text += " for d in [1, 2, 4] { causal_conv(kernel=2, dilation=d, channels=8) }\\n}\\n"
    >>> small = compressed(analyze_source(text, "w.ar").models["w"])
    >>> small.layout.grid, int(small.weights.sum())   # 9 classes stand for the 100,000 positions
    ((9,), 100000)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

import numpy as np

from flowdsl.analysis.ir import ModelIR
from flowdsl.layers.ar_conv import masked_taps
from flowdsl.layers.dependency_sets import Layout, layout_of

__all__ = ["REACH", "Compressed", "compressed", "model_reach"]

Reach = tuple[tuple[int, ...], tuple[int, ...]]  # (backward reach per axis, forward reach per axis), both >= 0


def _of_offsets(offsets: Sequence[Sequence[int]], ndim: int) -> Reach:
    offs = np.asarray([tuple(o) for o in offsets] or [(0,) * ndim], dtype=np.int64).reshape(-1, ndim)
    back, ahead = np.maximum(-offs.min(axis=0), 0), np.maximum(offs.max(axis=0), 0)
    return tuple(int(v) for v in back), tuple(int(v) for v in ahead)


def _masked(kernel: int, mask: str) -> Reach:
    return _of_offsets([off for off, _ in masked_taps((kernel, kernel), (kernel // 2, kernel // 2), mask, 1)], 2)


def _gated(node) -> Reach:  # vertical stack rows -k//2..0 (and the link one row further up), columns +-k//2
    k = node.layer.kernel
    return (k // 2 + 1, k // 2), (0, k // 2)


def _pointwise(node) -> Reach:
    ndim = max(len(tuple(node.out_shape or ())) - 1, 1)
    return (0,) * ndim, (0,) * ndim


#: layer name -> its reach, for the layers whose dependency rule is translation-invariant (zero padding)
REACH: dict[str, Callable[..., Reach]] = {
    "masked_conv": lambda node: _masked(node.layer.kernel, "A"),
    "nonparametric": lambda node: _masked(node.layer.window, "A"),
    "gated_block": _gated,
    "conv1x1": _pointwise,
    "relu": _pointwise,
    "mlp": _pointwise,
    "embed": lambda node: ((1,), (0,)),
    "causal_conv": lambda node: _of_offsets([(o,) for o in node.meta["offsets"]], 1),
    "gated_residual": lambda node: _of_offsets([(o,) for o in node.meta["offsets"]], 1),
    "bytenet_block": lambda node: _of_offsets([(o,) for o in node.meta["offsets"]], 1),
}


def model_reach(model: ModelIR, ndim: int) -> Reach | None:
    """The summed reach of the model's layers, or None when a layer is not translation-invariant."""
    back, ahead = np.zeros(ndim, dtype=np.int64), np.zeros(ndim, dtype=np.int64)
    for node in model.layers:
        rule = REACH.get(node.layer.name)
        causal = node.causal
        if rule is None or getattr(node.layer, "dependencies", None) is None or (
                causal is not None and (causal.orders is not None or causal.full_reach)):
            return None
        lo, hi = rule(node)
        if len(lo) != ndim or len(hi) != ndim:
            return None
        back += lo
        ahead += hi
    return tuple(int(v) for v in back), tuple(int(v) for v in ahead)


@dataclass(frozen=True, eq=False)
class Compressed:
    """The compressed grid of a model on ``real``: ``layout`` (L + U + 1 per axis), each of its positions' weight
    (how many real positions share its class) and the map of its positions to the first real one of the class."""

    real: Layout
    layout: Layout
    back: tuple[int, ...]
    weights: np.ndarray  # int64 [n]: real positions per compressed position

    def to_real(self, p: int, q: int) -> tuple[int, int]:
        """Compressed position ``p`` and a position ``q`` it reads, as the first real position (in raster order) of
        ``p``'s class and the position at the same offset from it (channels unchanged)."""
        (cp, *sp), (cq, *sq) = (tuple(int(v) for v in np.argwhere(self.layout.index == int(x))[0]) for x in (p, q))
        shift = [d - e for d, e in zip(self.real.grid, self.layout.grid)]
        rp = tuple(v if v <= b else v + sh for v, b, sh in zip(sp, self.back, shift))
        rq = tuple(r + b - a for r, a, b in zip(rp, sp, sq))
        return int(self.real.index[(cp, *rp)]), int(self.real.index[(cq, *rq)])


def compressed(model: ModelIR) -> Compressed | None:
    """The compressed grid, or None where it does not apply (a layer that is not translation-invariant, an input
    other than a vector, sequence or image, or a grid too small to gain from it)."""
    shape = tuple(int(s) for s in model.input.shape)
    if model.input.type_name not in ("vector", "sequence", "image") or len(shape) not in (1, 3):
        return None
    real = layout_of(model.input.type_name, shape)
    reach = model_reach(model, len(real.grid))
    if reach is None:
        return None
    back, ahead = reach
    grid = tuple(b + a + 1 for b, a in zip(back, ahead))
    if any(g > d for g, d in zip(grid, real.grid)) or prod(grid) >= prod(real.grid):
        return None
    small = layout_of(model.input.type_name, (shape[0], *grid) if len(shape) == 3 else grid)
    per_axis = []
    for b, g, d in zip(back, grid, real.grid):
        w = np.ones(g, dtype=np.int64)
        w[b] = d - g + 1  # the middle position stands for the interior
        per_axis.append(w)
    weight_grid = per_axis[0] if len(per_axis) == 1 else np.multiply.outer(per_axis[0], per_axis[1])
    weights = np.empty(small.n, dtype=np.int64)
    for c in range(small.channels):
        weights[small.index[c].reshape(-1)] = weight_grid.reshape(-1)
    return Compressed(real, small, back, weights)
