"""Torch modules of the PixelRNN layers: Row LSTM and Diagonal BiLSTM (van den Oord et al. 2016).

Gates are ordered i, f, o, g, each ``hidden`` channels in colour groups; the input-to-state
weights carry mask B (the same taps the causality checker propagates). With ``context_features``
F > 0 the flattened condition ``[B, F]`` is projected onto the input-to-state term of every gate
(broadcast over the image), one projection per direction.

Example:
    >>> import torch
    >>> lstm = DiagonalBiLSTM(in_features=3, hidden=4, groups=1)
    >>> lstm(torch.randn(2, 3, 5, 6)).shape
    torch.Size([2, 4, 5, 6])
    >>> rows = RowLSTM(in_features=3, hidden=4, context_features=2)
    >>> rows(torch.randn(2, 3, 5, 6), torch.randn(2, 2)).shape
    torch.Size([2, 4, 5, 6])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.ar_conv import MaskedConv2d, shift_down
from flowdsl.runtime.ar_module import ARModule
from flowdsl.runtime.base import BuildNode

__all__ = ["RowLSTM", "DiagonalBiLSTM", "build_row_lstm", "build_diagonal_bilstm", "skew", "unskew"]


def _context_term(module: nn.Module, pre: torch.Tensor, context) -> torch.Tensor:
    """``pre [B, 4H, rows, cols]`` plus the projected condition at every pixel (unchanged without one)."""
    if module.cond is None or context is None:
        return pre
    return pre + module.cond(context.to(pre.dtype))[:, :, None, None]


def _projection(context_features: int, hidden: int) -> nn.Linear | None:
    return nn.Linear(context_features, 4 * hidden, bias=False) if context_features else None


def _cell(gates: torch.Tensor, c: torch.Tensor):
    i, f, o, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class RowLSTM(ARModule):
    """Rows in sequence: gates(r) = i2s(x)[r] + conv1d_3(h[r-1]); c and h follow the LSTM cell."""

    def __init__(self, in_features: int, hidden: int, groups: int = 1, context_features: int = 0):
        super().__init__()
        self.hidden = hidden
        self.i2s = MaskedConv2d(in_features, 4 * hidden, (1, 3), "B", groups, chunks=4)
        self.s2s = nn.Conv1d(hidden, 4 * hidden, 3, padding=1, bias=False)
        self.cond = _projection(context_features, hidden)

    def forward(self, x, context=None):
        pre = _context_term(self, self.i2s(x), context)
        b, _, rows, width = pre.shape
        h = pre.new_zeros(b, self.hidden, width)
        c = pre.new_zeros(b, self.hidden, width)
        out = []
        for r in range(rows):
            h, c = _cell(pre[:, :, r] + self.s2s(h), c)
            out.append(h)
        return torch.stack(out, dim=2)


def skew(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, H, W + H - 1]``: row i moved right by i."""
    b, c, rows, width = t.shape
    out = t.new_zeros(b, c, rows, width + rows - 1)
    for i in range(rows):
        out[:, :, i, i: i + width] = t[:, :, i]
    return out


def unskew(t: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([t[:, :, i, i: i + width] for i in range(t.shape[2])], dim=2)


class _DiagonalLSTM(nn.Module):
    """One direction: a 1x1 mask-B input-to-state map and a 2 x 1 column convolution on the skewed state."""

    def __init__(self, in_features: int, hidden: int, groups: int, context_features: int = 0):
        super().__init__()
        self.hidden = hidden
        self.i2s = MaskedConv2d(in_features, 4 * hidden, 1, "B", groups, chunks=4)
        self.s2s = nn.Conv1d(hidden, 4 * hidden, 2, bias=False)
        self.cond = _projection(context_features, hidden)

    def forward(self, x, context=None):
        width = x.shape[3]
        pre = skew(_context_term(self, self.i2s(x), context))
        b, _, rows, cols = pre.shape
        h = pre.new_zeros(b, self.hidden, rows)
        c = pre.new_zeros(b, self.hidden, rows)
        out = []
        for j in range(cols):  # the state at (i, j) reads (i - 1, j - 1) and (i, j - 1) of the skewed map
            h, c = _cell(pre[:, :, :, j] + self.s2s(F.pad(h, (1, 0))), c)
            out.append(h)
        return unskew(torch.stack(out, dim=3), width)


class DiagonalBiLSTM(ARModule):
    """Left-to-right plus right-to-left diagonal LSTMs; the latter mirrored back and shifted down one row."""

    def __init__(self, in_features: int, hidden: int, groups: int = 1, context_features: int = 0):
        super().__init__()
        self.left = _DiagonalLSTM(in_features, hidden, groups, context_features)
        self.right = _DiagonalLSTM(in_features, hidden, groups, context_features)

    def forward(self, x, context=None):
        right = self.right(x.flip(3), context).flip(3)
        return self.left(x, context) + shift_down(right)


def build_row_lstm(layer, node: BuildNode):
    return RowLSTM(node.meta["in_features"], layer.hidden, node.meta["groups"], node.context_features)


def build_diagonal_bilstm(layer, node: BuildNode):
    return DiagonalBiLSTM(node.meta["in_features"], layer.hidden, node.meta["groups"], node.context_features)
