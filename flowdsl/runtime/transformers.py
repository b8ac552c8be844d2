"""The torch modules of the transformer family, one per member of :mod:`flowdsl.layers.transformers`.

Every transformer is one ``nn.Module`` with ``params_per_dim`` and

- ``forward(x, p) -> (y, log dy/dx)`` and ``inverse(y, p) -> (x, log dx/dy)``, elementwise over
  any shape, ``p`` of shape ``[*x.shape, params_per_dim]``;
- ``from_spec(spec)``: the module of a transformer spec (what :func:`build_transformer` calls);
- ``zero_logdet``: True when the log-det is identically 0 (the structure skips summing it);
- optionally ``forward_parts(x, *blocks)`` / ``inverse_parts(y, *blocks)``: the same maps with the
  ``params_per_dim`` parameter blocks as separate tensors of ``x``'s shape (the log-det None when zero):
  a coupling then slices its net's output instead of reshaping it (:class:`Affine`, :class:`Additive`).

:class:`Affine` and :class:`Additive` are here; the splines (:class:`RQSpline`,
:class:`CubicSpline`) live in :mod:`flowdsl.runtime.splines` and the transformers with a
numerical inverse (:class:`DSF`, :class:`UMNN`, :class:`SOS`) in :mod:`flowdsl.runtime.monotone`.
Coupling (:mod:`flowdsl.runtime.coupling`) and autoregressive flows
(:mod:`flowdsl.runtime.autoregressive_flows`) take any of them as a value.

Example:
    >>> import torch
    >>> from flowdsl.layers import transformers as specs
    >>> t = build_transformer(specs.AffineSpec(clamp=2.0))
    >>> p = torch.tensor([[0.5, 100.0]])
    >>> y, ld = t(torch.tensor([1.0]), p)
    >>> round(ld.item(), 4), round(t.inverse(y, p)[0].item(), 4)
    (2.0, 1.0)
    >>> type(build_transformer(specs.CubicSplineSpec(bins=3))).__name__
    'CubicSpline'
"""

from __future__ import annotations

import torch
from torch import nn

from flowdsl.runtime.monotone import DSF, SOS, UMNN
from flowdsl.runtime.nets import resolve
from flowdsl.runtime.splines import CubicSpline, RQSpline

__all__ = ["Affine", "Additive", "RQSpline", "CubicSpline", "DSF", "UMNN", "SOS", "build_transformer"]


class Affine(nn.Module):
    """``y = x exp(s) + t`` with ``s = clamp tanh(raw / clamp)``; parameters ``[t, raw]``."""

    zero_logdet = False

    def __init__(self, clamp: float = 3.0):
        super().__init__()
        self.clamp = float(clamp)
        self.params_per_dim = 2

    @classmethod
    def from_spec(cls, spec) -> Affine:
        return cls(spec.clamp)

    def log_scale(self, p):
        return self.clamp * torch.tanh(p[..., 1] / self.clamp)

    def forward(self, x, p):
        s = self.log_scale(p)
        return x * torch.exp(s) + p[..., 0], s

    def inverse(self, y, p):
        s = self.log_scale(p)
        return (y - p[..., 0]) * torch.exp(-s), -s

    # the same maps with the parameters as separate blocks (a coupling slices them off its net's output)
    def forward_parts(self, x, t, raw):
        s = self.clamp * torch.tanh(raw / self.clamp)
        return torch.addcmul(t, x, torch.exp(s)), s

    def inverse_parts(self, y, t, raw):
        minus_s = torch.tanh(raw / self.clamp) * -self.clamp  # -s exactly, without a negation
        return (y - t) * torch.exp(minus_s), minus_s


class Additive(nn.Module):
    """``y = x + t``; parameters ``[t]``; volume preserving (the structures do not sum its zero log-det)."""

    zero_logdet = True

    def __init__(self):
        super().__init__()
        self.params_per_dim = 1

    @classmethod
    def from_spec(cls, spec) -> Additive:
        return cls()

    def forward(self, x, p):
        return x + p[..., 0], torch.zeros_like(x)

    def inverse(self, y, p):
        return y - p[..., 0], torch.zeros_like(y)

    def forward_parts(self, x, t):
        return x + t, None  # None: the log-det is zero

    def inverse_parts(self, y, t):
        return y - t, None


def build_transformer(spec) -> nn.Module:
    """The torch module of a transformer spec (its ``runtime`` class's ``from_spec``)."""
    module = resolve(type(spec).runtime).from_spec(spec)
    if module.params_per_dim != spec.params_per_dim:
        raise AssertionError(f"transformer {spec.name}: the module takes {module.params_per_dim} parameters "
                             f"per dimension, the spec declares {spec.params_per_dim}")
    return module
