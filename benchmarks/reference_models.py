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
    def __init__(self, d: int, hidden: list[int], degrees: str = "random", seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        top = max(d - 1, 1)
        draw = (lambda h: torch.randint(1, top + 1, (h,), generator=gen)) if degrees == "random" else \
            (lambda h: torch.arange(h) % top + 1)
        degrees_ = [torch.arange(1, d + 1)]
        for h in hidden:  # each layer's degrees at least the previous layer's lowest (no unit reads nothing)
            degrees_.append(torch.maximum(draw(h), degrees_[-1].min().expand(h)))
        degrees = degrees_
        sizes = [d, *hidden, d]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        masks = [(degrees[i + 1][:, None] >= degrees[i][None, :]) for i in range(len(hidden))]
        masks.append(torch.arange(1, d + 1)[:, None] > degrees[-1][None, :])
        for i, m in enumerate(masks):
            self.register_buffer(f"mask{i}", m.float())

    def hidden(self, x):
        """The hidden pre-activations of each layer (for dead-unit counts)."""
        out, h = [], x
        for i, layer in enumerate(self.layers[:-1]):
            pre = F.linear(h, layer.weight * getattr(self, f"mask{i}"), layer.bias)
            out.append(pre)
            h = F.relu(pre)
        return out

    def forward(self, x):
        h = x
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight * getattr(self, f"mask{i}"), layer.bias)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return bernoulli_log_prob(h, x)
