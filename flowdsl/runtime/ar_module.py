"""The declared runtime protocol of autoregressive layers: :class:`ARModule` and the incremental-step types.

Every compiled layer of an autoregressive model is an :class:`ARModule`. What the model's
runtime needs to know about it is not probed from the module but declared by the layer's rules
(:class:`~flowdsl.layers.registry.CausalFacts`, in the IR) and handed to the module by the
compiler with :meth:`ARModule.declare`, which sets typed attributes:

- ``streams``: the module is called ``layer(h, context, extra) -> (h', extra')`` with a dict of
  further streams; ``passes_stream``: (a streams layer) the next layer receives its second stream;
- ``takes_indices``: the first layer reads the integer input, not its one-hot encoding;
- ``configurations``: K mask sets (a MADE); :meth:`ARModule.select` picks one;
- ``cacheable``: :meth:`ARModule.stepper` gives the layer's incremental form (:class:`Stepper`);
- ``no_likelihood``: why the model defines no log-prob (a sampler), or None.

A module whose attributes are read before :meth:`declare` raises ``AttributeError``: nothing is
guessed. :class:`Plan` and :class:`Stepper` are the step protocol the cached driver
(:mod:`flowdsl.runtime.ar_cache`) runs; :class:`Pointwise` is the stepper of a per-position layer.

Example:
    >>> import torch
    >>> from flowdsl.layers.registry import CausalFacts
    >>> class Double(ARModule):
    ...     def forward(self, h, context=None):
    ...         return 2 * h
    ...     def stepper(self, plan):
    ...         return Pointwise(self, plan)
    >>> m = Double().declare(CausalFacts(cacheable=True))
    >>> m.streams, m.cacheable, m.configurations
    (False, True, 1)
    >>> s = m.stepper(Plan(batch=2, grid=(3,), dtype=torch.float32, device=torch.device("cpu")))
    >>> s.step(torch.ones(2, 4), None, 0)[0].tolist()
    [[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flowdsl.layers.registry import CausalFacts

__all__ = ["ARModule", "Plan", "Stepper", "Pointwise", "gate"]


class ARModule(nn.Module):
    """Base of every layer module of an autoregressive model; its protocol attributes come from :meth:`declare`."""

    streams: bool
    passes_stream: bool
    takes_indices: bool
    configurations: int
    cacheable: bool
    no_likelihood: str | None

    def declare(self, facts: CausalFacts) -> ARModule:
        """Set the protocol attributes from the layer's declared facts; returns the module."""
        self.streams = bool(facts.streams)
        self.passes_stream = bool(facts.passes_stream)
        self.takes_indices = bool(facts.takes_indices)
        self.configurations = int(facts.configurations)
        self.cacheable = bool(facts.cacheable)
        self.no_likelihood = facts.no_likelihood
        return self

    def select(self, config: int) -> None:
        """Use configuration ``config`` (one of ``configurations``); a single-configuration layer has nothing to do."""

    def stepper(self, plan: Plan) -> Stepper:
        """The layer's incremental form (a layer declared ``cacheable`` overrides this)."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental form (it is not declared cacheable)")


@dataclass
class Plan:
    """What a stepper is built for: the batch, the grid, the model's condition and its place in the model."""

    batch: int
    grid: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    context: torch.Tensor | None = None  # what this layer reads of the encoded condition (conditions.context_for)
    first: bool = False  # reads the model's input
    after_stream: bool = False  # the previous layer passes a second stream

    def zeros(self, *shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)


class Stepper:
    """The incremental form of one layer (see :mod:`flowdsl.runtime.ar_cache` for the protocol)."""

    def step(self, h: torch.Tensor, v: Any, g: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def commit(self, h: torch.Tensor | None, v: Any, g: int) -> Any:
        """The input at g is final: store it if this layer keeps raw input; return the stream message on."""
        return None


def gate(t: torch.Tensor) -> torch.Tensor:
    """tanh(first half) * sigmoid(second half) along dimension 1."""
    f, g = t.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class Pointwise(Stepper):
    """A per-position layer: its forward applied to the single new position."""

    def __init__(self, module, plan: Plan):
        self.module, self.ones = module, (1,) * len(plan.grid)

    def step(self, h, v, g):
        return self.module(h.reshape(h.shape + self.ones)).reshape(h.shape[0], -1), None
