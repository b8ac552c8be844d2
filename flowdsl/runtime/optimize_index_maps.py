"""Two parts of axis 1 read and written through index maps fixed at compile time (permutation folding).

An :class:`IndexParts` names two disjoint sets of positions along axis 1 that together cover it.
``read(x)`` returns the two parts (views where a set is one ascending run, else one gather each);
``write(a, b)`` assembles a tensor holding ``a`` at the first set and ``b`` at the second (one cat,
plus one gather only when the two sets are not two contiguous blocks). Every decision is taken once,
in the constructor: the hot path only slices, gathers and concatenates.

A permutation ``u = x[:, perm]`` before a coupling with kept positions ``K`` and transformed positions
``T`` of ``u`` folds into the coupling as ``IndexParts(perm[K], perm[T])`` for reading ``x``: the separate
gather of the permutation never runs (:mod:`flowdsl.runtime.optimize_permutations`).

Example:
    >>> import torch
    >>> parts = IndexParts([2, 3], [0, 1])
    >>> x = torch.arange(8.).reshape(2, 4)
    >>> a, b = parts.read(x)
    >>> a.tolist(), b.tolist()
    ([[2.0, 3.0], [6.0, 7.0]], [[0.0, 1.0], [4.0, 5.0]])
    >>> torch.equal(parts.write(a, b), x), parts.gathers
    (True, 0)
    >>> IndexParts([0, 2], [1, 3]).gathers   # interleaved: gathers to read, one to write
    3
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IndexParts"]


def _run(idx: torch.Tensor) -> tuple[int, int] | None:
    """``(start, stop)`` when ``idx`` is one ascending run of consecutive positions, else None."""
    if len(idx) and bool((idx == torch.arange(int(idx[0]), int(idx[0]) + len(idx))).all()):
        return int(idx[0]), int(idx[0]) + len(idx)
    return None


class IndexParts(nn.Module):
    """Positions ``first`` and ``second`` of axis 1 (disjoint, covering it): read them, write them back."""

    def __init__(self, first, second):
        super().__init__()
        first = torch.as_tensor(first, dtype=torch.long).flatten()
        second = torch.as_tensor(second, dtype=torch.long).flatten()
        order = torch.cat([first, second])
        size = len(order)
        if not torch.equal(torch.sort(order).values, torch.arange(size)):
            raise ValueError("the two parts must cover axis 1 exactly once")
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)
        self.runs = (_run(first), _run(second))
        if torch.equal(order, torch.arange(size)):
            self.layout = "first, second"  # cat([a, b]) is the result
        elif torch.equal(torch.cat([second, first]), torch.arange(size)):
            self.layout = "second, first"  # cat([b, a])
        else:
            self.layout = "gather"  # cat([a, b]) then one gather
        self.register_buffer("placement", torch.argsort(order), persistent=False)
        self.gathers = sum(run is None for run in self.runs) + (self.layout == "gather")

    def _part(self, x: torch.Tensor, which: int) -> torch.Tensor:
        run = self.runs[which]
        if run is not None:
            return x[:, run[0]:run[1]]
        return x.index_select(1, self.first if which == 0 else self.second)

    def read(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x[:, first], x[:, second])``."""
        return self._part(x, 0), self._part(x, 1)

    def write(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The tensor ``t`` with ``t[:, first] = a`` and ``t[:, second] = b``."""
        if self.layout == "first, second":
            return torch.cat([a, b], dim=1)
        if self.layout == "second, first":
            return torch.cat([b, a], dim=1)
        return torch.cat([a, b], dim=1).index_select(1, self.placement)
