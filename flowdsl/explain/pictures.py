"""What a picture holds: panels of coded cells (the exact arrays handed to ``imshow``), or a unit network.

A :class:`Picture` is computed from the IR and the dependency engine and knows nothing of
matplotlib: :mod:`flowdsl.explain.render` draws it. A :class:`Panel` holds an integer array of
codes (``-1`` draws as a gap) with the colour and meaning of each code, or a real array drawn with
a sequential colour map (a generation order), or a :class:`Network` of units joined by mask
entries (MADE). Keeping the arrays here lets tests compare what is drawn with the engine's sets.

Example:
    >>> import numpy as np
    >>> panel = Panel("reads", coded(np.array([[True, False]]), READ_CODES))
    >>> panel.image.tolist(), [label for label, _ in panel.colours]
    ([[1, 0]], ['not read', 'read'])
    >>> tile(np.arange(8).reshape(2, 2, 2)).tolist()   # two channels side by side, a gap between
    [[0, 1, -1, 4, 5], [2, 3, -1, 6, 7]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Panel", "Network", "Picture", "coded", "tile", "untile", "READ_CODES", "POSITION_CODES",
           "MASK_CODES", "GAP"]

#: the code of a cell drawn as empty space (between tiles)
GAP = -1
#: (label, colour) of codes 0, 1: a boolean set
READ_CODES = (("not read", "#f4f4f4"), ("read", "#2b6cb0"))
#: codes of a position picture: 0 later / not generated, 1 read, 2 blind spot, 3 the position, 4 earlier, not read
POSITION_CODES = (("later", "#f4f4f4"), ("read", "#2b6cb0"), ("blind spot", "#e53e3e"),
                  ("predicted position", "#f6ad55"), ("earlier, not read", "#cbd5e0"))
#: a mask: 0 transformed / masked out, 1 kept / connected
MASK_CODES = (("0", "#f4f4f4"), ("1", "#2f855a"))


@dataclass(frozen=True, eq=False)
class Network:
    """Units in layers (inputs first) joined where a mask ``[out, in]`` has a 1; ``labels`` per layer."""

    masks: tuple[np.ndarray, ...]
    labels: tuple[tuple[str, ...], ...]
    titles: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Panel:
    """One axes: an image of codes (or reals when ``colours`` is empty), or a network."""

    title: str
    image: np.ndarray | None = None
    colours: tuple[tuple[str, str], ...] = READ_CODES
    #: text drawn in each cell (e.g. the generation order), same shape as ``image``
    numbers: np.ndarray | None = None
    xlabel: str = ""
    ylabel: str = ""
    #: the coordinate of the first column / row (a cropped window of a long sequence)
    origin: tuple[int, int] = (0, 0)
    network: Network | None = None
    #: coordinate ticks (off for block grids, whose coordinates mean nothing)
    ticks: bool = True
    #: row 0 at the bottom (a stack of layers, the input side down)
    bottom_up: bool = False


@dataclass(frozen=True, eq=False)
class Picture:
    """A titled grid of panels (``rows`` of panels) with a caption saying what the checker proved."""

    name: str
    title: str
    caption: str
    rows: tuple[tuple[Panel, ...], ...]
    #: numbers a text listing prints (how many positions read, blind, ...)
    facts: dict = field(default_factory=dict)

    @property
    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row]


def coded(mask: np.ndarray, colours) -> np.ndarray:
    """A boolean array as codes 0/1 (int8), checked against the number of colours."""
    assert len(colours) >= 2
    return np.asarray(mask, dtype=bool).astype(np.int8)


def tile(stack: np.ndarray, fill: int = GAP) -> np.ndarray:
    """``[K, H, W]`` -> ``[H, K * (W + 1) - 1]``: the K planes side by side, one gap column apart."""
    stack = np.asarray(stack)
    k, h, w = stack.shape
    out = np.full((h, k * (w + 1) - 1), fill, dtype=np.int64 if stack.dtype.kind in "iub" else stack.dtype)
    for i in range(k):
        out[:, i * (w + 1): i * (w + 1) + w] = stack[i]
    return out


def untile(image: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`tile`."""
    w = (image.shape[1] + 1) // k - 1
    return np.stack([image[:, i * (w + 1): i * (w + 1) + w] for i in range(k)])
