"""The compiled flow: layers in order, splits factored out, log-dets summed, a base density.

``forward(x) -> (z, logdet)`` with z of x's shape: the parts factored out by ``split``
are re-assembled with the final latent by undoing the squeezes (RealNVP's layout), so
``inverse(z)`` reads any z of the input's shape.

Inputs are validated (:mod:`flowdsl.runtime.input_checks`): the shape; real values, cast to the
flow's dtype; for ``log_prob`` of a discrete input, whole numbers in ``0..levels-1``; finite
values; a bad one raises :class:`~flowdsl.runtime.input_checks.InputError`. An empty batch gives
an empty result.

Example:
    >>> import torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n coupling affine(mask=half)\\n}\\n")
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
    >>> flow.sample(0).shape
    torch.Size([0, 2])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flowdsl.runtime.conditions import ContextEncoder, context_for
from flowdsl.runtime.input_checks import (
    InputError,
    as_tensor,
    check_shape,
    discrete_values,
    finite_values,
    sample_count,
    to_dtype,
)
from flowdsl.runtime.optimize import discarding_logdets
from flowdsl.runtime.optimize_coupling_chains import CouplingChain, plan_chains
from flowdsl.runtime.structural import Split, Squeeze

__all__ = ["CompiledFlow"]


class CompiledFlow(nn.Module):
    """A normalizing flow compiled from a spec (see the public API in the README)."""

    def __init__(self, name: str, layers: list[nn.Module], base: nn.Module, input_shape, levels=None,
                 condition: ContextEncoder | None = None, spec=None, optimized: bool = False):
        super().__init__()
        self.name = name
        # the compiler's optimisations are on: zero log-dets (the IR's proof, ``layer.logdet_zero``) are
        # not added, and inverse/sample tell the layers their log-dets are discarded
        self.optimized = optimized
        #: per layer, whether its log-det is added: decided once here, not per call
        self._adds_logdet = tuple(not (optimized and getattr(layer, "logdet_zero", False)) for layer in layers)
        #: the layers that run, in order (index, adds its log-det): a permutation the optimisation pass
        #: made the identity (folded into its neighbour) is not called at all; its module stays for its key
        self._runs = tuple((i, adds) for i, (layer, adds) in enumerate(zip(layers, self._adds_logdet))
                           if not (optimized and getattr(layer, "identity", False) is True))
        self.layers = nn.ModuleList(layers)
        #: what ``_forward`` runs: the entries of ``_runs``, with runs of couplings and permutations that can
        #: carry their state as two blocks replaced by one CouplingChain each (optimised flows only)
        self._plan = plan_chains(layers, self._runs) if optimized else self._runs
        #: the chains' index maps (non-persistent buffers: no state-dict keys), registered to follow .to()
        self._chains = nn.ModuleList([step for step in self._plan if isinstance(step, CouplingChain)])
        self.base = base
        self.input_shape = tuple(input_shape)
        self.levels = levels
        #: checks and encodes the context (None: unconditional); holds the condition's embed net
        self.condition = condition
        self.classes = condition.levels if condition is not None and condition.type_name == "label" else 0
        #: the condition's per-example shape (``()`` for a label), None when the flow is unconditional
        self.context_shape = condition.shape if condition is not None else None
        self._base_reads = bool(getattr(base, "conditional", False))
        self.spec = spec or {}
        # follows .to(): the device and dtype of samples when the flow has no parameters
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    # -- helpers
    @property
    def _where(self) -> str:
        return f"flow '{self.name}'"

    def _dtype(self) -> torch.dtype:
        return next(self.parameters(), self._anchor).dtype

    def _context(self, context, batch: int, device, dtype):
        """The encoded condition ``[B, *encoded]`` (None for an unconditional flow; InputError when wrong)."""
        if self.condition is None:
            if context is not None:
                raise InputError("declares no condition, but a context was given", self._where)
            return None
        return self.condition(context, batch, dtype, device)

    def _check_input(self, x) -> torch.Tensor:
        """``x`` as a finite real tensor ``[B, *input_shape]`` of the flow's dtype on its device."""
        x = as_tensor(x, self._where, self._anchor.device)
        check_shape(x, self.input_shape, self._where)
        return finite_values(to_dtype(x, self._dtype()), self._where)

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
        x = self._check_input(x)
        return self._forward(x, self._context(context, x.shape[0], x.device, x.dtype))

    def _forward(self, x, ctx):
        if not len(x):  # an empty batch: nothing to transform (and nothing to initialise from)
            return x.clone(), x.new_zeros(0)
        logdet = None  # the first log-det added becomes the sum (one addition fewer than starting at zeros)
        factors = []
        layers = self.layers
        for step in self._plan:
            if type(step) is CouplingChain:
                x, ld = step.forward(x, ctx)
                if ld is not None:
                    logdet = ld if logdet is None else logdet + ld
                continue
            i, adds = step
            layer = layers[i]
            if isinstance(layer, Split):
                x, f = layer.split(x)
                factors.append(f)
            else:
                x, ld = layer(x, context_for(layer, ctx))
                if adds:
                    logdet = ld if logdet is None else logdet + ld
        return self._assemble(x, factors), (x.new_zeros(x.shape[0]) if logdet is None else logdet)

    def inverse(self, z, context=None):
        """z ([B, *input_shape]) -> x, continuous (in [0, levels) for discrete inputs)."""
        with discarding_logdets(self.optimized):  # the log-det is dropped: layers may skip computing it
            return self.inverse_and_logdet(z, context)[0]

    def inverse_and_logdet(self, z, context=None):
        """z -> (x, log|det dx/dz|)."""
        z = self._check_input(z)
        return self._inverse(z, self._context(context, z.shape[0], z.device, z.dtype))

    def _inverse(self, z, ctx):
        if not len(z):
            return z.clone(), z.new_zeros(0)
        logdet = None
        x, factors = self._disassemble(z)
        layers = self.layers
        for step in reversed(self._plan):
            if type(step) is CouplingChain:
                x, ld = step.inverse(x, ctx)
                if ld is not None:
                    logdet = ld if logdet is None else logdet + ld
                continue
            i, adds = step
            layer = layers[i]
            if isinstance(layer, Split):
                x = layer.merge(x, factors.pop())
            else:
                x, ld = layer.inverse(x, context_for(layer, ctx))
                if adds:
                    logdet = ld if logdet is None else logdet + ld
        return x, (x.new_zeros(x.shape[0]) if logdet is None else logdet)

    @torch.no_grad()
    def layer_shapes(self, x, context=None) -> list[tuple[int, ...]]:
        """The per-example output shape of every layer but the splits, running the layers one at a time (no
        chain, no skipped permutation): what ``flowdsl compile`` compares with the IR's inferred shapes."""
        x = self._check_input(x)
        ctx = self._context(context, x.shape[0], x.device, x.dtype)
        shapes = []
        for layer in self.layers:
            if isinstance(layer, Split):
                x = layer.split(x)[0]
            else:
                x = layer(x, context_for(layer, ctx))[0]
                shapes.append(tuple(x.shape[1:]))
        return shapes

    def _base_context(self, ctx):
        return None if ctx is None or not self._base_reads else ctx.flatten(1)

    def log_prob(self, x, context=None):
        """log p(x) in nats, [B]; for discrete inputs, of the integer data (uniform dequantization bound)."""
        x = as_tensor(x, self._where, self._anchor.device)
        check_shape(x, self.input_shape, self._where)
        if self.levels is not None:
            x = to_dtype(discrete_values(x, self.levels, self._where), self._dtype())
            x = x + torch.rand_like(x)
        else:
            x = finite_values(to_dtype(x, self._dtype()), self._where)
        ctx = self._context(context, x.shape[0], x.device, x.dtype)
        if not len(x):
            return x.new_zeros(0)
        z, logdet = self._forward(x, ctx)
        if self._base_reads:
            return self.base.log_prob(z, self._base_context(ctx)) + logdet
        return self.base.log_prob(z) + logdet

    def bits_per_dim(self, x, context=None):
        """Negative log-likelihood in bits per dimension, [B]."""
        return -self.log_prob(x, context) / (math.prod(self.input_shape) * math.log(2))

    @torch.no_grad()
    def sample(self, n: int, context=None):
        """n samples; integers in 0..levels-1 for discrete inputs.

        ``context``: ``[n, *context_shape]`` gives one sample per row; ``[*context_shape]`` (one label, one
        vector, ...) is used for all n, in one batched call."""
        n = sample_count(n, self._where)
        ref = next(self.parameters(), self._anchor)
        device, dtype = ref.device, ref.dtype
        ctx = self._context(context, n, device, dtype)
        if self._base_reads:
            z = self.base.sample(n, device=device, dtype=dtype, context=self._base_context(ctx))
        else:
            z = self.base.sample(n, device=device, dtype=dtype)
        with discarding_logdets(self.optimized):
            x = self._inverse(z, ctx)[0]
        if self.levels is not None:
            return x.floor().clamp(0, self.levels - 1).long()
        return x
