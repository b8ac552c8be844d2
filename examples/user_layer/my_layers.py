"""Two user-defined flow layers, loaded with ``--plugin examples/user_layer/my_layers.py``.

- ``sinh_arcsinh(tail=1.0)``: an elementwise bijection with learned skew and tail weight
  (Jones & Pewsey 2009): y = sinh(b * asinh(x) - a), b = tail * exp(log_b).
- ``coupling shift_scale(mask=half, hidden=32)``: an affine coupling whose conditioner is a small
  MLP written here: y_t = x_t * exp(tanh(s(x_k))) + t(x_k).

Each is one decorated class: the decorator declares the contract (dependency structure, log-det)
that ``flowdsl check`` applies and ``flowdsl test`` verifies; the arguments are the typed keyword
parameters of ``__init__``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flowdsl.layers.masks import HalfMask, Mask
from flowdsl.plugins import layer
from flowdsl.runtime.base import Bijection


@layer("sinh_arcsinh", dependency="elementwise")
class SinhArcsinh(Bijection):
    """sinh-arcsinh transform per dimension: learned skew and tail weight."""

    def __init__(self, shape, tail: float = 1.0):
        super().__init__()
        if tail <= 0:
            raise ValueError(f"sinh_arcsinh needs tail > 0, got {tail}")
        self.skew = nn.Parameter(torch.zeros(math.prod(shape)))
        self.log_tail = nn.Parameter(torch.full((math.prod(shape),), math.log(tail)))

    def forward(self, x, context=None):
        flat = x.reshape(x.shape[0], -1)
        b = self.log_tail.exp()
        u = b * torch.asinh(flat) - self.skew
        y = torch.sinh(u)
        logdet = (torch.log(b) + torch.log(torch.cosh(u)) - 0.5 * torch.log1p(flat**2)).sum(dim=1)
        return y.reshape(x.shape), logdet

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        b = self.log_tail.exp()
        u = torch.asinh(flat)
        x = torch.sinh((u + self.skew) / b)
        logdet = (-torch.log(b) - torch.log(torch.cosh(u)) + 0.5 * torch.log1p(x**2)).sum(dim=1)
        return x.reshape(y.shape), logdet


@layer("coupling shift_scale", dependency="coupling")
class ShiftScaleCoupling(Bijection):
    """Affine coupling on vectors with a small tanh-MLP conditioner (scales bounded by e^1)."""

    def __init__(self, shape, context_features, mask: Mask = HalfMask(), hidden: int = 32):
        super().__init__()
        if len(shape) != 1:
            raise ValueError("coupling shift_scale takes vectors")
        kept = torch.as_tensor(mask.kept(tuple(shape)))
        self.register_buffer("kept", torch.nonzero(kept).flatten())
        self.register_buffer("moved", torch.nonzero(~kept).flatten())
        self.net = nn.Sequential(nn.Linear(len(self.kept) + context_features, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * len(self.moved)))
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, x, context):
        h = x[:, self.kept] if context is None else torch.cat([x[:, self.kept], context], dim=1)
        s, t = self.net(h).chunk(2, dim=1)
        return torch.tanh(s), t

    def forward(self, x, context=None):
        s, t = self._params(x, context)
        return x.index_copy(1, self.moved, x[:, self.moved] * s.exp() + t), s.sum(dim=1)

    def inverse(self, y, context=None):
        s, t = self._params(y, context)
        return y.index_copy(1, self.moved, (y[:, self.moved] - t) * (-s).exp()), -s.sum(dim=1)
