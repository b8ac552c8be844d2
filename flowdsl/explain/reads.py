"""Pictures of what a prediction reads: one position's read set, its blind spot, the generation order, per layer.

Every set comes from the causality engine (:func:`flowdsl.analysis.causality.analyze`): the final
sets the checker proves, and the per-layer main streams it records while propagating. The blind
spot of one position is measured with the same bounding-box geometry as the checker's blind-spot
warning (:mod:`flowdsl.analysis.receptive`).

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive m {\\n input x: image[1, 4, 4] levels 2\\n masked_conv(mask=A, channels=4)\\n}\\n"
    >>> ir = analyze_source(text, "m.ar").models["m"]
    >>> picture = reads_picture(ir, 5)            # pixel (1, 1)
    >>> picture.rows[0][0].image.tolist()         # 1 read, 3 the pixel, 4 earlier not read, 0 later
    [[1, 1, 1, 4], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    >>> picture.facts["read"], picture.facts["blind"]
    (4, 0)
"""

from __future__ import annotations

import numpy as np

from flowdsl.analysis import receptive
from flowdsl.analysis.causality import Analysis, _per_position, analyze
from flowdsl.analysis.ir import ModelIR
from flowdsl.explain.pictures import POSITION_CODES, Panel, Picture, tile
from flowdsl.layers.dependency_sets import Layout, unpack

__all__ = ["ranks", "blind_set", "position_codes", "grid_image", "window", "reads_picture", "layers_picture",
           "compare_picture", "MAX_MATRIX"]

#: a dependency matrix is drawn whole up to this many positions (else its last block of this size)
MAX_MATRIX = 512
#: the zoomed panel of a long causal stack: this many inputs before the position
ZOOM = 40


def ranks(result: Analysis) -> np.ndarray:
    """``rank[q]``: when position q is generated (configuration 0)."""
    rank = np.empty(result.layout.n, dtype=np.int64)
    rank[result.orders[0]] = np.arange(result.layout.n)
    return rank


def blind_set(final: np.ndarray, layout: Layout, rank: np.ndarray, p: int) -> np.ndarray:
    """``bool [N]``: earlier positions inside the bounding box of what p reads (and p) that p cannot read.

    The geometry of :func:`flowdsl.analysis.receptive.blind_spots`, for one position."""
    n, rows = layout.n, np.array([p])
    one_d = len(layout.grid) == 1
    grid = (n,) if one_d else layout.grid
    view = receptive._grid_view(unpack(final[rows], n), layout, rank)
    own = receptive._coords(layout, rank, rows)
    box = receptive._frame_boxes(view, own, grid) if len(grid) == 3 else receptive._box(view, own, grid)
    rank_view = np.arange(n)[None, :] if one_d else rank[layout.index]
    earlier = rank_view[None] < rank[rows].reshape((-1,) + (1,) * rank_view.ndim)
    blind = (box[:, None] & earlier & ~view)[0]
    out = np.zeros(n, dtype=bool)
    if one_d:
        out[np.argsort(rank)[blind.reshape(-1)]] = True
    else:
        out[layout.index[blind]] = True
    return out


def position_codes(reads: np.ndarray, blind: np.ndarray, rank: np.ndarray, p: int) -> np.ndarray:
    """Codes of :data:`POSITION_CODES` over the flattened positions."""
    codes = np.where(rank < rank[p], 4, 0).astype(np.int64)
    codes[reads] = 1
    codes[blind] = 2
    codes[p] = 3
    return codes


def grid_image(values: np.ndarray, layout: Layout) -> np.ndarray:
    """Flattened per-position values as a 2-D image: a row (vectors, sequences), the channels of an
    image side by side, or the frames of a video (each frame's channels side by side) side by side."""
    values = np.asarray(values)
    if len(layout.grid) == 1:
        return values[None, :]
    planes = values[layout.index]  # [C, *grid]
    if len(layout.grid) == 3:  # video: [C, T, H, W] -> frames, then channels
        planes = planes.transpose(1, 0, 2, 3).reshape(-1, *layout.grid[1:])
    return tile(planes) if planes.shape[0] > 1 else planes[0]


def window(layout: Layout, interesting: np.ndarray, p: int, margin: int = 2) -> slice:
    """The columns of a long 1-d strip worth drawing: from the first interesting position to p."""
    if len(layout.grid) != 1 or layout.n <= 256:
        return slice(0, layout.n)
    idx = np.flatnonzero(interesting)
    lo = int(idx.min()) if len(idx) else p
    return slice(max(0, min(lo, p) - margin), min(layout.n, max(p, int(idx.max()) if len(idx) else p) + margin + 1))


def _where(layout: Layout, p: int) -> str:
    return layout.describe(p)


def _strip(codes: np.ndarray, layout: Layout, cols: slice, title: str, **kw) -> Panel:
    image = grid_image(codes, layout)
    if len(layout.grid) == 1:
        return Panel(title, image[:, cols], origin=(cols.start, 0), xlabel="position", **kw)
    return Panel(title, image, **kw)


def reads_picture(ir: ModelIR, p: int) -> Picture:
    """Position p: what its prediction reads, its blind spot, the generation order (and, on 1-d inputs,
    the whole dependency matrix in generation order)."""
    result = analyze(ir)
    layout, rank = result.layout, ranks(result)
    assert result.final is not None
    deps = unpack(result.final[p], layout.n)
    blind = blind_set(result.final, layout, rank, p)
    codes = position_codes(deps, blind, rank, p)
    cols = window(layout, deps | blind, p)
    order = grid_image(rank, layout).astype(float)
    small = order.size <= 100
    order_panel = Panel("generation order", order[:, cols] if len(layout.grid) == 1 else order, colours=(),
                        numbers=(grid_image(rank, layout)[:, cols] if len(layout.grid) == 1 else
                                 grid_image(rank, layout)) if small else None,
                        origin=(cols.start, 0) if len(layout.grid) == 1 else (0, 0))
    first = [_strip(codes, layout, cols, f"position {_where(layout, p)}", colours=POSITION_CODES), order_panel]
    rows: list[tuple[Panel, ...]] = [tuple(first)]
    if len(layout.grid) == 1:
        rows.append((_matrix_panel(result, rank),))
    facts = {"position": _where(layout, p), "read": int(deps.sum()), "blind": int(blind.sum()),
             "earlier": int((rank < rank[p]).sum())}
    caption = (f"The prediction of position {facts['position']} reads {facts['read']} of the {facts['earlier']} "
               f"earlier positions" + (f"; {facts['blind']} earlier positions inside its receptive field are a blind "
                                       f"spot" if facts["blind"] else "; no blind spot") + ".")
    return Picture("reads", f"{ir.name}: what one prediction reads", caption, tuple(rows), facts)


def _matrix_panel(result: Analysis, rank: np.ndarray) -> Panel:
    n = result.layout.n
    order = result.orders[0]
    keep = order[-MAX_MATRIX:] if n > MAX_MATRIX else order
    assert result.final is not None
    deps = unpack(result.final[keep], n)[:, keep]
    title = "every prediction, in generation order" + (f" (last {MAX_MATRIX})" if n > MAX_MATRIX else "")
    codes = np.where(np.tri(len(keep), k=-1, dtype=bool), 4, 0)
    codes[deps] = 1
    return Panel(title, codes, colours=POSITION_CODES, xlabel="reads position", ylabel="prediction",
                 origin=(n - len(keep), n - len(keep)))


def layer_sets(ir: ModelIR, p: int) -> list[tuple[str, np.ndarray]]:
    """``(layer label, bool [N])``: what the output at p's place reads after each layer (config 0), the
    layers that leave the set as it was skipped."""
    result = analyze(ir)
    out: list[tuple[str, np.ndarray]] = []
    for node, main in result.layers:
        reads = unpack(_per_position(main, result.layout)[p], result.layout.n)
        if out and np.array_equal(out[-1][1], reads):
            continue
        out.append((f"{node.position}: {node.key}", reads))
    return out


def _layer_panels(ir: ModelIR, p: int, limit: int = 12) -> list[Panel]:
    result = analyze(ir)
    layout, rank = result.layout, ranks(result)
    sets = layer_sets(ir, p)[-limit:]
    panels = []
    for label, reads in sets:
        codes = np.where(rank < rank[p], 4, 0)
        codes[reads] = 1
        codes[p] = 3
        panels.append(Panel(f"after layer {label}", grid_image(codes, layout), colours=POSITION_CODES))
    return panels


def layers_picture(ir: ModelIR, p: int) -> Picture:
    """The receptive field of position p growing layer by layer: one panel a layer (images), or one row
    a layer (sequences: the dilated causal stack of WaveNet's figure)."""
    result = analyze(ir)
    layout, rank = result.layout, ranks(result)
    if len(layout.grid) != 1:
        panels = _layer_panels(ir, p)
        rows = tuple(tuple(panels[i:i + 6]) for i in range(0, len(panels), 6))
        caption = f"What position {_where(layout, p)} reads after each layer that changes it."
        return Picture("layers", f"{ir.name}: the receptive field, layer by layer", caption, rows,
                       {"layers": len(panels)})
    sets = layer_sets(ir, p)
    stack = np.array([np.where(rank < rank[p], 4, 0) for _ in sets])
    for k, (_, reads) in enumerate(sets):
        stack[k, reads] = 1
        stack[k, p] = 3
    cols = window(layout, np.any([r for _, r in sets], axis=0), p)
    panel = Panel(f"inputs reaching position {p}, one row a layer", stack[:, cols], colours=POSITION_CODES,
                  xlabel="input position", ylabel="layer", origin=(cols.start, 0), bottom_up=True)
    near = [k for k, (_, r) in enumerate(sets) if not r[: max(0, p - ZOOM)].any()]
    panels = [panel]
    if near and cols.stop - cols.start > 2 * ZOOM:
        lo = max(0, p - ZOOM)
        panels.append(Panel(f"the first {len(near)} layers, last {ZOOM} inputs", stack[near][:, lo:p + 1],
                            colours=POSITION_CODES, xlabel="input position", ylabel="layer",
                            origin=(lo, 0), bottom_up=True))
    caption = (f"Which inputs reach the output at position {p} through the first k layers (row k, from the bottom "
               f"up; layers that add nothing are left out): the stack of dilated causal convolutions of WaveNet's "
               f"figure; {int(sets[-1][1].sum())} inputs in the end.")
    return Picture("layers", f"{ir.name}: the causal stack, layer by layer", caption, tuple((q,) for q in panels),
                   {"layers": len(sets), "read": int(sets[-1][1].sum())})


def compare_picture(irs: list[ModelIR], p: int) -> Picture:
    """Several image models side by side: per model, what position p reads in the end (blind spot marked)
    and after each layer."""
    rows, facts = [], {}
    for ir in irs:
        first = reads_picture(ir, p)
        head = Panel(f"{ir.name}: in the end", first.rows[0][0].image, colours=POSITION_CODES)
        rows.append((head, *_layer_panels(ir, p, limit=7)))
        facts[ir.name] = first.facts["blind"]
    names = " vs ".join(ir.name for ir in irs)
    caption = "Blind-spot pixels: " + ", ".join(f"{name} {count}" for name, count in facts.items()) + "."
    return Picture("compare", f"{names}: the stacked receptive field", caption, tuple(rows), facts)
