"""The one MADE torch module: masked linear layers with K mask sets from :func:`flowdsl.layers.made_masks.mask_sets`.

Used as the conditioner net of MAF/IAF (``MADE(perm, hidden, params_per_dim, context, act)``: one
mask set, output ``p * D + i`` is parameter ``p`` of dimension ``i``, the last layer starts at zero so
that a fresh autoregressive layer is its transformer at zero parameters, the condition enters the
first layer unmasked) and, given ``mask_sets=`` instead of ``perm`` (default ``nn.Linear`` initialisation),
as the ``made(...)`` model layer of an autoregressive model (K mask sets, :attr:`MADE.active` selects one).
With a condition, a direct linear term of it (``direct``, no bias; zero at the start in a conditioner) is
added to every output: the first dimension's outputs read no hidden unit (none has a lower degree), so
without it they would not depend on the condition. It reads only the condition: no path between inputs.
A state dict written before it (no ``direct.weight``) loads with the term at zero, the map it computed.
The masks are computed once (numpy, cached) and stored as non-persistent buffers; each forward
multiplies the weights by them, so a masked weight never influences an output, whatever its value
(with autograd off and the weight unchanged, the product is reused: :mod:`flowdsl.runtime.optimize_cache`).
The parameters are ``layers.{i}.weight`` / ``layers.{i}.bias``; a state dict that names them ``linears.{i}`` (the
autoregressive MADE layer's checkpoints before the merge) loads too.

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
    >>> cond = MADE(perm=[0, 1, 2], hidden=(8,), params_per_dim=2, context=4)
    >>> _ = torch.nn.init.normal_(cond.direct.weight)
    >>> c = torch.randn(5, 4)
    >>> bool((cond.params(x, c)[:, 0] != cond.params(x, torch.zeros(5, 4))[:, 0]).any())  # dim 0 reads c
    True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers import made_masks as made_math
from flowdsl.runtime.nets import activation, direct_activation
from flowdsl.runtime.optimize import optimizations_enabled
from flowdsl.runtime.optimize_cache import DerivedCache

__all__ = ["MaskedLinear", "MADE", "build_made"]


class MaskedLinear(nn.Linear):
    """``y = x (W * M_k)^T + b`` with K fixed boolean masks ``M_k`` of shape ``[out, in]`` (``active`` picks k)."""

    def __init__(self, masks):
        stack = np.array(masks, dtype=bool)
        stack = stack[None] if stack.ndim == 2 else stack
        super().__init__(stack.shape[2], stack.shape[1])
        self.register_buffer("masks", torch.tensor(stack).to(self.weight.dtype), persistent=False)
        self.active = 0
        self.cache_weights = optimizations_enabled()  # reuse W * M in evaluation (the compiler's optimize flag)
        self._masked = DerivedCache()

    @property
    def mask(self) -> torch.Tensor:
        """The mask in use, ``[out, in]``."""
        return self.masks[self.active]

    def masked_weight(self) -> torch.Tensor:
        """``W * M`` of the active mask (kept while autograd is off and W unchanged)."""
        return self._masked.get((self.weight, self.masks), self._product, tag=self.active, enabled=self.cache_weights)

    def _product(self) -> torch.Tensor:
        mask = self.masks[self.active]  # a buffer: it follows the module's dtype (a cast only if it was set apart)
        return self.weight * (mask if mask.dtype == self.weight.dtype else mask.to(self.weight.dtype))

    def forward(self, x):
        return F.linear(x, self.masked_weight(), self.bias)


class MADE(nn.Module):
    """Masked MLP: ``D (+ K condition) -> hidden... -> k * D``, autoregressive in ``perm``.

    Arguments:
        perm: generation order, ``perm[j]`` the dimension generated j-th (None: ``mask_sets`` given).
        hidden: hidden widths.
        params_per_dim: ``k``, parameters per dimension.
        context: size of the one-hot condition (0: none).
        act: activation name (see :func:`flowdsl.runtime.nets.activation`).
        mask_sets: K tuples of ``[out, in]`` masks (:func:`flowdsl.layers.made_masks.mask_sets`), instead of perm.
    """

    def __init__(self, perm=None, hidden=(64, 64), params_per_dim: int = 1, context: int = 0, act: str = "relu",
                 *, mask_sets=None):
        super().__init__()
        if mask_sets is None:  # the conditioner net: one set, last layer at zero
            mask_sets = [made_math.made_masks(perm, hidden, params_per_dim, context)]
        depth = len(mask_sets[0])
        self.layers = nn.ModuleList(MaskedLinear([masks[i] for masks in mask_sets]) for i in range(depth))
        self.acts = nn.ModuleList(activation(act) for _ in range(depth - 1))
        #: runtime switch of :mod:`flowdsl.runtime.optimize`: the layers as direct ``F.linear`` and activation
        #: calls (the same values, one module call instead of one per layer; inner hooks then do not run)
        self.direct_calls = optimizations_enabled()
        self._act_fns = tuple(direct_activation(a) for a in self.acts)
        self.sets = len(mask_sets)
        self.features = len(perm) if perm is not None else 0
        self.params_per_dim = int(params_per_dim)
        #: the condition straight to every output (the first dimension's only way to read it)
        self.direct = nn.Linear(context, self.layers[-1].out_features, bias=False) if context else None
        if perm is not None:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
            if self.direct is not None:
                nn.init.zeros_(self.direct.weight)

    @property
    def active(self) -> int:
        """The mask set in use."""
        return self.layers[0].active

    @active.setter
    def active(self, k: int) -> None:
        for layer in self.layers:
            layer.active = int(k)

    def forward(self, x, context=None):
        """``[B, D] -> [B, k * D]`` (parameter-major)."""
        h = x if context is None else torch.cat([x, context.to(x.dtype)], dim=1)
        if self.direct_calls and None not in self._act_fns:
            for layer, fn in zip(self.layers, self._act_fns):
                h = fn(F.linear(h, layer.masked_weight(), layer.bias))
        else:
            for layer, act in zip(self.layers, self.acts):
                h = act(layer(h))
        out = self.layers[-1](h)
        if self.direct is not None and context is not None:
            out = out + self.direct(context.to(out.dtype))
        return out

    def params(self, x, context=None):
        """``[B, D] -> [B, D, k]``: the k parameters of each dimension."""
        out = self(x, context)
        return out.reshape(x.shape[0], self.params_per_dim, self.features).transpose(1, 2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "linears."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "layers." + key[len(old):]] = state_dict.pop(key)
        if self.direct is not None and prefix + "layers.0.weight" in state_dict:
            state_dict.setdefault(prefix + "direct.weight", torch.zeros_like(self.direct.weight))  # written before it
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def build_made(spec, in_shape, out_shape, context=0) -> MADE:
    """NETS runtime of ``made(...)`` used as a plain net: the net's own order (natural by default)."""
    n = in_shape[0]
    perm = spec.order.permutation(n) if spec.order is not None else made_math.permutation("natural", n)
    return MADE(perm, spec.hidden, out_shape[0] // n, context, spec.activation)
