"""Polyak/EMA parameter averaging: ``avg = decay * avg + (1 - decay) * param`` after every step.

The average starts at the weights training starts from (after data-dependent initialisation).
Buffers (batch-norm statistics, actnorm's flag) are not averaged: the averaged model takes the
trained model's. :meth:`ParameterAverage.averaged_state` is what validation and test score and
what a checkpoint's ``state_dict`` holds when averaging is on (the raw weights go beside it,
as ``raw_state_dict``, for resuming).

Example:
    >>> import torch
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> avg = ParameterAverage(net, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(2.0)
    >>> avg.update(net)
    >>> bool(torch.allclose(avg.averaged_state(net)["weight"], net.weight - 1.0))
    True
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["ParameterAverage"]


class ParameterAverage:
    """An exponential moving average of a module's floating-point parameters."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)

    def averaged_state(self, model: torch.nn.Module) -> dict:
        """The model's state dict with the averaged parameters in place of the trained ones."""
        state = model.state_dict()
        return {k: (self.shadow[k].clone() if k in self.shadow else v) for k, v in state.items()}

    def load_from(self, state: dict) -> None:
        """Take the averaged parameters from a state dict saved by :meth:`averaged_state`."""
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Within the block, ``model`` holds the averaged parameters; the trained ones come back after."""
        saved = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.shadow:
                    p.copy_(self.shadow[name])
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in saved:
                        p.copy_(saved[name])
