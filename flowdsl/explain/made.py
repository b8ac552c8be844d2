"""Pictures of a MADE: its masks, the unit network (inputs -> hidden -> outputs) and the mask product.

The masks are the ones the checker proves and the runtime builds: for a ``made`` model layer
:func:`flowdsl.layers.ar_basic.made_layer_masks`, for an autoregressive flow layer
:func:`flowdsl.layers.made_masks.analyze` on the order and hidden sizes its rule recorded. The mask
product (:attr:`MadeStructure.connectivity`) is drawn in the generation order, where a causal MADE is
strictly lower triangular.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive m {\\n input x: vector[3] levels 2\\n"
    >>> text += " made([4], order=reverse)\\n output bernoulli\\n}\\n"
    >>> picture = made_picture(analyze_source(text, "m.ar").models["m"])
    >>> [p.title for p in picture.rows[0]]
    ['units (mask 0 of 1)', 'mask product in generation order']
    >>> picture.rows[0][1].image.tolist()
    [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis.ir import LayerNode, ModelIR
from flowdsl.explain.pictures import MASK_CODES, READ_CODES, Network, Panel, Picture
from flowdsl.layers import made_masks
from flowdsl.layers.ar_basic import MadeModel, made_layer_masks

__all__ = ["made_masks_of", "made_picture", "MAX_UNITS"]

#: the unit network is drawn when the MADE has at most this many units in its widest layer
MAX_UNITS = 24


def made_masks_of(ir: ModelIR, node: LayerNode):
    """``(masks [out, in] ..., connectivity [D, D], order, configurations, params_major)`` of a MADE layer, or
    None; ``params_major``: output ``p * D + i`` is parameter p of dimension i (else ``i * P + p``)."""
    layer, meta = node.layer, node.meta
    if node.info is None:
        return None
    if isinstance(layer, MadeModel):
        d, f, p = meta["positions"], meta["in_features"], meta["params_per_position"]
        orders, per_mask = made_layer_masks(layer, d, f, p, meta.get("context", 0))
        masks, conn = per_mask[0]
        return masks, conn, np.asarray(orders[0]), len(per_mask), False
    if "perm" in meta and "hidden" in meta:  # an autoregressive flow layer's made net
        # the layer reads the encoded condition flattened: its features feed every hidden unit
        context = ir.header.condition.encoded.features if ir.header.condition and node.reads_condition else 0
        s = made_masks.analyze(np.asarray(meta["perm"]), meta["hidden"], meta["params_per_dim"], context)
        return s.masks, s.connectivity, s.perm, 1, True
    return None


def _network(masks, d: int, params_major: bool) -> Network:
    """Units labelled by the dimension they carry (inputs: position-major features; outputs: position-major
    parameters, as the model's masks are built); hidden units unlabelled."""
    sizes = [masks[0].shape[1]] + [m.shape[0] for m in masks]
    inputs = tuple(str(u // max(1, sizes[0] // d)) for u in range(sizes[0]))
    outputs = tuple(str(u % d if params_major else u // max(1, sizes[-1] // d)) for u in range(sizes[-1]))
    ends = [inputs, outputs]
    labels = (ends[0],) + tuple(("",) * s for s in sizes[1:-1]) + (ends[1],)
    titles = ("in",) + tuple(f"h{k + 1}" for k in range(len(masks) - 1)) + ("out",)
    return Network(tuple(np.asarray(m, dtype=bool) for m in masks), labels, titles)


def made_picture(ir: ModelIR) -> Picture | None:
    """The first MADE of the model: the unit network when small (else each mask as a matrix), and the mask
    product in generation order; None without a MADE."""
    for node in ir.layers:
        found = made_masks_of(ir, node)
        if found is None:
            continue
        masks, conn, order, configs, major = found
        product = np.asarray(conn, dtype=bool)[np.ix_(order, order)].astype(np.int64)
        panels: list[Panel] = []
        if max(max(m.shape) for m in masks) <= MAX_UNITS:
            panels.append(Panel(f"units (mask 0 of {configs})", network=_network(masks, len(order), major)))
        else:
            panels += [Panel(f"mask {k + 1} [{m.shape[0]} x {m.shape[1]}]", np.asarray(m, dtype=np.int64),
                             colours=MASK_CODES, xlabel="in unit", ylabel="out unit") for k, m in enumerate(masks)]
        panels.append(Panel("mask product in generation order", product, colours=READ_CODES,
                            xlabel="input (k-th generated)", ylabel="output (k-th generated)"))
        lost = int(np.tri(len(order), k=-1, dtype=bool).sum() - product.sum())
        caption = (f"Layer {node.position} ({node.layer.describe()}): the masks and their boolean product "
                   f"(some path joins input j to output i), strictly lower triangular in the generation order"
                   + (f"; {lost} earlier inputs are out of reach" if lost else "") + ".")
        return Picture("made", f"{ir.name}: MADE connectivity", caption, (tuple(panels),),
                       {"layer": node.position, "lost": lost, "configurations": configs})
    return None
