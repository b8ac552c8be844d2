"""Polyak/EMA parameter averaging: ``avg = d_t * avg + (1 - d_t) * param`` after step ``t`` (1, 2, ...).

``d_t = min(decay, (1 + t) / (10 + t))``, the warm-up of TensorFlow's ExponentialMovingAverage, so
that the average forgets the initial weights within a few hundred steps even with ``decay =
0.999`` (``d_t`` depends only on ``t``: a resumed run averages alike). The average starts at the
weights training starts from (after data-dependent initialisation).
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
    >>> avg.update(net, step=100)  # d_100 = min(0.5, 101 / 110) = 0.5
    >>> bool(torch.allclose(avg.averaged_state(net)["weight"], net.weight - 1.0))
    True
    >>> ParameterAverage.decay_at(0.999, 1), ParameterAverage.decay_at(0.999, 10_000)
    (0.18181818181818182, 0.999)
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

    @staticmethod
    def decay_at(decay: float, step: int) -> float:
        """The decay used after optimiser step ``step`` (1-based)."""
        return min(decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Average in the parameters after optimiser step ``step`` (1-based)."""
        weight = 1.0 - self.decay_at(self.decay, step)
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), weight)

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
