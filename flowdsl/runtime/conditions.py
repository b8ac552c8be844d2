"""The condition at run time: a caller's context checked, encoded once per call, handed to the layers.

:class:`ContextEncoder` turns what a caller passes (``context`` of ``log_prob``, ``sample``, ...) into
the encoded condition the layers read, ``[B, *encoded.shape]``
(:attr:`flowdsl.language.conditions.ConditionInfo.encoded`):

- a label ``[B]`` (or one label for the whole batch) -> one-hot ``[B, K]``;
- a real condition ``[B, *shape]`` (or ``[*shape]``, broadcast to the batch) as the model's dtype;
  an integer one (``levels V``) one-hot encoded; a sequence ``[B, L]`` / ``[B, L, C]`` is held
  channels first, ``[B, C, L]``;
- then the ``embed`` net, if one is declared: it is a submodule, so it trains with the model.

:func:`context_for` gives each layer what it reads: nothing (it does not read the condition, or
says ``reads=false``), the encoded condition flattened to ``[B, F]`` (the default), or the map
itself for a layer whose module sets ``context_layout = "map"``.

Example:
    >>> import torch
    >>> from flowdsl.language.conditions import ConditionInfo
    >>> from flowdsl.errors import Pos
    >>> enc = ContextEncoder(ConditionInfo("c", "sequence", (5, 2), 3, Pos()), "model 'm'")
    >>> enc(torch.zeros(4, 5, 2, dtype=torch.long), 4, torch.float32).shape
    torch.Size([4, 6, 5])
    >>> enc(torch.zeros(5, 2, dtype=torch.long), 7, torch.float32).shape  # one context for all 7
    torch.Size([7, 6, 5])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.input_checks import InputError, _any, as_tensor

__all__ = ["ContextEncoder", "context_for", "build_context_encoder", "context_mode"]


class ContextEncoder(nn.Module):
    """Checks and encodes a model's condition (see the module docstring); holds the ``embed`` net."""

    def __init__(self, condition, where: str):
        super().__init__()
        from flowdsl.runtime.nets import build_net

        self.name = condition.name
        self.type_name = condition.type_name
        self.shape = tuple(condition.shape)
        self.levels = condition.levels
        self.where = where
        self.declared = condition.describe()
        self.raw_layout = condition.raw.layout
        self.encoded_shape = tuple(condition.encoded.shape)
        self.embed: nn.Module | None = None
        if condition.embed is not None:
            net_in, net_out = condition.net_shapes
            self.embed = build_net(condition.embed, net_in, net_out, 0)
            for m in self.embed.modules():  # nets start their last layer at zero (a coupling starts as the
                if m is not self.embed and hasattr(m, "reset_parameters"):  # identity); an encoder must not
                    m.reset_parameters()
            self.net_in = tuple(net_in)

    @property
    def integer(self) -> bool:
        return self.levels is not None

    def _expected(self) -> str:
        dims = ", ".join(["B", *map(str, self.shape)])
        kind = "a LongTensor" if self.integer else "a float tensor"
        return f"{kind} [{dims}] (or [{', '.join(map(str, self.shape))}] for the whole batch)" if self.shape \
            else "a LongTensor [B] of labels (or one label for the whole batch)"

    def check(self, context, batch: int, device) -> torch.Tensor:
        """The context ``[batch, *shape]``, checked: InputError when it is missing, misshapen or out of range."""
        if context is None:
            raise InputError(f"is conditional on {self.name}: {self.declared}: pass context={self._expected()}",
                             self.where)
        context = as_tensor(context, self.where, device)
        if tuple(context.shape) == self.shape:  # one context for every row: checked once, then expanded
            return self.check(context[None], 1, device).expand(batch, *self.shape)
        if tuple(context.shape) != (batch, *self.shape):
            raise InputError(f"context for {self.name} ({self.declared}) must be {self._expected()} with B = "
                             f"{batch}, got shape {list(context.shape)}", self.where)
        if self.integer:
            top = self.levels - 1
            what = "labels" if self.type_name == "label" else "values"
            if context.dtype.is_floating_point or (context.numel() and _any((context < 0) | (context > top))):
                raise InputError(f"context {what} must be whole numbers in 0..{top} (an integer tensor)", self.where)
        elif context.dtype.is_floating_point and context.numel():
            bad = ~torch.isfinite(context)
            if _any(bad):
                raise InputError(f"the context for {self.name} has {int(bad.sum())} non-finite value(s) (NaN or "
                                 f"infinity)", self.where)
        return context

    def encode(self, context: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A checked context -> what the layers read, ``[B, *encoded_shape]``."""
        b = context.shape[0]
        if b == 0:  # an empty batch: an empty encoding (reshapes with -1 cannot infer a size from 0 elements)
            return torch.zeros((0, *self.encoded_shape), dtype=dtype, device=context.device)
        if self.integer:
            hot = F.one_hot(context.long(), self.levels).to(dtype)  # [B, *shape, V]
            if self.type_name == "label":
                h = hot
            elif self.raw_layout == "vector":
                h = hot.reshape(b, -1)
            elif self.raw_layout == "image":  # [B, C, H, W, V] -> channel c owns features c*V .. c*V+V-1
                c, hh, w = self.shape
                h = hot.permute(0, 1, 4, 2, 3).reshape(b, c * self.levels, hh, w)
            else:  # sequence [B, L(, C), V] -> [B, C*V, L]
                h = hot.reshape(b, self.shape[0], -1).transpose(1, 2)
        else:
            h = context.to(dtype)
            if self.raw_layout == "sequence":
                h = h.reshape(b, self.shape[0], -1).transpose(1, 2)
        if self.embed is not None:
            h = h.reshape(b, *self.net_in)
            h = self.embed(h)
        return h.reshape(b, *self.encoded_shape)

    def forward(self, context, batch: int, dtype: torch.dtype, device=None) -> torch.Tensor:
        return self.encode(self.check(context, batch, device), dtype)


def build_context_encoder(condition, where: str) -> ContextEncoder | None:
    """The encoder of a model's condition (None when it declares none)."""
    return None if condition is None else ContextEncoder(condition, where)


def context_for(module: nn.Module, encoded: torch.Tensor | None) -> torch.Tensor | None:
    """What ``module`` reads of the encoded condition: None, the map, or the flattened ``[B, F]``."""
    if encoded is None or not getattr(module, "reads_context", False):
        return None
    if getattr(module, "context_layout", "flat") == "map" or encoded.dim() == 2:
        return encoded
    return encoded.flatten(1)


def context_mode(module: nn.Module, condition: dict | None) -> str | None:
    """How a layer reads the condition by its ``condition`` facts: ``"vector"``, ``"map"`` (then ``module`` is
    marked ``context_layout = "map"``, what :func:`context_for` hands it), or None when it reads none."""
    mode = condition.get("mode") if condition else None
    if mode == "map":
        module.context_layout = "map"
    return mode
