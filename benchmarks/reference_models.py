"""Plain-PyTorch FVBN, NADE and MADE on 0/1 vectors: the yardsticks flowdsl's models are compared with.

Written from the papers, sharing no code with flowdsl, so that a defect in flowdsl is never taken
for a property of the model: each takes ``x`` float ``[B, D]`` of 0/1 pixels (natural order) and
returns ``log p(x)`` in nats ``[B]`` (Bernoulli outputs, logits). MADE's hidden degrees are drawn
uniformly from ``1 .. D-1`` (Germain et al. 2015; seeded), or cycle ``1, 2, ..`` with
``degrees="cycle"`` (which, with fewer than D-1 units, leaves the degrees above the width unused:
the last positions then cannot read the last pixels), its weights the ``nn.Linear`` default; NADE
(Larochelle & Murray 2011) computes ``a_i = c + W[:, <i] x_<i`` by a cumulative sum; FVBN (Frey 1998)
is a strictly lower triangular logistic regression.

Example:
    >>> import torch
    >>> x = torch.bernoulli(torch.full((4, 6), 0.3))
    >>> [tuple(m(x).shape) for m in (PlainFVBN(6), PlainNADE(6, 8), PlainMADE(6, [8]))]
    [(4,), (4,), (4,)]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PlainFVBN", "PlainNADE", "PlainMADE", "bernoulli_log_prob"]


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


class PlainFVBN(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, d)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mask", torch.tril(torch.ones(d, d), -1))

    def forward(self, x):
        return bernoulli_log_prob(F.linear(x, self.linear.weight * self.mask, self.linear.bias), x)


class PlainNADE(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(d, hidden) / d ** 0.5)
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(d, hidden) / hidden ** 0.5)
        self.b = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        u = x[:, :, None] * self.W  # [B, D, H]
        a = self.c + torch.cumsum(u, 1) - u  # exclusive: positions before i
        return bernoulli_log_prob((torch.sigmoid(a) * self.V).sum(-1) + self.b, x)


class PlainMADE(nn.Module):
    """``masks=K > 1``: connectivity-agnostic training, the hidden degrees redrawn K times (seeded); in
    training each call uses the next draw in turn, in evaluation ``log p`` is the log of the K draws'
    average probability (Germain et al. 2015)."""

    def __init__(self, d: int, hidden: list[int], degrees: str = "random", seed: int = 0, masks: int = 1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        top = max(d - 1, 1)
        draw = (lambda h: torch.randint(1, top + 1, (h,), generator=gen)) if degrees == "random" else \
            (lambda h: torch.arange(h) % top + 1)
        sizes = [d, *hidden, d]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.masks, self.turn = masks, 0
        for k in range(masks):
            degrees_ = [torch.arange(1, d + 1)]
            for h in hidden:  # each layer's degrees at least the previous layer's lowest (no unit reads nothing)
                degrees_.append(torch.maximum(draw(h), degrees_[-1].min().expand(h)))
            layer_masks = [(degrees_[i + 1][:, None] >= degrees_[i][None, :]) for i in range(len(hidden))]
            layer_masks.append(torch.arange(1, d + 1)[:, None] > degrees_[-1][None, :])
            for i, m in enumerate(layer_masks):
                self.register_buffer(f"mask{i}" if k == 0 else f"mask{i}_{k}", m.float())

    def _mask(self, i: int, k: int) -> torch.Tensor:
        return getattr(self, f"mask{i}" if k == 0 else f"mask{i}_{k}")

    def hidden(self, x, k: int = 0):
        """The hidden pre-activations of each layer (for dead-unit counts)."""
        out, h = [], x
        for i, layer in enumerate(self.layers[:-1]):
            pre = F.linear(h, layer.weight * self._mask(i, k), layer.bias)
            out.append(pre)
            h = F.relu(pre)
        return out

    def _log_prob(self, x, k: int):
        h = x
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight * self._mask(i, k), layer.bias)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return bernoulli_log_prob(h, x)

    def forward(self, x):
        if self.masks == 1:
            return self._log_prob(x, 0)
        if self.training:
            self.turn = (self.turn + 1) % self.masks
            return self._log_prob(x, self.turn)
        every = torch.stack([self._log_prob(x, k) for k in range(self.masks)])
        return torch.logsumexp(every, 0) - torch.log(torch.tensor(float(self.masks)))
