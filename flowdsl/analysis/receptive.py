"""Geometry of proved dependency sets: receptive fields, blind spots and how to describe them.

The causality check (:mod:`flowdsl.analysis.causality`) proves what each position's conditional
reads; this module measures that set on the grid: the bounding box of what a position reads (the
receptive field), the earlier positions inside it that no path reaches (blind spots), and the text
of the note that reports them.

Example:
    >>> import numpy as np
    >>> from flowdsl.layers.dependency_sets import layout_of, pack
    >>> lay = layout_of("vector", (4,))
    >>> reads = pack(np.tril(np.ones((4, 4), dtype=bool), -1))   # position p reads every q < p
    >>> note, span = receptive_note(reads, lay, np.arange(4), None)
    >>> span, note.message.split(";")[0]
    (3, 'receptive field 3 positions')
"""

from __future__ import annotations

import numpy as np

from flowdsl.errors import Diagnostic
from flowdsl.layers.dependency_sets import Layout, unpack

__all__ = ["row_chunks", "blind_spots", "offset_text", "receptive_note"]


def row_chunks(n: int):
    step = max(16, (1 << 22) // max(n, 1))
    for start in range(0, n, step):
        yield np.arange(start, min(n, start + step))


def _grid_view(dep: np.ndarray, layout: Layout, rank: np.ndarray):
    """Per chunk row: the dependency sets as ``[rows, C, *grid]`` and the coordinate arrays used for boxes.

    Boxes are over grid axes (images, video) or, for vectors and sequences, over generation ranks.
    """
    if len(layout.grid) == 1:
        order = np.argsort(rank)
        return dep[:, order][:, None, :]
    return dep[:, layout.index]


def _extent(view: np.ndarray, axis: int):
    """Per row: the lowest and highest coordinate along grid ``axis`` holding a set bit (-1, -1 if none)."""
    others = tuple(a for a in range(1, view.ndim) if a != axis + 2)
    occ = np.asarray(view.any(axis=others))
    size = occ.shape[1]
    has = np.any(occ, axis=1)
    lo = np.where(has, occ.argmax(axis=1), -1)
    hi = np.where(has, size - 1 - occ[:, ::-1].argmax(axis=1), -1)
    return lo, hi


def _coords(layout: Layout, rank: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rank[rows][:, None] if len(layout.grid) == 1 else layout.coords(rows)


def _box(view: np.ndarray, own: np.ndarray, grid, mine: np.ndarray | None = None) -> np.ndarray:
    """``bool [rows, *grid]``: the bounding box of each row's reads, and of its own position where ``mine``."""
    mine = np.ones(len(own), dtype=bool) if mine is None else mine
    box = np.ones((len(own),) + tuple(grid), dtype=bool)
    for k, size in enumerate(grid):
        lo, hi = _extent(view, k)
        lo = np.where(mine, np.where(lo < 0, own[:, k], np.minimum(lo, own[:, k])), lo)
        hi = np.where(mine, np.maximum(hi, own[:, k]), hi)
        ax = np.arange(size)
        inside = (ax[None, :] >= lo[:, None]) & (ax[None, :] <= hi[:, None])
        box &= inside.reshape((len(own),) + tuple(size if j == k else 1 for j in range(len(grid))))
    return box


def _frame_boxes(view: np.ndarray, own: np.ndarray, grid) -> np.ndarray:
    """Video grids ``(T, H, W)``: in each frame, the bounding box of the pixels read there (and of the position
    itself, in its own frame). A frame read only near the position is not a hole; a hole inside a frame's read
    region is (e.g. a masked decoder's blind spot in the current frame)."""
    box = np.zeros((len(own),) + tuple(grid), dtype=bool)
    for t in range(grid[0]):
        box[:, t] = _box(view[:, :, t], own[:, 1:], grid[1:], mine=own[:, 0] == t)
    return box


def blind_spots(pos_deps: np.ndarray, layout: Layout, rank: np.ndarray, first_only: bool = False):
    """Per position: earlier positions inside the bounding box of itself and what it reads, that it cannot read.

    Returns ``(worst count, worst position, example blind position)``; counts are grid positions
    (pixels). With ``first_only``, stops at the first position that has any.
    """
    n = layout.n
    grid = (n,) if len(layout.grid) == 1 else layout.grid
    rank_view = np.arange(n)[None, :] if len(layout.grid) == 1 else rank[layout.index]
    best = (0, -1, -1)
    for rows in row_chunks(n):
        view = _grid_view(unpack(pos_deps[rows], n), layout, rank)
        own = _coords(layout, rank, rows)
        box = _frame_boxes(view, own, grid) if len(grid) == 3 else _box(view, own, grid)
        earlier = rank_view[None] < rank[rows].reshape((-1,) + (1,) * (rank_view.ndim))
        blind = box[:, None] & earlier & ~view  # [rows, C, *grid]
        counts = blind.reshape(len(rows), blind.shape[1], -1).any(axis=1).sum(axis=1)
        i = int(np.argmax(counts))
        if counts[i] > best[0]:
            qs = np.flatnonzero(blind[i].reshape(-1))
            qs = (np.argsort(rank)[qs] if len(layout.grid) == 1 else layout.index.reshape(-1)[qs])
            near = np.abs(_coords(layout, rank, qs) - _coords(layout, rank, rows[i:i + 1]))
            pick = np.lexsort((-rank[qs], near.sum(axis=1), near.max(axis=1)))[0]
            best = (int(counts[i]), int(rows[i]), int(qs[pick]))
            if first_only:
                return best
    return best


def offset_text(layout: Layout, rank: np.ndarray, p: int, q: int) -> str:
    if len(layout.grid) == 1:
        return f"i-{int(rank[p] - rank[q])}"
    names = ("r", "c") if len(layout.grid) == 2 else ("t", "r", "c")
    dp, dq = layout.coords(np.array([p, q]))
    return "(" + ", ".join(_rel(nm, int(d)) for nm, d in zip(names, dq - dp)) + ")"


def _rel(name: str, d: int) -> str:
    return name if d == 0 else f"{name}{d:+d}"


def receptive_note(final: np.ndarray, layout: Layout, rank: np.ndarray, pos, detail: str | None = None):
    """The receptive-field note, and (1-d grids) the window of earlier positions read, in positions.

    On a 1-d grid the receptive field is the window from the earliest to the latest position a
    prediction reads (the predicted position itself is not counted: WaveNet's convention); on
    a grid it is the bounding box of the pixels read and the pixel itself."""
    n, nd = layout.n, len(layout.grid)
    grid = (n,) if nd == 1 else layout.grid
    big = np.iinfo(np.int64).max
    lo, hi = np.full(len(grid), big, dtype=np.int64), np.full(len(grid), -big, dtype=np.int64)
    most = 0
    for rows in row_chunks(n):
        dep = unpack(final[rows], n)
        most = max(most, int(dep.sum(axis=1).max()))
        view, own = _grid_view(dep, layout, rank), _coords(layout, rank, rows)
        for k in range(len(grid)):
            a, b = _extent(view, k)
            has = a >= 0
            if has.any():
                lo[k] = min(lo[k], int((a - own[:, k])[has].min()))
                hi[k] = max(hi[k], int((b - own[:, k])[has].max()))
    extra = f" ({detail})" if detail else ""
    if nd == 1:
        unit = "samples" if layout.input_type == "sequence" else "positions"
        span = int(hi[0] - lo[0]) + 1 if hi[0] >= lo[0] else 0
        text = f"receptive field {span} {unit}{extra}; a position reads up to {most} earlier ones"
        return Diagnostic(pos, "note", text), span
    lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
    names = ("rows", "columns") if nd == 2 else ("frames", "rows", "columns")
    letters = ("r", "c") if nd == 2 else ("t", "r", "c")
    box = " x ".join(str(int(b - a + 1)) for a, b in zip(lo, hi))
    ranges = ", ".join(f"{nm} {_rel(le, int(a))}..{_rel(le, int(b))}" for nm, le, a, b in zip(names, letters, lo, hi))
    text = (f"receptive field {box} {'pixels' if nd == 2 else 'positions'} ({ranges}){extra}; "
            f"a position reads up to {most} earlier ones")
    return Diagnostic(pos, "note", text), None
