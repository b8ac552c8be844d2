"""Torch modules of the sequence layers (embed, causal_conv, gated_residual, bytenet_block) and their steppers.

Features are ``[B, F, L]``. A convolution's taps are the offsets the checker propagated
(:func:`flowdsl.layers.ar_sequence.conv_offsets`), an arithmetic progression with step d, so
the forward pass is one dilated ``conv1d`` on a padded input. Each module's ``stepper(plan)``
is its incremental form for cached generation (:mod:`flowdsl.runtime.ar_cache`): a history of
its input read at ``t + offset`` (the Fast WaveNet queue), O(1) work per step.

The condition (:class:`SequenceBias`): a vector ``[B, F]`` through a Linear (global), or a sequence
map ``[B, C, L']`` (the module sets ``context_layout = "map"``) upsampled to L (repetition or a
learned transposed convolution) and read through a 1x1 convolution (local); a stepper computes
it once per sampling call and adds it step by step, so cached and naive sampling agree.

Example:
    >>> import torch
    >>> conv = TapConv1d(2, 3, offsets=(-4, -2, 0))
    >>> conv(torch.randn(1, 2, 10)).shape
    torch.Size([1, 3, 10])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.ar_module import ARModule, Plan, Stepper, gate
from flowdsl.runtime.base import BuildNode, zero_fill_missing
from flowdsl.runtime.conditions import context_mode

__all__ = ["Embed", "TapConv1d", "GatedResidual", "ByteNetBlock", "History", "SequenceBias", "build_embed",
           "build_causal_conv", "build_gated_residual", "build_bytenet_block"]


class History:
    """A layer's input so far, ``[B, P + L, F]`` (P zero columns of left padding), read at ``t + offsets``."""

    def __init__(self, plan: Plan, features: int, offsets):
        self.pad = max(0, -min(offsets))
        self.buf = plan.zeros(plan.batch, self.pad + plan.grid[0], features)
        self.offsets = torch.as_tensor(offsets, device=plan.device) + self.pad

    def write(self, h, t: int):
        self.buf[:, t + self.pad] = h

    def read(self, t: int) -> torch.Tensor:
        """``[B, n * F]``: the taps at t, offset-major."""
        return self.buf[:, self.offsets + t].reshape(self.buf.shape[0], -1)


class SequenceBias(nn.Module):
    """What the condition adds to a layer's ``out`` features at every step (no bias of its own).

    ``mode="vector"``: ``V h`` for a context ``[B, F]`` (``[B, out, 1]``); ``mode="map"``: a map ``[B, C, L']``
    upsampled ``scale`` times (``upsample="repeat"``: each value repeated; ``"transposed"``: a learned
    transposed convolution, kernel = stride = scale) and read by a 1x1 convolution (``[B, out, L' * scale]``).
    The weight ``[out, F]`` keeps a Linear's name (checkpoints of the label-conditional WaveNet load).

        >>> bias = SequenceBias("map", 3, 8, scale=4, upsample="transposed")
        >>> bias(torch.randn(2, 3, 5)).shape
        torch.Size([2, 8, 20])
    """

    def __init__(self, mode: str, features: int, out: int, scale: int = 1, upsample: str | None = "repeat"):
        super().__init__()
        self.mode, self.scale = mode, int(scale)
        self.weight = nn.Parameter(torch.empty(out, features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # as nn.Linear
        learned = mode == "map" and upsample == "transposed" and self.scale > 1
        self.up = nn.ConvTranspose1d(features, features, self.scale, stride=self.scale) if learned else None
        if self.up is not None:
            with torch.no_grad():  # start as repetition (each value copied to its scale steps), plus noise
                self.up.weight.mul_(0.1).add_(torch.eye(features)[:, :, None])
                self.up.bias.zero_()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint of a layer that did not read the condition (causal_conv before it did) adds nothing: zero
        zero_fill_missing(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(context.dtype)
        if self.mode == "vector":
            return (context.reshape(context.shape[0], -1) @ w.T)[:, :, None]
        if self.up is not None:
            context = self.up(context)
        elif self.scale > 1:
            context = context.repeat_interleave(self.scale, dim=2)
        return torch.einsum("oc,bcl->bol", w, context)


def _sequence_bias(module: nn.Module, condition: dict | None, out: int) -> SequenceBias | None:
    """The module's context bias for the layer's ``condition`` facts (None: it reads none); a map reader
    declares ``context_layout = "map"`` (:func:`flowdsl.runtime.conditions.context_for`)."""
    mode = context_mode(module, condition)
    if mode is None:
        return None
    return SequenceBias(mode, condition["features"], out, condition["scale"], condition["upsample"])


def _bias_steps(cond: SequenceBias | None, plan: Plan) -> torch.Tensor | None:
    """The context bias of a sampling call, computed once, ``[B, out, 1]`` or ``[B, out, L]``."""
    return None if cond is None or plan.context is None else cond(plan.context.to(plan.dtype))


def _bias_at(bias: torch.Tensor, t: int) -> torch.Tensor:
    """``[B, out]``: the context bias at step t."""
    return bias[:, :, 0] if bias.shape[2] == 1 else bias[:, :, t]


def _tap_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``[O, F, n] -> [n * F, O]`` matching :meth:`History.read`."""
    return weight.permute(2, 1, 0).reshape(-1, weight.shape[0])


class TapConv1d(ARModule):
    """``out[t] = b + sum_j W_j x[t + offsets[j]]`` with evenly spaced offsets (zero padding outside)."""

    def __init__(self, in_features: int, out_features: int, offsets, condition: dict | None = None):
        super().__init__()
        self.offsets = tuple(int(o) for o in offsets)
        self.dilation = self.offsets[1] - self.offsets[0] if len(self.offsets) > 1 else 1
        self.weight = nn.Parameter(torch.empty(out_features, in_features, len(self.offsets)))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.cond = _sequence_bias(self, condition, out_features)

    def forward(self, x, context=None):
        first, last, length = self.offsets[0], self.offsets[-1], x.shape[-1]
        left, right = max(-first, 0), max(last, 0)
        y = F.conv1d(F.pad(x, (left, right)), self.weight.to(x.dtype), self.bias.to(x.dtype), dilation=self.dilation)
        y = y[:, :, first + left: first + left + length]
        return y if self.cond is None or context is None else y + self.cond(context)

    def stepper(self, plan: Plan):
        return _ConvStepper(self, plan)


class _ConvStepper(Stepper):
    def __init__(self, conv: TapConv1d, plan: Plan):
        self.hist, self.first = History(plan, conv.weight.shape[1], conv.offsets), plan.first
        self.w, self.b = _tap_matrix(conv.weight), conv.bias
        self.extra = _bias_steps(conv.cond, plan)

    def step(self, h, v, t):
        self.hist.write(h, t)
        out = torch.addmm(self.b, self.hist.read(t), self.w)
        return (out if self.extra is None else out + _bias_at(self.extra, t)), None

    def commit(self, h, v, t):
        if self.first:
            self.hist.write(h, t)
        return None


class Embed(ARModule):
    """Integers ``[B, L]`` -> ``[B, dim, L]``: position i gets the embedding of x_{i-1}, position 0 a start vector."""

    def __init__(self, levels: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(levels, dim)
        self.start = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.table.weight, std=dim ** -0.5)

    def forward(self, x, context=None):
        e = self.table(x.long()).to(self.start.dtype)  # [B, L, dim]
        e = torch.cat([self.start.expand(x.shape[0], 1, -1), e[:, :-1]], dim=1)
        return e.transpose(1, 2)

    def stepper(self, plan: Plan):
        return _EmbedStepper(self, plan)


class _EmbedStepper(Stepper):
    def __init__(self, embed: Embed, plan: Plan):
        self.e, self.prev = embed, torch.zeros(plan.batch, dtype=torch.long, device=plan.device)

    def step(self, h, v, t):
        if t == 0:
            return self.e.start.expand(self.prev.shape[0], -1), None
        return self.e.table(self.prev), None

    def commit(self, h, v, t):
        self.prev = h.long().clone()  # x_t: what position t + 1 embeds
        return None


class GatedResidual(ARModule):
    """A WaveNet block: ``forward(h, context, extra) -> (skip sum, {"residual": residual stream})``.

    ``h`` is the skip sum so far and ``extra["residual"]`` the residual stream; without a residual
    stream (the first block of a stack) ``h`` is the residual stream and the skip sum starts here."""


    def __init__(self, residual: int, skip: int, offsets, condition: dict | None = None):
        super().__init__()
        self.conv = TapConv1d(residual, 2 * residual, offsets)
        self.res = nn.Conv1d(residual, residual, 1)
        self.skip = nn.Conv1d(residual, skip, 1)
        self.cond = _sequence_bias(self, condition, 2 * residual)  # global V h, or local V * y (in both gates)

    def forward(self, h, context=None, extra=None):
        v = extra.get("residual") if isinstance(extra, dict) else extra
        x, s = (h, None) if v is None else (v, h)
        pre = self.conv(x)
        if self.cond is not None and context is not None:
            pre = pre + self.cond(context)
        z = gate(pre)
        skip = self.skip(z)
        return (skip if s is None else s + skip), {"residual": x + self.res(z)}

    def stepper(self, plan: Plan):
        return _GatedResidualStepper(self, plan)


class _GatedResidualStepper(Stepper):
    def __init__(self, m: GatedResidual, plan: Plan):
        r = m.res.in_channels
        self.starts = not plan.after_stream
        self.hist = History(plan, r, m.conv.offsets)
        self.wc, self.bc = _tap_matrix(m.conv.weight), m.conv.bias
        self.extra = _bias_steps(m.cond, plan)  # [B, 2R, 1] (global) or [B, 2R, L] (local)
        self.w_out = torch.cat([m.res.weight[:, :, 0], m.skip.weight[:, :, 0]]).T.contiguous()
        self.b_out = torch.cat([m.res.bias, m.skip.bias])
        self.r = r

    def step(self, h, v, t):
        x, s = (h, None) if self.starts else (v, h)
        self.hist.write(x, t)
        pre = torch.addmm(self.bc, self.hist.read(t), self.wc)
        z = gate(pre if self.extra is None else pre + _bias_at(self.extra, t))
        out = torch.addmm(self.b_out, z, self.w_out)
        res, skip = x + out[:, : self.r], out[:, self.r:]
        return (skip if s is None else s + skip), res


class ByteNetBlock(ARModule):
    """x + 1x1(relu(LN(conv(relu(LN(1x1(relu(LN(x))))))))), layer norms over the features of each position."""

    def __init__(self, channels: int, offsets, condition: dict | None = None):
        super().__init__()
        c, h = channels, channels // 2
        self.norm1, self.down = nn.LayerNorm(c), nn.Conv1d(c, h, 1)
        self.norm2, self.conv = nn.LayerNorm(h), TapConv1d(h, h, offsets)
        self.norm3, self.up = nn.LayerNorm(h), nn.Conv1d(h, c, 1)
        self.cond = _sequence_bias(self, condition, h)  # the source at each position, into the first 1x1

    @staticmethod
    def _ln(norm, x):
        return norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x, context=None):
        d = self.down(F.relu(self._ln(self.norm1, x)))
        if self.cond is not None and context is not None:
            d = d + self.cond(context)
        a = F.relu(self._ln(self.norm2, d))
        return x + self.up(F.relu(self._ln(self.norm3, self.conv(a))))

    def stepper(self, plan: Plan):
        return _ByteNetStepper(self, plan)


class _ByteNetStepper(Stepper):
    def __init__(self, m: ByteNetBlock, plan: Plan):
        self.m, self.hist = m, History(plan, m.down.out_channels, m.conv.offsets)
        self.wc, self.bc = _tap_matrix(m.conv.weight), m.conv.bias
        self.wd, self.wu = m.down.weight[:, :, 0].T.contiguous(), m.up.weight[:, :, 0].T.contiguous()
        self.extra = _bias_steps(m.cond, plan)

    def step(self, h, v, t):
        m = self.m
        d = torch.addmm(m.down.bias, F.relu(m.norm1(h)), self.wd)
        a = F.relu(m.norm2(d if self.extra is None else d + _bias_at(self.extra, t)))
        self.hist.write(a, t)
        y = F.relu(m.norm3(torch.addmm(self.bc, self.hist.read(t), self.wc)))
        return h + torch.addmm(m.up.bias, y, self.wu), None


def build_embed(layer, node: BuildNode):
    return Embed(node.meta["levels"], layer.dim)


def _condition(node: BuildNode) -> dict | None:
    """The layer's condition facts (:func:`flowdsl.layers.ar_sequence.sequence_condition`; mode None: it reads none)."""
    return node.meta.get("condition")


def build_causal_conv(layer, node: BuildNode):
    return TapConv1d(node.meta["in_features"], layer.channels, node.meta["offsets"], _condition(node))


def build_gated_residual(layer, node: BuildNode):
    return GatedResidual(layer.residual, layer.skip, node.meta["offsets"], _condition(node))


def build_bytenet_block(layer, node: BuildNode):
    return ByteNetBlock(layer.channels, node.meta["offsets"], _condition(node))
