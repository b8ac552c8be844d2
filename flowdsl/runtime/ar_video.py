"""Torch modules of the Video Pixel Network layers (video_encoder, pixel_decoder) and their steppers.

Features are ``[B, F, T, H, W]``. The encoder runs its frame CNN on all frames at once (time
folded into the batch), then a convolutional LSTM over time; its output at frame t is the
state after frame t-1. The decoder folds time into the batch too and runs conditioned Gated
PixelCNN blocks on every frame. In cached generation the encoder advances its LSTM once per
frame (when the first pixel of frame t is asked for, every earlier frame is complete) and the
decoder's blocks keep row caches for the current frame only.

Example:
    >>> import torch
    >>> enc = VideoEncoder(in_features=3, channels=4, blocks=2)
    >>> dec = PixelDecoder(frame_features=3, encoder_features=4, channels=6, blocks=2, kernel=3, groups=1)
    >>> x = torch.randn(2, 3, 4, 5, 5)
    >>> e, extra = enc(x)
    >>> dec(e, None, extra)[0].shape
    torch.Size([2, 6, 4, 5, 5])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers.ar_conv import kernel_mask
from flowdsl.layers.ar_video import encoder_dilations
from flowdsl.runtime.ar_basic import GroupedLinear
from flowdsl.runtime.ar_conv import ContextBias, GatedBlockStepper, shift_down
from flowdsl.runtime.ar_module import ARModule, Plan, Stepper, gate
from flowdsl.runtime.base import BuildNode

__all__ = ["VideoEncoder", "PixelDecoder", "CondGatedBlock", "build_video_encoder", "build_pixel_decoder"]


def _fold(x):
    """``[B, F, T, H, W] -> [B * T, F, H, W]``."""
    b, f, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, f, h, w)


def _unfold(x, b: int):
    bt, f, h, w = x.shape
    return x.reshape(b, bt // b, f, h, w).transpose(1, 2)


class VideoEncoder(ARModule):
    """Frame CNN (3x3, then residual blocks of two dilated 3x3 convolutions) and a 3x3 conv LSTM over time.

    ``forward(x, context, extra) -> (E, {"frames": x})`` with ``E[:, :, t]`` the LSTM state after frame t-1."""


    def __init__(self, in_features: int, channels: int, blocks: int):
        super().__init__()
        ch = channels
        self.channels = ch
        self.inp = nn.Conv2d(in_features, ch, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(ch, ch, 3, padding=d, dilation=d), nn.Conv2d(ch, ch, 3, padding=d, dilation=d)])
            for d in encoder_dilations(blocks))
        self.lstm = nn.Conv2d(2 * ch, 4 * ch, 3, padding=1)

    def frame(self, x):
        p = self.inp(x)
        for c1, c2 in self.blocks:
            p = p + c2(F.relu(c1(F.relu(p))))
        return p

    def lstm_step(self, p, h, c):
        i, f, o, g = self.lstm(torch.cat([p, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x, context=None, extra=None):
        b, _, t, hh, ww = x.shape
        p = _unfold(self.frame(_fold(x)), b)
        h = c = x.new_zeros(b, self.channels, hh, ww)
        outs = []
        for k in range(t):
            outs.append(h)
            if k < t - 1:
                h, c = self.lstm_step(p[:, :, k], h, c)
        return torch.stack(outs, dim=2), {"frames": x}

    def stepper(self, plan: Plan):
        return _EncoderStepper(self, plan)


class _EncoderStepper(Stepper):
    def __init__(self, m: VideoEncoder, plan: Plan):
        t, h, w = plan.grid
        self.m, self.w, self.hw = m, w, h * w
        self.frames = plan.zeros(plan.batch, m.inp.in_channels, t, h, w)
        self.h = plan.zeros(plan.batch, m.channels, h, w)
        self.c = torch.zeros_like(self.h)
        self.t = -1

    def _write(self, x, g):
        t, rest = divmod(g, self.hw)
        r, c = divmod(rest, self.w)
        self.frames[:, :, t, r, c] = x
        return t, r, c

    def step(self, x, v, g):
        t, r, c = self._write(x, g)
        if t != self.t:  # frames < t are complete: advance the LSTM over frame t-1
            if t > 0:
                self.h, self.c = self.m.lstm_step(self.m.frame(self.frames[:, :, t - 1]), self.h, self.c)
            self.t = t
        return self.h[:, :, r, c], x

    def commit(self, x, v, g):
        self._write(x, g)
        return x


class CondGatedBlock(nn.Module):
    """A Gated PixelCNN block (as :class:`flowdsl.runtime.ar_conv.GatedBlock`) whose gates also read a map ``e``
    (1x1 convolutions at the same position) and, optionally, a label."""

    def __init__(self, in_features: int, channels: int, kernel: int, mask: str, groups: int, residual: bool,
                 encoder_features: int, labels: int = 0):
        super().__init__()
        ch, k, p = channels, kernel, kernel // 2
        self.k, self.residual = k, residual
        self.vertical = nn.Conv2d(in_features, 2 * ch, (p + 1, k))
        self.horizontal = nn.Conv2d(in_features, 2 * ch, (1, p + 1))
        m = torch.as_tensor(kernel_mask(ch, in_features, (1, p + 1), (0, p), mask, groups)).repeat(2, 1, 1, 1)
        self.register_buffer("h_mask", m.to(torch.get_default_dtype()), persistent=False)
        self.link = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.out = GroupedLinear(ch, ch, groups)
        self.enc_v = nn.Conv2d(encoder_features, 2 * ch, 1, bias=False)
        self.enc_h = nn.Conv2d(encoder_features, 2 * ch, 1, bias=False)
        self.cond_v = ContextBias("vector", labels, 2 * ch) if labels else None  # V h (h: the condition, flat)
        self.cond_h = ContextBias("vector", labels, 2 * ch) if labels else None

    def forward(self, h, v, e, context=None):
        k = self.k
        v_pre = self.vertical(F.pad(v, (k // 2, k // 2, k // 2, 0)))
        h_pre = F.conv2d(F.pad(h, (k // 2, 0, 0, 0)), self.horizontal.weight * self.h_mask.to(h.dtype),
                         self.horizontal.bias) + self.link(shift_down(v_pre))
        v_pre, h_pre = v_pre + self.enc_v(e), h_pre + self.enc_h(e)
        if self.cond_v is not None and self.cond_h is not None and context is not None:
            v_pre = v_pre + self.cond_v(context)
            h_pre = h_pre + self.cond_h(context)
        out = self.out(gate(h_pre))
        return (out + h if self.residual else out), gate(v_pre)


class PixelDecoder(ARModule):
    """Conditioned Gated PixelCNN blocks over every frame: ``forward(e, context, extra) -> (features, {})``."""

    def __init__(self, frame_features: int, encoder_features: int, channels: int, blocks: int, kernel: int,
                 groups: int, labels: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(
            CondGatedBlock(frame_features if b == 0 else channels, channels, kernel, "A" if b == 0 else "B", groups,
                           b > 0, encoder_features, labels) for b in range(blocks))

    def forward(self, e, context=None, extra=None):
        b, t = e.shape[0], e.shape[2]
        frames = _fold(extra["frames"])
        ef = _fold(e)
        ctx = None if context is None else context.repeat_interleave(t, dim=0)
        h = v = frames
        for block in self.blocks:
            h, v = block(h, v, ef, ctx)
        return _unfold(h, b), {}

    def stepper(self, plan: Plan):
        return _DecoderStepper(self, plan)


class _FrameBlockStepper(GatedBlockStepper):
    """A conditioned gated block over one frame; the encoder's map of the frame so far is ``ebuf``."""

    def __init__(self, module: CondGatedBlock, plan: Plan, ebuf):
        super().__init__(module, plan)
        self.ebuf = ebuf
        self.ev, self.eh = module.enc_v.weight[:, :, 0, 0], module.enc_h.weight[:, :, 0, 0].T.contiguous()

    def cond_v(self, r):
        row = torch.einsum("oi,biw->bow", self.ev, self.ebuf[:, :, r])
        extra = super().cond_v(r)
        return row if extra is None else row + extra

    def cond_h(self, r, c):
        here = self.ebuf[:, :, r, c] @ self.eh
        extra = super().cond_h(r, c)
        return here if extra is None else here + extra


class _DecoderStepper(Stepper):
    def __init__(self, m: PixelDecoder, plan: Plan):
        self.m, self.plan = m, plan
        _, self.h, self.w = plan.grid
        self.t, self.inner = -1, []

    def _new_frame(self):
        p = self.plan
        self.ebuf = p.zeros(p.batch, self.m.blocks[0].enc_v.in_channels, self.h, self.w)
        self.inner = [_FrameBlockStepper(blk, Plan(p.batch, (self.h, self.w), p.dtype, p.device, p.context,
                                                   first=i == 0, after_stream=i > 0), self.ebuf)
                      for i, blk in enumerate(self.m.blocks)]

    def _where(self, g):
        t, rest = divmod(g, self.h * self.w)
        return t, rest, *divmod(rest, self.w)

    def step(self, e, x, g):
        t, g2, r, c = self._where(g)
        if t != self.t:
            self._new_frame()
            self.t = t
        self.ebuf[:, :, r, c] = e
        h, v = x, None
        for s in self.inner:
            h, v = s.step(h, v, g2)
        return h, None

    def commit(self, h, x, g):
        self.inner[0].commit(x, None, self._where(g)[1])
        return None


def build_video_encoder(layer, node: BuildNode):
    return VideoEncoder(node.meta["in_features"], layer.channels, layer.blocks)


def build_pixel_decoder(layer, node: BuildNode):
    m = node.meta
    return PixelDecoder(m["frame_features"], m["encoder_features"], layer.channels, layer.blocks, layer.kernel,
                        m["groups"], node.context_features)
