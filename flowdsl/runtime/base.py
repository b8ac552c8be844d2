"""The runtime contract every compiled layer honours, and what the compiler hands a builder.

A flow layer is a :class:`Bijection`::

    forward(x, context=None) -> (y, logdet)    # logdet: log|det dy/dx|, shape [B]
    inverse(y, context=None) -> (x, logdet)    # logdet: log|det dx/dy| = -forward logdet

``x`` has shape ``[B, *in_shape]``; ``context`` is None, or the encoded condition
(:mod:`flowdsl.runtime.conditions`: one-hot labels, the real or one-hot condition, the ``embed``
net's output), flattened to ``[B, F]`` with ``F = node.context_features``; a module that sets
``context_layout = "map"`` receives the map ``[B, *node.context.shape]`` instead. The compiled
model encodes it once per call and passes None to a layer that does not read it. A builder named by a layer's
``runtime`` is called as ``build(layer_spec, node)`` with a :class:`BuildNode`.

Example:
    >>> import torch
    >>> class Shift(Bijection):
    ...     def forward(self, x, context=None):
    ...         return x + 1, x.new_zeros(x.shape[0])
    ...     def inverse(self, y, context=None):
    ...         return y - 1, y.new_zeros(y.shape[0])
    >>> y, ld = Shift()(torch.zeros(2, 3))
    >>> y.sum().item(), ld.shape
    (6.0, torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Bijection", "BuildNode", "sum_except_batch", "ContextLinear", "zero_fill_missing"]


@dataclass(frozen=True)
class BuildNode:
    """What a builder knows about its IR node (plain data: shapes, facts, the model around it)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    dependency: Any = None
    context_features: int = 0  # numbers of the encoded condition the layer reads flattened (0: none)
    #: the encoded condition (flowdsl.layers.facts.ContextShape) the layer reads, None when it reads none
    context: Any = None
    levels: int | None = None
    model_kind: str = "flow"
    spec_dir: str = "."
    position: int = 0  # the layer's 0-based position in its model (as LayerNode.position)
    causal: Any = None  # flowdsl.layers.registry.CausalFacts of an autoregressive-model layer, else None


class Bijection(nn.Module):
    """Base class of flow layers: ``forward`` and ``inverse`` both return ``(value, logdet[B])``."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None):  # pragma: no cover - abstract
        raise NotImplementedError


def sum_except_batch(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first: ``[B, ...] -> [B]``."""
    return t.sum(dim=1) if t.dim() == 2 else t.reshape(t.shape[0], -1).sum(dim=1)


def zero_fill_missing(module: nn.Module, state_dict, prefix: str) -> None:
    """Give ``module``'s own parameters that ``state_dict`` lacks the value zero (in place).

    A layer that reads the condition through a term that is zero in an unconditional map (a hypernetwork's
    shift, a context projection) loads a checkpoint written before it read the condition: the missing term
    is zero, which is the map the old model computed."""
    for name, param in module.named_parameters(recurse=False):
        state_dict.setdefault(prefix + name, torch.zeros_like(param))


class ContextLinear(nn.Linear):
    """``nn.Linear`` reading the condition: a checkpoint written before the layer read it loads with zeros here
    (:func:`zero_fill_missing`), the unconditional map it computed.

        >>> layer = ContextLinear(3, 2)
        >>> _ = layer.load_state_dict({})  # an old checkpoint: no weights for the context term
        >>> float(layer.weight.detach().abs().sum() + layer.bias.detach().abs().sum())
        0.0
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        zero_fill_missing(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
