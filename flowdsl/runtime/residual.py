"""Residual flows: spectrally normalised nets, log-det estimators, and the Banach fixed-point inverse.

``SpectralLinear`` estimates its weight's spectral norm by power iteration, warm-started
from stored vectors and run to a relative tolerance on every call, and uses
``W / max(1, sigma / coeff)``: spectral norm ``<= coeff`` (to the iteration's tolerance). In a
conditional model the first map also reads the condition: its ``free`` condition columns are not
normalised (the bound ``Lip(g) < 1`` is needed in ``x`` only, for every fixed condition).

The log-det of ``y = x + g(x)`` is ``sum_k (-1)^(k+1) tr(J^k) / k``. The estimators draw one
Rademacher vector ``v`` per example and compute ``v^T J^k v`` by vector-Jacobian products;
the Russian-roulette estimator draws a number of terms per example and divides term ``k``
by the probability that it is reached (unbiased). Their gradient is the Neumann series
``sum_k (-1)^(k+1) v^T J^(k-1) (dJ) v`` (Chen et al. 2019): one extra double-backward
product, no graph through the series. Under :func:`flowdsl.exact_logdet` (or
``logdet=exact``) the log-det comes from the brute-force Jacobian.

Example:
    >>> import torch
    >>> from flowdsl.layers.residual import LipschitzMLP
    >>> net = build_lipschitz_mlp(LipschitzMLP(hidden=(8,), coeff=0.5), (3,), (3,))
    >>> w = net.body[0].normalized_weight()
    >>> bool(torch.linalg.matrix_norm(w, 2) <= 0.5 + 1e-3)
    True
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.base import Bijection, BuildNode
from flowdsl.runtime.estimators import exact_logdet_enabled
from flowdsl.runtime.nets import FeatureNet, activation
from flowdsl.runtime.optimize import logdets_discarded, optimizations_enabled

__all__ = [
    "SpectralLinear", "LipSwish", "build_lipschitz_mlp", "Residual", "hutchinson_series", "exact_residual_logdet",
    "rademacher",
]

POWER_MAX_ITER = 500
# the fewest rows a Russian-roulette subset must drop before g is re-evaluated on the rest: on CPU,
# 16 features and width 64, the re-evaluation pays from about 128 dropped rows (benchmarks/optimisations.py)
SUBSET_MIN_ROWS = 128


def _tol(dtype: torch.dtype) -> float:
    return {torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-3)


def rademacher(shape, like: torch.Tensor) -> torch.Tensor:
    """Random signs +-1 of ``like``'s dtype and device."""
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


def _unit(x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """x / |x|, or ``previous`` when x vanishes (a zero weight keeps its power-iteration vector)."""
    n = torch.linalg.vector_norm(x)
    return torch.where(n > torch.finfo(x.dtype).tiny, x / n.clamp_min(torch.finfo(x.dtype).tiny), previous)


class SpectralLinear(nn.Module):
    """A linear map normalised to spectral norm ``<= coeff`` (power iteration, warm-started)."""

    def __init__(self, in_features: int, out_features: int, coeff: float, zero: bool = False, free: int = 0):
        super().__init__()
        #: trailing input columns (the condition) left out of the normalisation
        self.free = int(free)
        layer = nn.Linear(in_features + self.free, out_features)
        if zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self.coeff = float(coeff)
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features), dim=0))
        self.frozen: torch.Tensor | None = None
        self.last: torch.Tensor | None = None  # the last normalised weight, detached (re-evaluations reuse it)

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation (a context encoder re-initialises a net's zero last layer with it)."""
        layer = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            self.weight.copy_(layer.weight.to(self.weight))
            self.bias.copy_(layer.bias.to(self.bias))
        self.frozen = self.last = None

    @torch.no_grad()
    def _power_iteration(self, w: torch.Tensor):
        u, v = self.u.to(w.dtype), self.v.to(w.dtype)
        tol = _tol(w.dtype)
        sigma_old = None
        for _ in range(POWER_MAX_ITER):
            v = _unit(w.T @ u, v)
            u = _unit(w @ v, u)
            sigma = (u @ w @ v).abs()
            if sigma_old is not None and bool((sigma - sigma_old).abs() <= tol * sigma.clamp_min(1e-30)):
                break
            sigma_old = sigma
        self.u.copy_(u)
        self.v.copy_(v)
        return u.clone(), v.clone()

    def normalized_weight(self) -> torch.Tensor:
        """``W / max(1, sigma / coeff)``, sigma the power-iteration estimate (differentiable in W)."""
        if self.frozen is not None:
            return self.frozen
        w_x = self.weight[:, :self.weight.shape[1] - self.free] if self.free else self.weight
        u, v = self._power_iteration(w_x.detach())
        sigma = u @ w_x @ v
        weight = w_x / torch.clamp(sigma.abs() / self.coeff, min=1.0)
        if self.free:
            weight = torch.cat([weight, self.weight[:, weight.shape[1]:]], dim=1)
        self.last = weight.detach()
        return weight

    def forward(self, x):
        return F.linear(x, self.normalized_weight(), self.bias)


class LipSwish(nn.Module):
    """swish(x) / 1.1 = x sigmoid(beta x) / 1.1 with beta = softplus(.) >= 0: 1-Lipschitz for every beta."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor([math.log(math.e - 1)]))  # beta = 1

    def forward(self, x):
        return x * torch.sigmoid(F.softplus(self.beta) * x) / 1.1


def _activation(name: str) -> nn.Module:
    if name == "lipswish":
        return LipSwish()
    return nn.SiLU() if name == "swish" else activation(name)


def build_lipschitz_mlp(spec, in_shape, out_shape, context=0):
    """The ``lipschitz_mlp`` net: spectrally normalised linear maps (the condition's columns of the first
    one excepted); the last starts at zero."""
    sizes = [math.prod(in_shape), *spec.hidden, math.prod(out_shape)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(SpectralLinear(a, b, spec.coeff, zero=last, free=context if i == 0 else 0))
        if not last:
            layers.append(_activation(spec.activation))
    return FeatureNet(nn.Sequential(*layers), out_shape)


@contextmanager
def _frozen(net: nn.Module):
    """Within the block, each SpectralLinear reuses one normalised weight (no power iterations)."""
    layers = [m for m in net.modules() if isinstance(m, SpectralLinear)]
    with torch.no_grad():
        for m in layers:
            m.frozen = m.normalized_weight().detach()
    try:
        yield
    finally:
        for m in layers:
            m.frozen = None


@contextmanager
def _reused(net: nn.Module):
    """Within the block, each SpectralLinear reuses its last normalised weight (no power iterations)."""
    layers = [m for m in net.modules() if isinstance(m, SpectralLinear)]
    before = [m.frozen for m in layers]
    for m in layers:
        m.frozen = m.frozen if m.frozen is not None else m.last
    try:
        yield
    finally:
        for m, frozen in zip(layers, before):
            m.frozen = frozen


# ----------------------------------------------------------------------------- log-det
def exact_residual_logdet(gx: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """log|det(I + dg/dx)| per example from the full Jacobian (D batched backward passes)."""
    b, d = gx.shape
    eye = torch.eye(d, dtype=gx.dtype, device=gx.device)
    rows = torch.autograd.grad(gx, x, eye[:, None, :].expand(d, b, d), retain_graph=True,
                               create_graph=create_graph, is_grads_batched=True)[0]  # [D, B, D]: d g_i / d x
    return torch.linalg.slogdet(eye + rows.transpose(0, 1))[1]


def hutchinson_series(gx: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, create_graph: bool,
                      v: torch.Tensor | None = None, regraph=None, min_saved: int = 0) -> torch.Tensor:
    """``sum_k (-1)^(k+1) weights[k-1] v^T J^k v / k`` per example, with the Neumann-series gradient.

    ``weights`` [K, B]: term k's weight per example (1 for a plain truncated series; for Russian
    roulette, 1{reached} / P(reached)). The value carries no graph through the series; when
    ``create_graph`` the result's gradient is ``w^T (dJ) v`` with ``w = sum_k (-1)^(k+1) weights[k-1] (J^T)^(k-1) v``.
    ``v`` [B, D]: the probe vectors (default: Rademacher; basis vectors summed give exact traces).
    ``regraph``: ``rows -> (g(x[rows]), x[rows])`` on a fresh graph; given it, once at most half the rows
    still have a nonzero weight (a term's zero weight stays zero afterwards, as roulette's do) and at
    least ``min_saved`` rows drop out, the remaining terms run on those rows only (the same value: rows
    are independent; below ``min_saved`` rows the per-operation overhead costs more than the rows).
    """
    v = rademacher(gx.shape, gx) if v is None else v
    u = v
    estimate = gx.new_zeros(gx.shape[0])
    w = torch.zeros_like(v)
    rows = None  # None: the whole batch; else the rows (g_rows, x_rows) were evaluated on
    g_rows, x_rows, v_rows = gx, x, v
    for k in range(1, weights.shape[0] + 1):
        sign = 1.0 if k % 2 == 1 else -1.0
        wk = sign * (weights[k - 1] if rows is None else weights[k - 1].index_select(0, rows))
        if regraph is not None:
            reached = torch.nonzero(wk).flatten()
            saved = wk.shape[0] - len(reached)
            if len(reached) and saved >= max(wk.shape[0] // 2, min_saved):  # the rest on these rows only
                rows = reached if rows is None else rows.index_select(0, reached)
                u, wk, v_rows = u.index_select(0, reached), wk.index_select(0, reached), v.index_select(0, rows)
                g_rows, x_rows = regraph(rows)
        w = w + wk[:, None] * u if rows is None else w.index_add(0, rows, wk[:, None] * u)  # u = v^T J^(k-1)
        u = torch.autograd.grad(g_rows, x_rows, u, retain_graph=True)[0]  # v^T J^k
        term = wk / k * (u * v_rows).sum(1)
        estimate = estimate + term if rows is None else estimate.index_add(0, rows, term)
    if not create_graph:
        return estimate
    surrogate = (torch.autograd.grad(gx, x, w, create_graph=True)[0] * v).sum(1)  # w^T J v
    return estimate.detach() + surrogate - surrogate.detach()


def roulette_weights(batch: int, p: float, exact_terms: int, like: torch.Tensor) -> torch.Tensor:
    """[K, B]: 1{N_b >= k} / P(N >= k) with N = exact_terms + Geometric(p) drawn per example."""
    u = torch.rand(batch, dtype=torch.float64, device=like.device).clamp_min(1e-300)
    extra = torch.floor(torch.log(u) / math.log1p(-p)).long()  # P(extra >= j) = (1 - p)^j
    n = exact_terms + extra
    k = torch.arange(1, int(n.max()) + 1 if batch else 1, device=like.device)
    survive = torch.where(k <= exact_terms, torch.ones_like(k, dtype=torch.float64),
                          (1 - p) ** (k - exact_terms).to(torch.float64))
    return ((k[:, None] <= n[None, :]).to(torch.float64) / survive[:, None]).to(like.dtype)


class Residual(Bijection):
    """y = x + g(x) with Lip(g) < 1; log-det by the chosen estimator, inverse by fixed-point iteration."""

    def __init__(self, net: nn.Module, estimator, lipschitz: float):
        super().__init__()
        self.net = net
        self.method = estimator.name
        self.terms = getattr(estimator, "terms", 0)
        self.p = getattr(estimator, "p", 0.5)
        self.exact_terms = getattr(estimator, "exact_terms", 0)
        self.lipschitz = float(lipschitz)
        # roulette terms evaluated only on the rows that reach them (an optimisation: the compiler's flag)
        self.subset_terms = optimizations_enabled()
        self.subset_min_rows = SUBSET_MIN_ROWS

    @classmethod
    def build(cls, layer, node: BuildNode):
        from flowdsl.runtime.nets import build_net

        net = build_net(layer.net, node.meta["net_in"], node.meta["net_out"], node.context_features)
        return cls(net, layer.logdet, node.meta["lipschitz"])

    def g(self, flat: torch.Tensor, context=None) -> torch.Tensor:
        return self.net(flat, context).reshape(flat.shape)

    def _regraph(self, x: torch.Tensor, context):
        """``rows -> (g(x[rows]), x[rows])``: g re-evaluated on some rows, with the weights just used."""
        def regraph(rows):
            x_rows = x.detach().index_select(0, rows).requires_grad_(True)
            with _reused(self.net):
                return self.g(x_rows, None if context is None else context.index_select(0, rows)), x_rows

        return regraph

    def _weights(self, like: torch.Tensor) -> torch.Tensor:
        if self.method == "power_series":
            return like.new_ones(self.terms, like.shape[0])
        return roulette_weights(like.shape[0], self.p, self.exact_terms, like)

    def _forward(self, flat: torch.Tensor, context):
        grad = torch.is_grad_enabled()
        with torch.enable_grad():
            # under no_grad an input that requires grad (a view of it made here has no graph) is detached too
            x = flat if grad and flat.requires_grad else flat.detach().requires_grad_(True)
            gx = self.g(x, context)
            if self.method == "exact" or exact_logdet_enabled():
                logdet = exact_residual_logdet(gx, x, create_graph=grad)
            else:
                logdet = hutchinson_series(gx, x, self._weights(flat), create_graph=grad,
                                           regraph=self._regraph(x, context) if self.subset_terms else None,
                                           min_saved=self.subset_min_rows)
        y = flat + gx
        return (y, logdet) if grad else (y.detach(), logdet.detach())

    def forward(self, x, context=None):
        y, logdet = self._forward(x.reshape(x.shape[0], -1), context)
        return y.reshape(x.shape), logdet

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        lip = min(self.lipschitz, 1 - 1e-6)
        bound = lip / (1 - lip)  # |x_k - x*| <= bound |x_k - x_(k-1)| (Banach)
        tol = _tol(flat.dtype)
        with torch.no_grad(), _frozen(self.net):
            x = flat - self.g(flat, context)
            first = (x - flat).abs().max().item()
            # the a-priori bound |x_k - x*| <= lip^k / (1 - lip) |x_1 - x_0| caps the iterations, so that
            # rounding noise (float32) cannot keep the a-posteriori test failing forever
            need = math.log(tol * (1 - lip) / first) / math.log(lip) if first > 0 and lip > 0 else 0.0
            for _ in range(int(max(need, 0)) + 2):
                x_new = flat - self.g(x, context)
                step = (x_new - x).abs().max()
                x = x_new
                if bool(bound * step <= tol * (1 + x.abs().max())):
                    break
        if torch.is_grad_enabled():
            x = flat - self.g(x.detach(), context)
        if logdets_discarded():  # sampling: no series to estimate a log-det nobody reads
            return x.reshape(y.shape), flat.new_zeros(flat.shape[0])
        _, logdet = self._forward(x, context)
        return x.reshape(y.shape), -logdet
