"""Additive and affine coupling layers (NICE, RealNVP, Glow) for any mask the checker accepts.

Index masks (``half``, ``channel(p)``, explicit lists) select kept and transformed parts with
index tensors built once at compile time; spatial masks (``checkerboard(p)``) multiply by a
fixed 0/1 buffer. The conditioner only ever sees kept positions.

Example:
    >>> import torch
    >>> from flowdsl import compile_source
    >>> flow = compile_source("flow f {\\n input x: vector[4]\\n coupling affine(mask=half)\\n}\\n")
    >>> x = torch.randn(3, 4)
    >>> z, ld = flow(x)
    >>> torch.allclose(flow.inverse(z), x, atol=1e-6)
    True
"""

from __future__ import annotations

import torch

from flowdsl.runtime.base import Bijection, BuildNode, sum_except_batch
from flowdsl.runtime.nets import build_net

__all__ = ["Coupling", "build_coupling"]


class Coupling(Bijection):
    """y_t = x_t * exp(s(x_k)) + t(x_k) (affine) or x_t + t(x_k) (additive); y_k = x_k."""

    def __init__(self, kept, spatial: bool, affine: bool, net, clamp: float, shape):
        super().__init__()
        kept = torch.as_tensor(kept, dtype=torch.bool)
        self.spatial = spatial
        self.affine = affine
        self.clamp = float(clamp)
        self.net = net
        self.shape = tuple(shape)
        if spatial:
            self.register_buffer("kept_mask", kept.to(torch.get_default_dtype()), persistent=False)
        else:
            axis = kept.reshape(kept.shape[0], -1)[:, 0] if kept.dim() > 1 else kept
            self.register_buffer("kept_idx", torch.nonzero(axis).flatten(), persistent=False)
            self.register_buffer("trans_idx", torch.nonzero(~axis).flatten(), persistent=False)
        # kept and transformed parts that are two contiguous blocks (half, channel(p)) are read as views
        # and joined by one cat: no gathers, no scatter (decided once, here)
        self.blocks = None
        if not spatial:
            n_kept = int(axis.sum())
            if bool(axis[:n_kept].all()):
                self.blocks = (True, n_kept)  # kept first
            elif bool(axis[len(axis) - n_kept:].all()):
                self.blocks = (False, len(axis) - n_kept)  # transformed first

    def _parts(self, x):
        """(kept part, transformed part) along axis 1."""
        if self.blocks is None:
            return x.index_select(1, self.kept_idx), x.index_select(1, self.trans_idx)
        kept_first, n = self.blocks
        a, b = x[:, :n], x[:, n:]
        return (a, b) if kept_first else (b, a)

    def _join(self, x, x_k, y_t):
        """x with its transformed part replaced by y_t."""
        if self.blocks is None:
            return x.index_copy(1, self.trans_idx, y_t)
        return torch.cat([x_k, y_t] if self.blocks[0] else [y_t, x_k], dim=1)

    def _params(self, x_kept, context):
        out = self.net(x_kept, context)
        if not self.affine:
            return None, out
        shift, raw = out.chunk(2, dim=1)
        log_scale = self.clamp * torch.tanh(raw / self.clamp)
        return log_scale, shift

    def _transform(self, x, context, sign: int):
        if self.spatial:
            m = self.kept_mask.to(x.dtype)
            log_s, t = self._params(x * m, context)
            if self.affine:
                log_s = log_s * (1 - m)
            t = t * (1 - m)
            if sign > 0:
                y = x * torch.exp(log_s) + t if self.affine else x + t
            else:
                y = (x - t) * torch.exp(-log_s) if self.affine else x - t
            ld = sum_except_batch(log_s) if self.affine else x.new_zeros(x.shape[0])
            return y, sign * ld
        x_k, x_t = self._parts(x)
        log_s, t = self._params(x_k, context)
        if sign > 0:
            y_t = x_t * torch.exp(log_s) + t if self.affine else x_t + t
        else:
            y_t = (x_t - t) * torch.exp(-log_s) if self.affine else x_t - t
        y = self._join(x, x_k, y_t)
        ld = sum_except_batch(log_s) if self.affine else x.new_zeros(x.shape[0])
        return y, sign * ld

    def forward(self, x, context=None):
        return self._transform(x, context, +1)

    def inverse(self, y, context=None):
        return self._transform(y, context, -1)


def build_coupling(layer, node: BuildNode) -> Coupling:
    kept = layer.mask.kept(node.in_shape)
    affine = layer.params_per_dim == 2
    net = build_net(layer.net, node.meta["net_in"], node.meta["net_out"], node.context_features)
    return Coupling(kept, layer.mask.style == "spatial", affine, net, getattr(layer, "clamp", 3.0), node.in_shape)
