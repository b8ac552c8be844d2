"""Elementwise bijections: ActNorm, BatchNorm, Logit, Dequantize.

Per-feature parameters live on axis 1: the features of a vector, the channels of an image.

Example:
    >>> import torch
    >>> layer = Logit(alpha=0.05, scale=1.0)
    >>> x = torch.rand(2, 3)
    >>> y, ld = layer(x)
    >>> torch.allclose(layer.inverse(y)[0], x, atol=1e-6)
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.base import Bijection, BuildNode, sum_except_batch
from flowdsl.runtime.optimize import fusing

__all__ = ["ActNorm", "BatchNorm", "Logit", "Dequantize"]


def _view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-feature vector shaped to broadcast over ``x`` ([B, F] or [B, C, H, W])."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def _spatial(x: torch.Tensor) -> int:
    return int(math.prod(x.shape[2:])) if x.dim() > 2 else 1


class ActNorm(Bijection):
    """y = (x + bias) * exp(log_scale); initialised from the first training batch to zero mean, unit variance."""

    def __init__(self, features: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # True once `initialized` was seen set: training steps then never read it (no host sync)
        #: set by the fusion pass (flowdsl.runtime.optimize_fusion) when the next layer, an invconv1x1, applies
        #: this layer's affine map itself in evaluation
        self.fused_into_next = False

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.in_shape[0])

    @torch.no_grad()
    def _initialize(self, x):
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False) if x.shape[0] * _spatial(x) > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = False  # the loaded flag is read again by the next training call

    def forward(self, x, context=None):
        if self.training and not self._ready:
            if not bool(self.initialized):
                self._initialize(x)
            self._ready = True
        ld = (self.log_scale.sum() * _spatial(x)).expand(x.shape[0]).to(x.dtype)
        if self.fused_into_next and fusing(self):  # the invconv1x1 after it applies the map
            return x, ld
        return (x + _view(self.bias, x)) * torch.exp(_view(self.log_scale, x)), ld

    def inverse(self, y, context=None):
        ld = (-self.log_scale.sum() * _spatial(y)).expand(y.shape[0]).to(y.dtype)
        if self.fused_into_next and fusing(self):  # the invconv1x1 after it undid the map already
            return y, ld
        return y * torch.exp(-_view(self.log_scale, y)) - _view(self.bias, y), ld



class BatchNorm(Bijection):
    """Batch normalisation as a bijection: batch statistics in training, running averages in evaluation."""

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.in_shape[0], layer.momentum, layer.eps)

    def _stats(self, x):
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
            return mean, var
        return self.running_mean.to(x.dtype), self.running_var.to(x.dtype)

    def forward(self, x, context=None):
        mean, var = self._stats(x)
        y = (x - _view(mean, x)) / torch.sqrt(_view(var, x) + self.eps) * torch.exp(_view(self.log_gamma, x))
        y = y + _view(self.beta, x)
        ld = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum() * _spatial(x)
        return y, ld.expand(x.shape[0])

    def inverse(self, y, context=None):
        mean, var = self.running_mean.to(y.dtype), self.running_var.to(y.dtype)
        x = (y - _view(self.beta, y)) * torch.exp(-_view(self.log_gamma, y)) * torch.sqrt(_view(var, y) + self.eps)
        x = x + _view(mean, y)
        ld = -(self.log_gamma - 0.5 * torch.log(var + self.eps)).sum() * _spatial(y)
        return x, ld.expand(y.shape[0])


class Logit(Bijection):
    """x in [0, scale) -> p = alpha + (1 - 2 alpha) x / scale -> log(p / (1 - p))."""

    def __init__(self, alpha: float, scale: float):
        super().__init__()
        self.alpha, self.scale = float(alpha), float(scale)

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(layer.alpha, node.meta.get("scale", 1.0))

    def forward(self, x, context=None):
        p = self.alpha + (1 - 2 * self.alpha) * x / self.scale
        y = torch.log(p) - torch.log1p(-p)
        ld = math.log(1 - 2 * self.alpha) - math.log(self.scale) - torch.log(p) - torch.log1p(-p)
        return y, sum_except_batch(ld)

    def inverse(self, y, context=None):
        p = torch.sigmoid(y)
        x = (p - self.alpha) / (1 - 2 * self.alpha) * self.scale
        ld = -(math.log(1 - 2 * self.alpha) - math.log(self.scale)) + F.logsigmoid(y) + F.logsigmoid(-y)
        return x, sum_except_batch(ld)


class Dequantize(Bijection):
    """Marks uniform dequantization; the identity on continuous values (the model adds the noise)."""

    method = "uniform"

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls()

    def forward(self, x, context=None):
        return x, x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return y, y.new_zeros(y.shape[0])
