"""Torch modules of masked_conv (PixelCNN) and gated_block (Gated PixelCNN).

Weight masks come from :func:`flowdsl.layers.ar_conv.kernel_mask`, the same taps the
causality checker propagates, and are buffers built once. Their incremental forms for cached
sampling (:mod:`flowdsl.runtime.ar_cache`) keep the input rows (Fast PixelCNN++'s row caches): a
gated block computes its vertical stack one row at a time and passes that row on to the next block.

The condition (:class:`ContextBias`): a vector ``[B, F]`` through a Linear, or an image map
``[B, C, H', W']`` (the module sets ``context_layout = "map"``) through a 1x1 convolution and
repeated to the grid; the steppers compute it once per sampling call and add it pixel by pixel.

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
from flowdsl.runtime.ar_module import ARModule, Plan, Stepper, gate
from flowdsl.runtime.base import BuildNode
from flowdsl.runtime.conditions import context_mode

__all__ = ["MaskedConv2d", "GatedBlock", "MaskedConvStepper", "GatedBlockStepper", "ContextBias",
           "build_masked_conv", "build_gated_block", "shift_down"]


def _mask(out_features, in_features, kernel_hw, centre, mask, groups, chunks: int = 1) -> torch.Tensor:
    """The weight mask; ``chunks`` stacked copies along the outputs (gates), each grouped on its own."""
    m = kernel_mask(out_features // chunks, in_features, kernel_hw, centre, mask, groups)
    return torch.as_tensor(m).repeat(chunks, 1, 1, 1).to(torch.get_default_dtype())


def shift_down(t: torch.Tensor) -> torch.Tensor:
    """Row r gets row r-1 (row 0 gets zeros)."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1]


class ContextBias(nn.Module):
    """What the condition adds to a layer's ``out`` features at every pixel (no bias of its own).

    ``mode="vector"``: ``V h`` for a context ``[B, F]`` (the same at every pixel, ``[B, out, 1, 1]``);
    ``mode="map"``: a 1x1 convolution of a map ``[B, C, H', W']``, each value repeated ``scale`` times along
    H and W (``[B, out, H, W]``). The weight ``[out, F]`` is a Linear's (and keeps its name: checkpoints of the
    label-conditional Gated PixelCNN, whose ``cond_v``/``cond_h`` were Linears, load unchanged).

        >>> bias = ContextBias("map", 3, 4, (2, 2))
        >>> bias(torch.randn(5, 3, 2, 2)).shape
        torch.Size([5, 4, 4, 4])
    """

    def __init__(self, mode: str, features: int, out: int, scale=(1, 1)):
        super().__init__()
        self.mode, self.scale = mode, tuple(int(s) for s in scale)
        self.weight = nn.Parameter(torch.empty(out, features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # as nn.Linear

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(context.dtype)
        if self.mode == "vector":
            return (context.reshape(context.shape[0], -1) @ w.T)[:, :, None, None]
        y = torch.einsum("oc,bchw->bohw", w, context)
        sh, sw = self.scale
        if sh > 1:
            y = y.repeat_interleave(sh, dim=2)
        if sw > 1:
            y = y.repeat_interleave(sw, dim=3)
        return y


def _context_bias(module: nn.Module, condition: dict | None, out: int) -> ContextBias | None:
    """The module's context bias for the layer's ``condition`` facts (None: it reads none); a map reader
    declares ``context_layout = "map"`` (:func:`flowdsl.runtime.conditions.context_for`)."""
    mode = context_mode(module, condition)
    return None if mode is None else ContextBias(mode, condition["features"], out, condition["scale"])


class MaskedConv2d(ARModule, nn.Conv2d):
    """A k x k (or kh x kw) convolution whose taps after the centre are zero (centre: mask A/B, colour groups);
    plus a context bias when ``condition`` (the layer's facts, :func:`flowdsl.layers.ar_conv.image_condition`)
    says it reads one."""

    def __init__(self, in_features: int, out_features: int, kernel, mask: str, groups: int = 1, chunks: int = 1,
                 condition: dict | None = None):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(in_features, out_features, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", _mask(out_features, in_features, (kh, kw), (kh // 2, kw // 2), mask, groups,
                                           chunks), persistent=False)
        self.cond = _context_bias(self, condition, out_features)

    def forward(self, h, context=None):
        y = F.conv2d(h, self.weight * self.mask.to(self.weight.dtype), self.bias, padding=self.padding)
        if self.cond is not None and context is not None:
            y = y + self.cond(context)
        return y

    def stepper(self, plan: Plan) -> Stepper:
        return MaskedConvStepper(self, plan)


class GatedBlock(ARModule):
    """Vertical stack (rows up to r, shifted down for the link), horizontal stack, gated tanh * sigmoid units.

    ``forward(h, context, extra) -> (h', {"vertical": v'})``: ``extra["vertical"]`` is the vertical stack of
    the previous block (absent: the block starts one from h).
    """

    def __init__(self, in_features: int, vertical_features: int, channels: int, kernel: int, mask: str,
                 groups: int, residual: bool, condition: dict | None = None):
        super().__init__()
        ch, k = channels, kernel
        self.k, self.residual = k, residual
        self.vertical = nn.Conv2d(vertical_features, 2 * ch, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(in_features, 2 * ch, (1, k // 2 + 1))
        self.register_buffer("h_mask", _mask(2 * ch, in_features, (1, k // 2 + 1), (0, k // 2), mask, groups, 2),
                             persistent=False)
        self.link = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.out = GroupedLinear(ch, ch, groups)
        self.cond_v = _context_bias(self, condition, 2 * ch)  # V h (or a 1x1 conv of the map) in both gates
        self.cond_h = _context_bias(self, condition, 2 * ch)

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
        if self.cond_v is not None and self.cond_h is not None and context is not None:
            v_pre = v_pre + self.cond_v(context)
            h_pre = h_pre + self.cond_h(context)
        out = self.out(self._gate(h_pre))
        return (out + h if self.residual else out), {"vertical": self._gate(v_pre)}

    def stepper(self, plan: Plan) -> Stepper:
        return GatedBlockStepper(self, plan)


# ----------------------------------------------------------------------------- incremental forms
def _bias_map(cond: ContextBias | None, plan: Plan) -> torch.Tensor | None:
    """The context bias of a sampling call, computed once: ``[B, out, 1, 1]`` (a vector) or ``[B, out, H, W]``."""
    return None if cond is None or plan.context is None else cond(plan.context.to(plan.dtype))


def _at(bias: torch.Tensor, r: int, c: int) -> torch.Tensor:
    """``[B, out]``: the context bias at pixel (r, c) (a vector's is the same everywhere)."""
    return bias[:, :, 0, 0] if bias.shape[2] == bias.shape[3] == 1 else bias[:, :, r, c]


class MaskedConvStepper(Stepper):
    """A masked k x k convolution at one pixel: the rows r-k//2..r of its input, kept in a padded buffer."""

    def __init__(self, module: MaskedConv2d, plan: Plan):
        kh, kw = module.kernel_size
        self.ph, self.pw, self.kw = kh // 2, kw // 2, kw
        self.h, self.w = plan.grid
        w = (module.weight * module.mask.to(module.weight.dtype))[:, :, : self.ph + 1]
        self.weight, self.bias = w.reshape(w.shape[0], -1).T.contiguous(), module.bias
        self.buf = plan.zeros(plan.batch, module.in_channels, self.h + self.ph, self.w + 2 * self.pw)
        self.first = plan.first
        self.extra = _bias_map(module.cond, plan)

    def _write(self, h, g):
        r, c = divmod(g, self.w)
        self.buf[:, :, r + self.ph, c + self.pw] = h
        return r, c

    def step(self, h, v, g):
        r, c = self._write(h, g)
        patch = self.buf[:, :, r: r + self.ph + 1, c: c + self.kw]
        out = torch.addmm(self.bias, patch.reshape(patch.shape[0], -1), self.weight)
        return (out if self.extra is None else out + _at(self.extra, r, c)), None

    def commit(self, h, v, g):
        if self.first:
            self._write(h, g)
        return None


class GatedBlockStepper(Stepper):
    """A Gated PixelCNN block: the vertical stack one row at a time (when the row above is complete), the
    horizontal stack at each pixel; the vertical row r-1 is passed on to the next block at the start of row r."""

    def __init__(self, module: GatedBlock, plan: Plan):
        self.m, k = module, module.k
        self.p, self.h, self.w = k // 2, *plan.grid
        self.first, self.v_from_h = plan.first, not plan.after_stream
        fh, fv = module.horizontal.in_channels, module.vertical.in_channels
        b = plan.batch
        self.hbuf = plan.zeros(b, fh, self.h, self.w + self.p)
        self.vbuf = plan.zeros(b, fv, self.h + self.p, self.w + 2 * self.p)
        wh = module.horizontal.weight * module.h_mask.to(module.horizontal.weight.dtype)
        self.wh, self.bh = wh.reshape(wh.shape[0], -1).T.contiguous(), module.horizontal.bias
        self.link_w = module.link.weight[:, :, 0, 0]
        self.bias_v, self.bias_h = _bias_map(module.cond_v, plan), _bias_map(module.cond_h, plan)
        self.row, self.link_row = -1, None

    def cond_v(self, r: int):
        """What the condition adds to the vertical stack's row r (``[B, 2ch, W]``-broadcastable, or None)."""
        if self.bias_v is None:
            return None
        return self.bias_v[:, :, 0] if self.bias_v.shape[2] == 1 else self.bias_v[:, :, r]

    def cond_h(self, r: int, c: int):
        """What the condition adds to the horizontal stack at (r, c) (``[B, 2ch]``, or None)."""
        return None if self.bias_h is None else _at(self.bias_h, r, c)

    def _write(self, h, g):
        r, c = divmod(g, self.w)
        self.hbuf[:, :, r, c + self.p] = h
        if self.v_from_h:
            self.vbuf[:, :, r + self.p, c + self.p] = h
        return r, c

    def _start_row(self, r, v):
        self.row = r
        m = self.m
        if r == 0:
            self.link_row = m.link.bias[None, :, None].expand(self.hbuf.shape[0], -1, self.w)
            return None
        if not self.v_from_h:
            self.vbuf[:, :, r - 1 + self.p, self.p: self.p + self.w] = v
        strip = self.vbuf[:, :, r - 1: r + self.p]  # rows r-1-p .. r-1
        v_pre = F.conv2d(strip, m.vertical.weight, m.vertical.bias)[:, :, 0]  # [B, 2ch, W]
        self.link_row = torch.einsum("oi,biw->bow", self.link_w, v_pre) + m.link.bias[None, :, None]
        extra = self.cond_v(r - 1)
        return gate(v_pre if extra is None else v_pre + extra)

    def step(self, h, v, g):
        r, c = self._write(h, g)
        out_v = self._start_row(r, v) if r != self.row else None
        patch = self.hbuf[:, :, r, c: c + self.p + 1]
        pre = torch.addmm(self.bh, patch.reshape(patch.shape[0], -1), self.wh) + self.link_row[:, :, c]
        extra = self.cond_h(r, c)
        if extra is not None:
            pre = pre + extra
        out = self.m.out(gate(pre)[:, :, None, None])[:, :, 0, 0]
        return (out + h if self.m.residual else out), out_v

    def commit(self, h, v, g):
        if self.first:
            self._write(h, g)
        return None


def build_masked_conv(layer, node: BuildNode):
    m = node.meta
    return MaskedConv2d(m["in_features"], layer.channels, layer.kernel, layer.mask, m["groups"],
                        condition=m.get("condition"))


def build_gated_block(layer, node: BuildNode):
    m = node.meta
    return GatedBlock(m["in_features"], m["vertical_features"], layer.channels, layer.kernel, layer.mask,
                      m["groups"], m["residual"], m.get("condition"))
