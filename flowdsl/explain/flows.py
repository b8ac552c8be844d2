"""Pictures of a flow: coupling masks, each layer's Jacobian structure, the whole Jacobian, factored parts.

Everything comes from the dependency each layer declares in the IR
(:class:`flowdsl.layers.structure.Dependency`, what the coverage check reads): a coupling's kept
mask, the allowed Jacobian pattern ``matrix()``, and the positions a layer carries (``source``). A
layer's pattern is drawn in the order that shows its class in the lecture's taxonomy: kept
positions first for a coupling (block-triangular), the generation order for an autoregressive
layer (triangular), the group for a 1x1 convolution (block-diagonal); planar, radial and
Sylvester layers are identity + low rank; residual and continuous flows are dense.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "flow f {\\n input x: vector[4]\\n coupling additive(mask=half)\\n}\\n"
    >>> ir = analyze_source(text, "f.flow").models["f"]
    >>> taxonomy(ir.layers[0])
    'block-triangular'
    >>> structure_picture(ir).rows[0][0].image.tolist()   # kept 0, 1 first: [[I, 0], [*, D]]
    [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]]
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis.ir import LayerNode, ModelIR
from flowdsl.explain.pictures import MASK_CODES, READ_CODES, Panel, Picture, tile
from flowdsl.layers.freeform import PlanarSpec, RadialSpec, SylvesterSpec

__all__ = ["taxonomy", "display_order", "mask_picture", "structure_picture", "whole_jacobian", "jacobian_picture",
           "factored_parts", "factored_picture", "MAX_JACOBIAN"]

#: the whole Jacobian is composed for flows of at most this many dimensions
MAX_JACOBIAN = 4096
#: a layer's pattern is drawn up to this many dimensions
MAX_PATTERN = 1024

_TAXONOMY = {"elementwise": "diagonal", "permutation": "permutation", "coupling": "block-triangular",
             "groups": "block-diagonal", "autoregressive": "triangular", "explicit": "explicit pattern"}
_LOW_RANK = (PlanarSpec, RadialSpec, SylvesterSpec)


def taxonomy(node: LayerNode) -> str | None:
    """The class of the layer's Jacobian: diagonal, permutation, block-triangular, block-diagonal, triangular,
    identity + low rank, dense (None: no declared dependency, or a split)."""
    dep = node.dependency
    if dep is None:
        return None
    if dep.kind == "dense":
        return "identity + low rank" if isinstance(node.layer, _LOW_RANK) else "dense"
    return _TAXONOMY[dep.kind]


def display_order(node: LayerNode) -> np.ndarray:
    """The order of rows and columns that shows the layer's class."""
    dep = node.dependency
    assert dep is not None
    if dep.kind == "coupling":
        kept = dep._data()
        return np.concatenate([np.flatnonzero(kept), np.flatnonzero(~kept)])
    if dep.kind == "autoregressive":
        return np.argsort(dep._data(), kind="stable")
    if dep.kind == "groups":
        return np.argsort(dep._data(), kind="stable")
    return np.arange(dep.size)


def _planes(values: np.ndarray, shape) -> np.ndarray:
    values = np.asarray(values).reshape(shape)
    return tile(values) if len(shape) == 3 else values.reshape(1, -1)


def mask_picture(ir: ModelIR, limit: int = 24) -> Picture | None:
    """Each coupling layer's mask on the tensor it sees (channels side by side); None without couplings."""
    panels = []
    for node in ir.layers:
        dep = node.dependency
        if dep is None or dep.kind != "coupling" or node.in_shape is None:
            continue
        kept = dep._data().reshape(node.in_shape).astype(np.int64)
        mask = getattr(node.layer, "mask", None)
        what = mask.describe() if mask is not None and hasattr(mask, "describe") else node.key
        panels.append(Panel(f"{node.position}: {what}", _planes(kept, node.in_shape),
                            colours=(("transformed", MASK_CODES[0][1]), ("kept", MASK_CODES[1][1])),
                            xlabel=f"{list(node.in_shape)}" + (", channels side by side" if len(node.in_shape) == 3
                                                                else "")))
    if not panels:
        return None
    panels = panels[:limit]
    caption = "Each coupling's mask: kept positions condition the transformation of the others."
    rows = tuple(tuple(panels[i:i + 4]) for i in range(0, len(panels), 4))
    return Picture("coupling-masks", f"{ir.name}: coupling masks", caption, rows, {"couplings": len(panels)})


def structure_picture(ir: ModelIR) -> Picture | None:
    """The first layer of each Jacobian class, its allowed pattern in the order that shows the class."""
    seen, panels = set(), []
    for node in ir.layers:
        kind = taxonomy(node)
        dep = node.dependency
        if kind is None or dep is None or kind in seen or dep.size > MAX_PATTERN:
            continue
        seen.add(kind)
        order = display_order(node)
        pattern = dep.matrix()[np.ix_(order, order)].astype(np.int64)
        rank = f" (rank {node.meta.get('rank', 1)})" if kind == "identity + low rank" else ""
        panels.append(Panel(f"{kind}{rank}\n{node.position}: {node.key}", pattern, colours=READ_CODES,
                            xlabel="input", ylabel="output"))
    if not panels:
        return None
    caption = ("The Jacobian dy/dx of one layer of each kind, as the layer declares it (a cell may be nonzero): "
               "the structure that makes its log-determinant cheap.")
    rows = tuple(tuple(panels[i:i + 4]) for i in range(0, len(panels), 4))
    return Picture("jacobian-structure", f"{ir.name}: Jacobian structure per layer", caption, rows,
                   {"kinds": sorted(seen)})


def whole_jacobian(ir: ModelIR) -> np.ndarray | None:
    """``bool [N, N]``: which latent z_i (the base's input: the final output, then each factored part in
    reverse order of leaving) may depend on input x_j; None when too large or a layer declares nothing."""
    size = int(np.prod(ir.input.shape))
    if size > MAX_JACOBIAN or not ir.complete:
        return None
    reach = np.eye(size, dtype=bool)
    left: list[np.ndarray] = []
    for node in ir.layers:
        if node.factored is not None:
            keep = int(np.prod(node.out_shape or ()))
            left.append(reach[keep:])
            reach = reach[:keep]
            continue
        dep = node.dependency
        if dep is None:
            return None
        reach = _then(dep, reach)
    return np.concatenate([reach] + left[::-1], axis=0)


def _then(dep, reach: np.ndarray) -> np.ndarray:
    """``dep.matrix() @ reach`` (boolean), without the matrix product where the kind allows."""
    if dep.kind == "elementwise":
        return reach
    if dep.kind == "permutation":
        return reach[dep.source]
    if dep.kind == "coupling":
        kept = dep._data()
        out = reach.copy()
        out[~kept] |= reach[kept].any(axis=0)
        return out
    if dep.kind == "dense":
        return np.broadcast_to(reach.any(axis=0), reach.shape).copy()
    if dep.kind in ("groups", "autoregressive"):  # output i reads the inputs of its group / of rank <= its rank
        key = dep._data()
        order = np.argsort(key, kind="stable")
        values, first, counts = np.unique(key[order], return_index=True, return_counts=True)
        rows = reach[order]
        if dep.kind == "groups":
            per_key = np.logical_or.reduceat(rows, first, axis=0)
        else:
            per_key = np.logical_or.accumulate(rows, axis=0)[first + counts - 1]
        return per_key[np.searchsorted(values, key)]
    return (dep.matrix().astype(np.float32) @ reach.astype(np.float32)) > 0


def jacobian_picture(ir: ModelIR) -> Picture | None:
    whole = whole_jacobian(ir)
    if whole is None:
        return None
    n = whole.shape[0]
    lower = bool(not np.triu(whole, 1).any())
    kind = ("diagonal" if not (whole & ~np.eye(n, dtype=bool)).any() else "dense" if whole.all()
            else "triangular" if lower else "structured")
    facts = {"nonzero": int(whole.sum()), "size": n, "kind": kind}
    panel = Panel(f"dz/dx: {facts['nonzero']:,} of {n * n:,} entries may be nonzero", whole.astype(np.int64),
                  colours=READ_CODES, xlabel="input x_j", ylabel="latent z_i")
    caption = ("The whole flow's Jacobian, the boolean product of every layer's declared pattern "
               "(factored parts below the final output)" + f": {kind}.")
    return Picture("jacobian", f"{ir.name}: the whole Jacobian", caption, ((panel,),), facts)


def factored_parts(ir: ModelIR) -> np.ndarray | None:
    """``int [N]`` over the input: 1.. the split that factors each dimension out (in order), 0 the final
    output; the positions follow each layer's ``source`` (squeezes) like the coverage check; None if the flow
    has no split."""
    if not ir.latents or not ir.complete:
        return None
    size = int(np.prod(ir.input.shape))
    origin = np.arange(size)
    part = np.zeros(size, dtype=np.int64)
    k = 0
    for node in ir.layers:
        if node.factored is not None:
            k += 1
            keep = int(np.prod(node.out_shape or ()))
            part[origin[keep:]] = k
            origin = origin[:keep]
        elif node.dependency is not None:
            origin = origin[node.dependency.source]
    return part


def factored_picture(ir: ModelIR) -> Picture | None:
    part = factored_parts(ir)
    if part is None:
        return None
    splits = int(part.max())
    palette = ["#2b6cb0", "#f6ad55", "#68d391", "#e53e3e", "#9f7aea", "#ed64a6", "#4fd1c5", "#a0aec0"]
    colours = (("final output", palette[0]),) + tuple(
        (f"split {k} (layer {pos})", palette[k % len(palette)]) for k, (pos, _) in enumerate(ir.latents, start=1))
    panel = Panel("where each input dimension leaves the flow", _planes(part, ir.input.shape), colours=colours,
                  xlabel=f"input {list(ir.input.shape)}" + (", channels side by side" if len(ir.input.shape) == 3
                                                            else ""))
    caption = (f"Multi-scale: {splits} split{'s' if splits != 1 else ''} factor parts out to the base early; each "
               f"input dimension is coloured by where it leaves.")
    return Picture("factored", f"{ir.name}: factored-out parts", caption, ((panel,),),
                   {"splits": splits, "final": int((part == 0).sum())})

