"""Compile-time plan: a run of index-mask couplings and permutations carried as two blocks of axis 1.

A RealNVP is couplings that each keep one half and transform the other, with permutations between
them. Run layer by layer, every coupling splits its input into two parts and joins them again, and
every permutation gathers. When all the couplings of a run read and write the *same* two sets of
positions (up to the permutations between them), the run can carry its state as the two parts
themselves: each coupling replaces one of them, and the input is split once at the start and joined
once at the end (one ``cat``, plus one gather only when the run's permutations leave the two blocks
interleaved). The log-dets are summed per part across the run, then reduced once.

:func:`plan_chains` finds such runs in a flow's layers (in the order the flow runs them, after
:mod:`flowdsl.runtime.optimize_permutations`). It tracks, for each position of the current tensor,
the position it holds in the run's two-block frame: a coupling joins the run when its kept part is
exactly one block, in order, and its transformed part the other; a permutation renumbers the frame
at compile time. A run needs at least two layers to be worth it. The layers stay in the flow (and
``flow.layers[i](x)`` still runs each one alone); a :class:`CouplingChain` refers to them.

Example:
    >>> import torch, flowdsl
    >>> src = ("flow f {\\n input x: vector[4]\\n repeat 3 {\\n coupling affine(mask=half)\\n"
    ...        " permute([2, 3, 0, 1])\\n }\\n}\\n")
    >>> flow = flowdsl.compile_source(src)
    >>> [(type(s).__name__, s.span) for s in flow._plan]
    [('CouplingChain', (0, 6))]
    >>> plain = flowdsl.compile_source(src, optimize=False)
    >>> _ = plain.load_state_dict(flow.state_dict())
    >>> x = torch.randn(5, 4)
    >>> torch.allclose(flow(x)[0], plain(x)[0]) and torch.allclose(flow(x)[1], plain(x)[1])
    True
"""

from __future__ import annotations

import torch
from torch import nn

from flowdsl.runtime.base import sum_except_batch
from flowdsl.runtime.conditions import context_for
from flowdsl.runtime.coupling import Coupling
from flowdsl.runtime.optimize import logdets_discarded
from flowdsl.runtime.optimize_index_maps import IndexParts
from flowdsl.runtime.structural import Permute

__all__ = ["CouplingChain", "plan_chains"]


class CouplingChain(nn.Module):
    """Layers ``span = (start, stop)`` of a flow (couplings and permutations) run on two blocks.

    ``steps``: per coupling, ``(coupling, kept block 0 or 1, adds its log-det)``; ``enter`` reads the two
    blocks from the run's input, ``leave`` writes them as the run's output. The couplings are held in a
    tuple, not as submodules: their parameters and state-dict keys stay under ``flow.layers``.
    """

    def __init__(self, span: tuple[int, int], steps, enter: IndexParts, leave: IndexParts):
        super().__init__()
        self.span = span
        self.steps = tuple(steps)
        self.enter = enter
        self.leave = leave

    def forward(self, x, ctx=None):
        """``(y, log-det [B] or None when every step's is zero or discarded)``."""
        blocks = list(self.enter.read(x))
        return self._run(blocks, ctx, self.steps, False, self.leave)

    def inverse(self, y, ctx=None):
        blocks = list(self.leave.read(y))
        return self._run(blocks, ctx, self.steps[::-1], True, self.enter)

    @staticmethod
    def _run(blocks, ctx, steps, inverse: bool, out: IndexParts):
        keep = not logdets_discarded()
        # the elementwise log-dets summed over the steps: one running sum when the blocks have one shape
        # (the total is the sum of all its elements either way), else one per block
        same = blocks[0].shape == blocks[1].shape
        acc: list = [None, None]
        for coupling, kept, adds in steps:
            done = 1 - kept
            part, ld = coupling.part(blocks[kept], blocks[done], context_for(coupling, ctx), inverse, adds and keep)
            blocks[done] = part
            if ld is not None:
                slot = 0 if same else done
                acc[slot] = ld if acc[slot] is None else acc[slot] + ld
        total = None
        for a in acc:
            if a is not None:
                a = sum_except_batch(a)
                total = a if total is None else total + a
        return out.write(blocks[0], blocks[1]), total


def _chainable(layer) -> bool:
    return (isinstance(layer, Coupling) and not layer.spatial
            and getattr(layer, "context_layout", "flat") == "flat")


def _block_of(frame: torch.Tensor, positions: torch.Tensor, n: int, size: int) -> int | None:
    """0 or 1 when ``frame[positions]`` is exactly block 0 (``0..n-1``) or block 1 (``n..size-1``) in order."""
    got = frame[positions]
    for block, (lo, hi) in enumerate(((0, n), (n, size))):
        if len(got) == hi - lo and torch.equal(got, torch.arange(lo, hi)):
            return block
    return None


def _grow(layers, runs, start: int):
    """The longest chain from ``runs[start]`` (a coupling): ``(stop, steps, enter, frame)``."""
    first = layers[runs[start][0]]
    (k, t), (wk, wt) = (tuple(i.cpu() for i in m) for m in first.read_write_maps())
    n, size = len(k), len(k) + len(t)
    enter = (k, t)
    frame = torch.empty(size, dtype=torch.long)  # frame[j]: the block position that position j holds
    frame[wk], frame[wt] = torch.arange(n), torch.arange(n, size)
    steps = [(first, 0, runs[start][1])]
    stop = start + 1
    while stop < len(runs):
        index, adds = runs[stop]
        layer = layers[index]
        if isinstance(layer, Permute):
            if len(layer.idx) != size:
                break
            frame = frame[layer.idx.cpu()]  # y[:, j] = x[:, idx[j]]
        elif _chainable(layer):
            (k, t), (wk, wt) = (tuple(i.cpu() for i in m) for m in layer.read_write_maps())
            kept = _block_of(frame, k, n, size)
            if kept is None or _block_of(frame, t, n, size) != 1 - kept:
                break
            new = torch.empty_like(frame)
            new[wk], new[wt] = frame[k], frame[t]
            frame = new
            steps.append((layer, kept, adds))
        else:
            break
        stop += 1
    return stop, steps, enter, frame


def plan_chains(layers, runs):
    """``runs`` (the flow's ``(layer index, adds its log-det)`` in order) with chains of two layers or more
    replaced by :class:`CouplingChain` objects; layers stay where they are."""
    plan: list = []
    position = 0
    while position < len(runs):
        index = runs[position][0]
        if not _chainable(layers[index]):
            plan.append(runs[position])
            position += 1
            continue
        stop, steps, enter, frame = _grow(layers, runs, position)
        if stop - position < 2:
            plan.append(runs[position])
            position += 1
            continue
        n = len(enter[0])
        order = torch.argsort(frame)  # order[b]: the output position that holds block position b
        device = enter[0].device
        chain = CouplingChain((index, runs[stop - 1][0] + 1), steps, IndexParts(*enter),
                              IndexParts(order[:n], order[n:])).to(device)
        plan.append(chain)
        position = stop
    return tuple(plan)
