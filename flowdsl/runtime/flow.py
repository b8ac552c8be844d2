"""The compiled flow: layers in order, splits factored out, log-dets summed, a base density.

``forward(x) -> (z, logdet)`` with z of x's shape: the parts factored out by ``split``
are re-assembled with the final latent by undoing the squeezes (RealNVP's layout), so
``inverse(z)`` reads any z of the input's shape.

Example:
    >>> import torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n coupling affine(mask=half)\\n}\\n")
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.structural import Split, Squeeze

__all__ = ["CompiledFlow"]


class CompiledFlow(nn.Module):
    """A normalizing flow compiled from a spec (see the public API in the README)."""

    def __init__(self, name: str, layers: list[nn.Module], base: nn.Module, input_shape, levels=None,
                 classes: int = 0, spec=None):
        super().__init__()
        self.name = name
        self.layers = nn.ModuleList(layers)
        self.base = base
        self.input_shape = tuple(input_shape)
        self.levels = levels
        self.classes = classes
        self.context_shape = () if classes else None
        self.spec = spec or {}
        # follows .to(): the device and dtype of samples when the flow has no parameters
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    # -- helpers
    def _context(self, context, batch: int, device, dtype):
        if not self.classes:
            if context is not None:
                raise ValueError(f"flow '{self.name}' declares no condition, but a context was given")
            return None
        if context is None:
            raise ValueError(f"flow '{self.name}' is conditional: pass the labels as context (a LongTensor [B])")
        context = torch.as_tensor(context, device=device)
        if context.dim() == 0:
            context = context.expand(batch)
        if context.shape != (batch,):
            raise ValueError(f"context must be labels of shape [{batch}], got {list(context.shape)}")
        if context.dtype.is_floating_point or (context < 0).any() or (context >= self.classes).any():
            raise ValueError(f"context labels must be whole numbers in 0..{self.classes - 1}")
        return F.one_hot(context.long(), self.classes).to(dtype)

    def _check_input(self, x):
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != len(self.input_shape) + 1:
            raise ValueError(f"flow '{self.name}' takes input of shape [B, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(x.shape)}")

    def _assemble(self, x, factors):
        for layer in reversed(self.layers):
            if isinstance(layer, Split):
                x = layer.merge(x, factors.pop())
            elif isinstance(layer, Squeeze):
                x = layer.unsqueeze(x)
        return x

    def _disassemble(self, z):
        factors = []
        for layer in self.layers:
            if isinstance(layer, Split):
                z, f = layer.split(z)
                factors.append(f)
            elif isinstance(layer, Squeeze):
                z = layer.squeeze(z)
        return z, factors

    # -- the API
    def forward(self, x, context=None):
        """x (continuous, [B, *input_shape]) -> (z of the same shape, log|det dz/dx| [B])."""
        self._check_input(x)
        ctx = self._context(context, x.shape[0], x.device, x.dtype)
        logdet = x.new_zeros(x.shape[0])
        factors = []
        for layer in self.layers:
            if isinstance(layer, Split):
                x, f = layer.split(x)
                factors.append(f)
            else:
                x, ld = layer(x, ctx)
                logdet = logdet + ld
        return self._assemble(x, factors), logdet

    def inverse(self, z, context=None):
        """z ([B, *input_shape]) -> x, continuous (in [0, levels) for discrete inputs)."""
        return self.inverse_and_logdet(z, context)[0]

    def inverse_and_logdet(self, z, context=None):
        """z -> (x, log|det dx/dz|)."""
        self._check_input(z)
        ctx = self._context(context, z.shape[0], z.device, z.dtype)
        x, factors = self._disassemble(z)
        logdet = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            if isinstance(layer, Split):
                x = layer.merge(x, factors.pop())
            else:
                x, ld = layer.inverse(x, ctx)
                logdet = logdet + ld
        return x, logdet

    def log_prob(self, x, context=None):
        """log p(x) in nats, [B]; for discrete inputs, of the integer data (uniform dequantization bound)."""
        if self.levels is not None:
            x = x.to(self._anchor.dtype if not x.dtype.is_floating_point else x.dtype)
            x = x + torch.rand_like(x)
        z, logdet = self(x, context)
        return self.base.log_prob(z) + logdet

    def bits_per_dim(self, x, context=None):
        """Negative log-likelihood in bits per dimension, [B]."""
        return -self.log_prob(x, context) / (math.prod(self.input_shape) * math.log(2))

    @torch.no_grad()
    def sample(self, n: int, context=None):
        """n samples; integers in 0..levels-1 for discrete inputs."""
        ref = next(self.parameters(), self._anchor)
        device, dtype = ref.device, ref.dtype
        z = self.base.sample(n, device=device, dtype=dtype)
        x = self.inverse(z, context)
        if self.levels is not None:
            return x.floor().clamp(0, self.levels - 1).long()
        return x
