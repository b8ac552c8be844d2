"""Output distributions of autoregressive models: categorical, bernoulli, discretized logistic mixture.

Each turns per-position parameters ``[..., P]`` into exact log-probabilities of the integer
levels ``0..L-1``. ``log_prob(params, x)`` evaluates observed values; ``log_probs(params)``
gives every level (``[..., L]``, each row normalised), which ``sample`` draws from.

Example:
    >>> import torch
    >>> dist = Categorical(levels=3)
    >>> dist.log_probs(torch.zeros(1, 3)).exp()
    tensor([[0.3333, 0.3333, 0.3333]])
    >>> mix = LogisticMixture(levels=4, components=2)
    >>> float(mix.log_probs(torch.randn(5, 6)).exp().sum(-1).sub(1).abs().max()) < 1e-6
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["OutputDistribution", "Categorical", "Bernoulli", "LogisticMixture", "build_output"]


class OutputDistribution(nn.Module):
    """Base: ``params_per_position`` parameters per position, ``levels`` outcomes."""

    params_per_position: int = 1

    def __init__(self, levels: int):
        super().__init__()
        self.levels = int(levels)

    def log_probs(self, params: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[...]``: log p(x) for integer x of shape ``params.shape[:-1]``."""
        return self.log_probs(params).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """One draw per row of ``params`` ``[..., P]``: a LongTensor ``[...]``."""
        logp = self.log_probs(params)
        flat = logp.reshape(-1, logp.shape[-1]).exp()
        return torch.multinomial(flat, 1).reshape(logp.shape[:-1])


class Categorical(OutputDistribution):
    """A softmax over the levels."""

    def __init__(self, levels: int):
        super().__init__(levels)
        self.params_per_position = self.levels

    def log_probs(self, params):
        return F.log_softmax(params, dim=-1)


class Bernoulli(OutputDistribution):
    """One logit, the log-odds of level 1 (binary data)."""

    params_per_position = 1

    def log_probs(self, params):
        return torch.cat([F.logsigmoid(-params), F.logsigmoid(params)], dim=-1)

    def log_prob(self, params, x):
        logit = params.squeeze(-1)
        return torch.where(x.bool(), F.logsigmoid(logit), F.logsigmoid(-logit))


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(d)) for d < 0, stably."""
    return torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))


class LogisticMixture(OutputDistribution):
    """A mixture of K logistics discretized to the levels (PixelCNN++): bins of width 2/(L-1) on [-1, 1],
    the first and last bins open-ended, so the L probabilities sum to one exactly.

    Parameters per position: K mixture logits, K means, K log-scales (clamped at -7).
    """

    def __init__(self, levels: int, components: int):
        super().__init__(levels)
        self.components = int(components)
        self.params_per_position = 3 * self.components

    def _log_bins(self, params, x):
        """log p(x) for integer x broadcastable against ``params[..., :1]``."""
        k = self.components
        logits, mean, log_scale = params[..., :k], params[..., k: 2 * k], params[..., 2 * k:].clamp_min(-7.0)
        half = 1.0 / (self.levels - 1)
        centre = x.to(params.dtype) * (2.0 * half) - 1.0
        inv = torch.exp(-log_scale)
        plus = (centre + half - mean) * inv
        minus = (centre - half - mean) * inv
        first = F.logsigmoid(plus)  # x = 0: P(v < centre + half)
        last = F.logsigmoid(-minus)  # x = L-1: P(v > centre - half)
        middle = F.logsigmoid(plus) + F.logsigmoid(-minus) + _log1mexp(minus - plus)
        lp = torch.where(x == 0, first, torch.where(x == self.levels - 1, last, middle))
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + lp, dim=-1)

    def log_prob(self, params, x):
        return self._log_bins(params, x.long().unsqueeze(-1))

    def log_probs(self, params):
        levels = torch.arange(self.levels, device=params.device)
        out = self._log_bins(params.unsqueeze(-2), levels.reshape((1,) * (params.dim() - 1) + (-1, 1)))
        return out


def build_output(spec, levels: int) -> OutputDistribution:
    """The runtime of an ``output`` spec (None: categorical)."""
    name = getattr(spec, "name", "categorical")
    if name == "categorical":
        return Categorical(levels)
    if name == "bernoulli":
        return Bernoulli(levels)
    if name == "logistic_mixture":
        return LogisticMixture(levels, spec.components)
    raise ValueError(f"output '{name}' has no runtime")
