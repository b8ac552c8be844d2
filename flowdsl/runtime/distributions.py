"""Base densities of flows: the normal and the logistic, standard, learnable or conditional.

Each is a location-scale family over the latent: ``z = loc + exp(log_scale) u`` with ``u`` standard.
``loc`` and ``log_scale`` are zero (the standard base), learned per dimension (``learnable=true``) or,
for a conditional base (``conditional=true`` in a model with a condition), a linear map of the
flattened encoded condition ``[B, F]``, zero-initialised so that the base starts standard. A
conditional base sets ``conditional = True`` and takes ``log_prob(z, context)`` and
``sample(n, device=, dtype=, context=)`` (the protocol :class:`flowdsl.runtime.flow.CompiledFlow` follows).

Example:
    >>> import torch
    >>> from flowdsl.layers.facts import ContextShape
    >>> base = Normal((2,))
    >>> round(base.log_prob(torch.zeros(1, 2)).item(), 6)  # -log(2 pi)
    -1.837877
    >>> cond = Normal((2,), context=ContextShape("vector", (3,)))
    >>> cond.conditional, round(cond.log_prob(torch.zeros(1, 2), torch.ones(1, 3)).item(), 6)  # starts standard
    (True, -1.837877)
    >>> cond.sample(4, context=torch.ones(4, 3)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Normal", "Logistic"]

_LOG_2PI = math.log(2 * math.pi)


class _LocationScale(nn.Module):
    """``z = loc + exp(log_scale) u``, ``u`` from the standard density of the subclass."""

    def __init__(self, shape, learnable: bool = False, context=None):
        super().__init__()
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)
        #: the base reads the condition (CompiledFlow passes it the flattened encoded condition)
        self.conditional = context is not None
        self.learnable = bool(learnable) and not self.conditional
        if self.conditional:
            self.hyper = nn.Linear(context.features, 2 * self.size)  # its bias: the unconditional loc, log-scale
            nn.init.zeros_(self.hyper.weight)
            nn.init.zeros_(self.hyper.bias)
        elif self.learnable:
            self.loc = nn.Parameter(torch.zeros(self.shape))
            self.log_scale = nn.Parameter(torch.zeros(self.shape))

    @classmethod
    def build(cls, spec, shape, context=None):
        """The compiler's builder: ``context`` is the encoded condition's shape for a conditional base."""
        return cls(shape, spec.learnable, context if getattr(spec, "conditional", False) else None)

    def _loc_scale(self, context, dtype):
        """``(loc, log_scale)`` broadcastable to ``[B, *shape]``, or None for the standard base."""
        if self.conditional:
            if context is None:
                return None
            h = self.hyper(context.reshape(context.shape[0], -1).to(self.hyper.weight.dtype)).to(dtype)
            loc, log_scale = h.reshape(h.shape[0], 2, *self.shape).unbind(1)
            return loc, log_scale
        if self.learnable:
            return self.loc.to(dtype), self.log_scale.to(dtype)
        return None

    def _standard_log_prob(self, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _standard_sample(self, shape, device, dtype) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, z, context=None):
        """log density of ``z`` [B, *shape], summed per example: [B]."""
        ls = self._loc_scale(context, z.dtype)
        if ls is None:
            lp = self._standard_log_prob(z)
        else:
            loc, log_scale = ls
            lp = self._standard_log_prob((z - loc) * torch.exp(-log_scale)) - log_scale
        return lp.reshape(z.shape[0], -1).sum(dim=1)

    def sample(self, n, device=None, dtype=None, context=None):
        """``n`` latents [n, *shape] (one per row of ``context`` for a conditional base)."""
        ref = next(iter(self.parameters()), None)
        device = device or (ref.device if ref is not None else None)
        dtype = dtype or torch.get_default_dtype()
        u = self._standard_sample((n, *self.shape), device, dtype)
        ls = self._loc_scale(context, dtype)
        if ls is None:
            return u
        loc, log_scale = ls
        return loc + u * torch.exp(log_scale)


class Normal(_LocationScale):
    """N(0, I); N(mu, diag(sigma^2)) with a learned mean and log-scale per dimension; or conditional."""

    def _standard_log_prob(self, u):
        return -0.5 * (u * u + _LOG_2PI)

    def _standard_sample(self, shape, device, dtype):
        return torch.randn(shape, device=device, dtype=dtype)


class Logistic(_LocationScale):
    """The logistic density per dimension (NICE's base): standard, learnable or conditional."""

    def _standard_log_prob(self, u):
        return -(F.softplus(u) + F.softplus(-u))

    def _standard_sample(self, shape, device, dtype):
        u = torch.rand(shape, device=device, dtype=dtype).clamp(1e-12, 1 - 1e-12)
        return torch.log(u) - torch.log1p(-u)
