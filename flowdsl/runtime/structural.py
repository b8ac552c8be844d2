"""Permute, invertible 1x1 convolution (LU), squeeze and split.

Example:
    >>> import torch
    >>> sq = Squeeze(2)
    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> y, _ = sq(x)
    >>> y.shape, torch.equal(sq.inverse(y)[0], x)
    (torch.Size([1, 4, 2, 2]), True)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.base import Bijection, BuildNode
from flowdsl.runtime.optimize import fusing, optimizations_enabled
from flowdsl.runtime.optimize_cache import DerivedCache

__all__ = ["Permute", "InvConv1x1", "Squeeze", "Split"]


class Permute(Bijection):
    """Fixed permutation of axis 1 (features or channels); volume preserving."""

    def __init__(self, indices):
        super().__init__()
        self.set_indices(indices)
        self.identity = False  # as written (a gather); only the optimisation pass skips identities

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.meta["indices"])

    def set_indices(self, indices) -> None:
        """Permute by ``indices`` (the compile-time folding pass composes chains into one of them);
        the identity permutation gathers nothing."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        self.register_buffer("idx", idx, persistent=False)
        self.register_buffer("inv", torch.argsort(idx), persistent=False)
        self.identity = bool(torch.equal(idx, torch.arange(len(idx), device=idx.device)))

    def forward(self, x, context=None):
        return (x if self.identity else x.index_select(1, self.idx)), x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return (y if self.identity else y.index_select(1, self.inv)), y.new_zeros(y.shape[0])


class InvConv1x1(Bijection):
    """W = P L (U + diag(sign * exp(log_s))) applied per pixel (images) or as a dense map (vectors)."""

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=gen, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        dtype = torch.get_default_dtype()
        self.register_buffer("perm", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1).to(dtype), persistent=False)
        self.register_buffer("eye", torch.eye(channels, dtype=dtype), persistent=False)
        self.lower = nn.Parameter(lower.to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))
        self.cache_weights = optimizations_enabled()  # reuse W and W^-1 in evaluation (the optimize flag)
        self._weight, self._inverse = DerivedCache(), DerivedCache()
        self.channels = channels
        self._pre: tuple[nn.Module, ...] = ()  # the actnorm fused into this layer (a tuple: not a submodule)
        self._fused, self._fused_inverse = DerivedCache(), DerivedCache()

    @property
    def fused_actnorm(self) -> nn.Module | None:
        """The actnorm before this layer whose affine map it applies in evaluation (optimize_fusion), or None."""
        return self._pre[0] if self._pre else None

    def absorb_actnorm(self, actnorm: nn.Module) -> None:
        """Apply ``actnorm``'s map ``(x + b) * exp(s)`` in this layer's convolution when fusing (see
        :mod:`flowdsl.runtime.optimize_fusion`)."""
        self._pre = (actnorm,)
        actnorm.fused_into_next = True

    def _fused_sources(self):
        a = self._pre[0]
        return (*self._sources(), a.bias, a.log_scale)

    def _fused_forward(self, dtype):
        """``(W diag(exp(s)), W diag(exp(s)) b)``."""
        a = self._pre[0]
        w = self.weight().to(dtype) * torch.exp(a.log_scale.to(dtype))[None, :]
        return torch.cat([w, (w @ a.bias.to(dtype))[:, None]], dim=1)

    def _fused_backward(self, dtype):
        """``(diag(exp(-s)) W^-1, -b)``."""
        a = self._pre[0]
        w_inv = torch.linalg.inv(self.weight().to(dtype)) * torch.exp(-a.log_scale.to(dtype))[:, None]
        return torch.cat([w_inv, -a.bias.to(dtype)[:, None]], dim=1)

    def _affine(self, x, wb):
        w, b = wb[:, :-1], wb[:, -1]
        if x.dim() == 2:
            return torch.addmm(b, x, w.T)
        return F.conv2d(x, w[:, :, None, None], b)

    def _fusing(self) -> bool:
        return bool(self._pre) and fusing(self._pre[0])

    def _sources(self):
        return (self.lower, self.upper, self.log_s, self.perm, self.sign_s, self.lower_mask, self.eye)

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.in_shape[0], seed=layer.seed * 1000 + node.position + 1)  # seeds as before the typed IR

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def _mix(self, x, w):
        if x.dim() == 2:
            return x @ w.T
        return F.conv2d(x, w.to(x.dtype)[:, :, None, None])

    def forward(self, x, context=None):
        pixels = x[0, 0].numel() if x.dim() > 2 else 1
        ld = self.log_s.sum() * pixels
        if self._fusing():
            wb = self._fused.get(self._fused_sources(), lambda: self._fused_forward(x.dtype), tag=x.dtype)
            return self._affine(x, wb), ld.to(x.dtype).expand(x.shape[0])
        w = self._weight.get(self._sources(), lambda: self.weight().to(x.dtype), tag=x.dtype,
                             enabled=self.cache_weights)
        return self._mix(x, w), ld.to(x.dtype).expand(x.shape[0])

    def inverse(self, y, context=None):
        pixels = y[0, 0].numel() if y.dim() > 2 else 1
        if self._fusing():
            wb = self._fused_inverse.get(self._fused_sources(), lambda: self._fused_backward(y.dtype), tag=y.dtype)
            return self._affine(y, wb), (-self.log_s.sum() * pixels).to(y.dtype).expand(y.shape[0])
        w_inv = self._inverse.get(self._sources(), lambda: torch.linalg.inv(self.weight().to(y.dtype)), tag=y.dtype,
                                  enabled=self.cache_weights)
        return self._mix(y, w_inv), (-self.log_s.sum() * pixels).to(y.dtype).expand(y.shape[0])


class Squeeze(Bijection):
    """[B, C, H, W] -> [B, C f f, H/f, W/f]; channel c f^2 + i f + j holds pixel (f h + i, f w + j) of c."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(layer.factor)

    def squeeze(self, x):
        b, c, h, w = x.shape
        f = self.factor
        x = x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * f * f, h // f, w // f)

    def unsqueeze(self, y):
        b, c, h, w = y.shape
        f = self.factor
        y = y.reshape(b, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c // (f * f), h * f, w * f)

    def forward(self, x, context=None):
        return self.squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return self.unsqueeze(y), y.new_zeros(y.shape[0])


class Split(nn.Module):
    """Factor the last half of axis 1 out to the base density (the compiled flow keeps the parts)."""

    def __init__(self, kept: int):
        super().__init__()
        self.kept = kept

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.out_shape[0])

    def split(self, x):
        return x[:, : self.kept], x[:, self.kept:]

    def merge(self, kept, factored):
        return torch.cat([kept, factored], dim=1)
