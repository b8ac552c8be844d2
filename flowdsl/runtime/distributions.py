"""Base densities of flows: the standard (or learnable) normal and the standard logistic.

Example:
    >>> import torch
    >>> base = Normal((2,))
    >>> round(base.log_prob(torch.zeros(1, 2)).item(), 6)  # -log(2 pi)
    -1.837877
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Normal", "Logistic"]

_LOG_2PI = math.log(2 * math.pi)


class Normal(nn.Module):
    """N(0, I), or N(mu, diag(sigma^2)) with a learned mean and log-scale per dimension."""

    def __init__(self, shape, learnable: bool = False):
        super().__init__()
        self.shape = tuple(shape)
        self.learnable = learnable
        if learnable:
            self.loc = nn.Parameter(torch.zeros(self.shape))
            self.log_scale = nn.Parameter(torch.zeros(self.shape))

    @classmethod
    def build(cls, spec, shape):
        return cls(shape, spec.learnable)

    def log_prob(self, z):
        if self.learnable:
            u = (z - self.loc) * torch.exp(-self.log_scale)
            lp = -0.5 * (u * u + _LOG_2PI) - self.log_scale
        else:
            lp = -0.5 * (z * z + _LOG_2PI)
        return lp.reshape(z.shape[0], -1).sum(dim=1).to(torch.float64 if z.dtype == torch.float64 else z.dtype)

    def sample(self, n, device=None, dtype=None):
        ref = next(iter(self.buffers()), None) if not self.learnable else self.loc
        device = device or (ref.device if ref is not None else None)
        z = torch.randn((n, *self.shape), device=device, dtype=dtype or torch.get_default_dtype())
        if self.learnable:
            z = self.loc.to(z.dtype) + z * torch.exp(self.log_scale.to(z.dtype))
        return z


class Logistic(nn.Module):
    """The standard logistic density per dimension (NICE's base)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    @classmethod
    def build(cls, spec, shape):
        return cls(shape)

    def log_prob(self, z):
        lp = -(F.softplus(z) + F.softplus(-z))
        return lp.reshape(z.shape[0], -1).sum(dim=1)

    def sample(self, n, device=None, dtype=None):
        dtype = dtype or torch.get_default_dtype()
        u = torch.rand((n, *self.shape), device=device, dtype=dtype).clamp(1e-12, 1 - 1e-12)
        return torch.log(u) - torch.log1p(-u)
