"""The MADE conditioner in torch: masked linear layers whose masks come from :mod:`flowdsl.layers.made_masks`.

The masks are computed once (numpy, cached) and stored as buffers; each forward multiplies
the weights by them, so a masked weight never influences an output, whatever its value.
Output ``p * D + i`` is parameter ``p`` of dimension ``i``; :meth:`MADE.params` reshapes
to ``[B, D, k]``. The last layer starts at zero (a fresh autoregressive layer is the
transformer at zero parameters). The condition, if any, enters the first layer unmasked.

Example:
    >>> import torch
    >>> net = MADE(perm=[0, 1, 2], hidden=(8,), params_per_dim=2)
    >>> _ = torch.nn.init.normal_(net.layers[-1].weight)
    >>> x = torch.randn(5, 3, requires_grad=True)
    >>> net.params(x).shape
    torch.Size([5, 3, 2])
    >>> g, = torch.autograd.grad(net.params(x)[:, 1].sum(), x)   # dim 1 reads only dim 0
    >>> (g[:, 1:] == 0).all().item(), (g[:, 0] != 0).any().item()
    (True, True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers import made_masks as made_math
from flowdsl.runtime.nets import activation

__all__ = ["MaskedLinear", "MADE", "build_made"]


class MaskedLinear(nn.Linear):
    """``y = x (W * M)^T + b`` with a fixed boolean mask ``M`` of shape ``[out, in]``."""

    def __init__(self, mask):
        mask = torch.tensor(np.array(mask, dtype=bool))
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked MLP: ``D (+ K condition) -> hidden... -> k * D``, autoregressive in ``perm``.

    Arguments:
        perm: generation order, ``perm[j]`` the dimension generated j-th.
        hidden: hidden widths.
        params_per_dim: ``k``, parameters per dimension.
        context: size of the one-hot condition (0: none).
        act: activation name (see :func:`flowdsl.runtime.nets.activation`).
    """

    def __init__(self, perm, hidden=(64, 64), params_per_dim: int = 1, context: int = 0, act: str = "relu"):
        super().__init__()
        self.features = len(perm)
        self.params_per_dim = int(params_per_dim)
        masks = made_math.made_masks(perm, hidden, params_per_dim, context)
        self.layers = nn.ModuleList(MaskedLinear(m) for m in masks)
        self.acts = nn.ModuleList(activation(act) for _ in masks[:-1])
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x, context=None):
        """``[B, D] -> [B, k * D]`` (parameter-major)."""
        h = x if context is None else torch.cat([x, context.to(x.dtype)], dim=1)
        for layer, act in zip(self.layers, self.acts):
            h = act(layer(h))
        return self.layers[-1](h)

    def params(self, x, context=None):
        """``[B, D] -> [B, D, k]``: the k parameters of each dimension."""
        out = self(x, context)
        return out.reshape(x.shape[0], self.params_per_dim, self.features).transpose(1, 2)


def build_made(spec, in_shape, out_shape, context=0) -> MADE:
    """NETS runtime of ``made(...)`` used as a plain net: the net's own order (natural by default)."""
    n = in_shape[0]
    perm = spec.order.permutation(n) if spec.order is not None else made_math.permutation("natural", n)
    return MADE(perm, spec.hidden, out_shape[0] // n, context, spec.activation)
