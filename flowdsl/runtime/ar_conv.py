"""Torch modules of masked_conv (PixelCNN) and gated_block (Gated PixelCNN).

Weight masks come from :func:`flowdsl.layers.ar_conv.kernel_mask`, the same taps the
causality checker propagates, and are buffers built once.

Example:
    >>> import torch
    >>> conv = MaskedConv2d(in_features=2, out_features=4, kernel=3, mask="A", groups=1)
    >>> conv(torch.randn(1, 2, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers.ar_conv import kernel_mask
from flowdsl.runtime.ar_basic import GroupedLinear
from flowdsl.runtime.base import BuildNode

__all__ = ["MaskedConv2d", "GatedBlock", "build_masked_conv", "build_gated_block", "shift_down"]


def _mask(out_features, in_features, kernel_hw, centre, mask, groups, chunks: int = 1) -> torch.Tensor:
    """The weight mask; ``chunks`` stacked copies along the outputs (gates), each grouped on its own."""
    m = kernel_mask(out_features // chunks, in_features, kernel_hw, centre, mask, groups)
    return torch.as_tensor(m).repeat(chunks, 1, 1, 1).to(torch.get_default_dtype())


def shift_down(t: torch.Tensor) -> torch.Tensor:
    """Row r gets row r-1 (row 0 gets zeros)."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1]


class MaskedConv2d(nn.Conv2d):
    """A k x k (or kh x kw) convolution whose taps after the centre are zero (centre: mask A/B, colour groups)."""

    def __init__(self, in_features: int, out_features: int, kernel, mask: str, groups: int = 1, chunks: int = 1):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(in_features, out_features, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", _mask(out_features, in_features, (kh, kw), (kh // 2, kw // 2), mask, groups,
                                           chunks), persistent=False)

    def forward(self, h, context=None):
        return F.conv2d(h, self.weight * self.mask.to(self.weight.dtype), self.bias, padding=self.padding)


class GatedBlock(nn.Module):
    """Vertical stack (rows up to r, shifted down for the link), horizontal stack, gated tanh * sigmoid units.

    ``forward(h, context, extra) -> (h', {"vertical": v'})``: ``extra["vertical"]`` is the vertical stack of
    the previous block (absent: the block starts one from h).
    """

    streams = True

    def __init__(self, in_features: int, vertical_features: int, channels: int, kernel: int, mask: str,
                 groups: int, residual: bool, context_features: int = 0):
        super().__init__()
        ch, k = channels, kernel
        self.k, self.residual = k, residual
        self.vertical = nn.Conv2d(vertical_features, 2 * ch, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(in_features, 2 * ch, (1, k // 2 + 1))
        self.register_buffer("h_mask", _mask(2 * ch, in_features, (1, k // 2 + 1), (0, k // 2), mask, groups, 2),
                             persistent=False)
        self.link = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.out = GroupedLinear(ch, ch, groups)
        if context_features:
            self.cond_v = nn.Linear(context_features, 2 * ch, bias=False)
            self.cond_h = nn.Linear(context_features, 2 * ch, bias=False)
        else:
            self.cond_v = self.cond_h = None

    @staticmethod
    def _gate(t):
        f, g = t.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, h, context=None, extra=None):
        k = self.k
        v = (extra or {}).get("vertical", h)
        v_pre = self.vertical(F.pad(v, (k // 2, k // 2, k // 2, 0)))  # rows r-k//2..r, columns c-k//2..c+k//2
        h_pre = F.conv2d(F.pad(h, (k // 2, 0, 0, 0)), self.horizontal.weight * self.h_mask.to(h.dtype),
                         self.horizontal.bias) + self.link(shift_down(v_pre))
        if self.cond_v is not None and context is not None:
            v_pre = v_pre + self.cond_v(context)[:, :, None, None]
            h_pre = h_pre + self.cond_h(context)[:, :, None, None]
        out = self.out(self._gate(h_pre))
        return (out + h if self.residual else out), {"vertical": self._gate(v_pre)}


def build_masked_conv(layer, node: BuildNode):
    m = node.meta
    return MaskedConv2d(m["in_features"], layer.channels, layer.kernel, layer.mask, m["groups"])


def build_gated_block(layer, node: BuildNode):
    m = node.meta
    return GatedBlock(m["in_features"], m["vertical_features"], layer.channels, layer.kernel, layer.mask,
                      m["groups"], m["residual"], node.context_features)
