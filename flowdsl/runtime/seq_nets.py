"""Torch modules of the nets over sequences (:mod:`flowdsl.layers.seq_nets`).

``build_seq_conv(spec, in_shape, out_shape, context)`` maps ``[B, C, L]`` to ``[B, F, L]``: a 1x1
convolution, one centred dilated residual convolution per dilation, a 1x1 convolution out. A
context ``[B, K]`` (when a layer's net reads the model's condition) is concatenated as constant
channels. Parameter counts equal the spec's ``param_count``.

Example:
    >>> import torch
    >>> from flowdsl.layers.seq_nets import SeqConv
    >>> net = build_seq_conv(SeqConv(channels=8, dilations=(1, 2)), (4, 16), (5, 16), 0)
    >>> net(torch.randn(2, 4, 16)).shape
    torch.Size([2, 5, 16])
    >>> sum(p.numel() for p in net.parameters()) == SeqConv(channels=8, dilations=(1, 2)).param_count((4, 16), (5, 16))
    True
"""

from __future__ import annotations

import torch
from torch import nn

from flowdsl.runtime.nets import activation

__all__ = ["SeqConvNet", "build_seq_conv"]


class _Block(nn.Module):
    """h + conv_k,d(act(h)), centred (zero padding keeps the length)."""

    def __init__(self, channels: int, kernel: int, dilation: int, act: str):
        super().__init__()
        self.act = activation(act)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))

    def forward(self, h):
        return h + self.conv(self.act(h))


class SeqConvNet(nn.Module):
    """``[B, C, L] -> [B, F, L]``: 1x1 in, residual dilated blocks, act, 1x1 out."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, kernel: int, dilations, act: str):
        super().__init__()
        self.inp = nn.Conv1d(in_channels, channels, 1)
        self.blocks = nn.Sequential(*[_Block(channels, kernel, int(d), act) for d in dilations])
        self.act = activation(act)
        self.out = nn.Conv1d(channels, out_channels, 1)

    def forward(self, x, context=None):
        if context is not None:
            x = torch.cat([x, context.to(x.dtype)[:, :, None].expand(-1, -1, x.shape[2])], dim=1)
        return self.out(self.act(self.blocks(self.inp(x))))


def build_seq_conv(spec, in_shape, out_shape, context=0):
    return SeqConvNet(in_shape[0] + context, spec.channels, out_shape[0], spec.kernel, spec.dilations,
                      spec.activation)
