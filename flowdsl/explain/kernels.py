"""Pictures of masked convolution kernels: masks A and B, and the R-G-B channel groups of colour images.

The kernel a ``masked_conv`` layer is built with, :func:`flowdsl.layers.ar_conv.kernel_mask`, is made
from the taps its dependency rule propagates (:func:`flowdsl.layers.ar_conv.masked_taps`). It is
drawn with one feature per colour group: block (out group, in group) is the ``k x k`` kernel from
that input group to that output group.

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive m {\\n input x: image[1, 4, 4] levels 2\\n"
    >>> text += " masked_conv(mask=A, kernel=3, channels=4)\\n}\\n"
    >>> picture = masks_picture(analyze_source(text, "m.ar").models["m"])
    >>> picture.rows[0][0].image.tolist()
    [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis.ir import ModelIR
from flowdsl.explain.pictures import GAP, MASK_CODES, POSITION_CODES, Panel, Picture, tile
from flowdsl.layers.ar_conv import GatedBlockSpec, MaskedConv, kernel_mask
from flowdsl.layers.dependency_sets import DepContext, DepMaps, layout_of, unpack

__all__ = ["block_grid", "unblock", "conv_masks", "masks_picture", "stack_sets", "stacks_picture", "GROUP_NAMES"]

GROUP_NAMES = {3: ("R", "G", "B")}


def block_grid(blocks: np.ndarray) -> np.ndarray:
    """``[G, G, k, k]`` -> ``[G * (k + 1) - 1, G * (k + 1) - 1]``: block (o, i) at row o, column i."""
    g, _, k, _ = blocks.shape
    rows = [tile(blocks[o]) for o in range(g)]
    gap = np.full((1, rows[0].shape[1]), GAP, dtype=np.int64)
    parts: list[np.ndarray] = []
    for o, row in enumerate(rows):
        parts += ([gap] if o else []) + [row]
    return np.concatenate(parts, axis=0)


def unblock(image: np.ndarray, g: int) -> np.ndarray:
    """The inverse of :func:`block_grid`."""
    k = (image.shape[0] + 1) // g - 1
    return np.stack([np.stack([image[o * (k + 1): o * (k + 1) + k, i * (k + 1): i * (k + 1) + k]
                               for i in range(g)]) for o in range(g)])


def conv_masks(ir: ModelIR) -> list[tuple[str, np.ndarray]]:
    """``(label, bool [G, G, k, k])`` of each distinct masked convolution of the model (one feature a group)."""
    seen, out = set(), []
    for node in ir.layers:
        layer = node.layer
        if not isinstance(layer, MaskedConv) or node.info is None:
            continue
        g, k = int(node.meta["groups"]), layer.kernel
        key = (layer.mask, k, g)
        if key in seen:
            continue
        seen.add(key)
        mask = kernel_mask(g, g, (k, k), (k // 2, k // 2), layer.mask, g)
        out.append((f"mask {layer.mask}, {k}x{k}" + (f", {g} groups" if g > 1 else ""), mask))
    return out


def masks_picture(ir: ModelIR) -> Picture | None:
    """One panel per distinct masked convolution; None when the model has none."""
    masks = conv_masks(ir)
    if not masks:
        return None
    panels = []
    for label, mask in masks:
        g = mask.shape[0]
        names = GROUP_NAMES.get(g, tuple(str(i) for i in range(g)))
        axes = f"out groups {', '.join(names)} down, in groups across" if g > 1 else ""
        panels.append(Panel(label, block_grid(mask.astype(np.int64)), colours=MASK_CODES, xlabel=axes,
                            ticks=g == 1))
    caption = ("The kernels of the masked convolutions: a 1 is a tap the layer reads. Mask A hides the centre "
               "pixel from the first layer (on colour images: the current and later channel groups); mask B lets "
               "a group read itself at the centre.")
    return Picture("masks", f"{ir.name}: masked convolution kernels", caption, (tuple(panels),),
                   {"kernels": len(panels)})


def stack_sets(ir: ModelIR) -> tuple[int, dict[str, np.ndarray]] | None:
    """The first ``gated_block``'s rule run on the input itself: ``(pixel, {stream: bool [N]})``, what the
    vertical stack and the block's output at the centre pixel read; None without a gated block."""
    node = next((n for n in ir.layers if isinstance(n.layer, GatedBlockSpec) and n.info is not None), None)
    if node is None:
        return None
    layout = layout_of(ir.input.type_name, ir.input.shape)
    ctx = DepContext(layout, node.position, tuple(node.in_shape or ()), tuple(node.out_shape or ()), node.meta)
    layer = node.layer
    assert isinstance(layer, GatedBlockSpec)
    maps = layer.dependencies(DepMaps.identity(layout), ctx)
    p = int(layout.index[0, layout.grid[0] // 2, layout.grid[1] // 2])
    pixel = layout.coords(np.array([p]))[0]
    sets = {}
    for name, stream in (("vertical", maps.get("vertical")), ("output", maps.main)):
        if stream is not None:
            sets[name] = unpack(stream[0][tuple(pixel)], layout.n)
    return p, sets


def stacks_picture(ir: ModelIR) -> Picture | None:
    """What the first gated block's vertical stack and output read at the centre pixel (its own rule, run on
    the input): the vertical stack sees the current row, so only its shift down one row reaches the output."""
    found = stack_sets(ir)
    if found is None:
        return None
    p, sets = found
    layout = layout_of(ir.input.type_name, ir.input.shape)
    panels = []
    titles = {"vertical": "vertical stack (before its shift)", "output": "block output: horizontal + shifted vertical"}
    for name, reads in sets.items():
        codes = np.zeros(layout.n, dtype=np.int64)
        codes[reads] = 1
        codes[p] = 3 if not reads[p] else 1
        image = codes[layout.index[0]] if layout.channels == 1 else tile(codes[layout.index])
        panels.append(Panel(titles[name], image, colours=POSITION_CODES))
    caption = ("The first gated block's own dependency rule on the input: the vertical stack reads a k-wide window "
               "of the rows up to the current one (later pixels of the current row included), so it reaches the "
               "horizontal stack only shifted down one row; together they cover every earlier pixel: no blind spot.")
    return Picture("stacks", f"{ir.name}: vertical and horizontal stacks", caption, (tuple(panels),),
                   {"vertical": int(sets["vertical"].sum()) if "vertical" in sets else 0,
                    "output": int(sets["output"].sum())})
