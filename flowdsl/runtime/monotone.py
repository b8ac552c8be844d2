"""Monotone scalar transformers with a numerical inverse: DSF (NAF), UMNN, SOS; the root finder.

A *transformer* maps each scalar ``x`` with its own parameter vector ``p[..., k]``:
``forward(x, p) -> (y, log dy/dx)`` and ``inverse(y, p) -> (x, log dx/dy)``, elementwise
over any shape. Each one here is strictly increasing by construction (positive weights
and monotone activations, or the integral of a positive function), maps R onto R, and has
no closed-form inverse: :func:`solve_increasing` finds it, vectorised over every element,
by Newton steps safeguarded with a bracket (bisection when Newton leaves it or stalls),
to a relative tolerance of ``8 eps`` of the dtype; :func:`attach_root_gradient` gives the
solution the implicit-function gradient.

Example:
    >>> import torch
    >>> t = DSF(hidden=4)
    >>> p = torch.randn(5, 3, 12, dtype=torch.float64)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> y, ld = t(x, p)
    >>> x2, ld2 = t.inverse(y, p)
    >>> (x2 - x).abs().max().item() < 1e-10, (ld + ld2).abs().max().item() < 1e-10
    (True, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.nets import build_net

__all__ = ["solve_increasing", "attach_root_gradient", "NumericalInverse", "DSF", "UMNN", "SOS", "clenshaw_curtis"]


def _softplus_shift(target: float, floor: float) -> float:
    """``c`` with ``softplus(c) + floor == target`` (so zero parameters give ``target``)."""
    return math.log(math.expm1(target - floor))


@torch.no_grad()
def solve_increasing(fn, target, x0=None, lo=None, hi=None, max_iter: int = 100, rtol: float | None = None):
    """Solve ``fn(x, idx) = target`` elementwise for an increasing function; returns x like ``target``.

    ``fn(x, idx) -> (value, derivative)`` evaluates the elements of flat indices ``idx`` (a
    LongTensor) at ``x`` (1-d). ``lo``/``hi`` bracket the roots when known; otherwise the
    bracket is found on the way (a Newton step may at most double ``1 + |x|``). Newton steps
    are replaced by bisection when they leave the bracket or stop halving (as in Numerical
    Recipes' rtsafe). Elements stop once their step is below ``rtol (1 + |x|)`` (default
    ``8 eps`` of the dtype) and are not evaluated again.
    """
    shape = target.shape
    t = target.reshape(-1)
    eps = torch.finfo(t.dtype).eps
    rtol = 8 * eps if rtol is None else rtol
    inf = torch.full_like(t, math.inf)
    lo = -inf if lo is None else lo.reshape(-1).clone()
    hi = inf.clone() if hi is None else hi.reshape(-1).clone()
    x = t.clone() if x0 is None else x0.reshape(-1).clone()
    x = torch.minimum(torch.maximum(x, lo), hi)
    x = torch.where(torch.isfinite(x), x, torch.where(torch.isfinite(lo + hi), 0.5 * (lo + hi), torch.zeros_like(x)))
    step_before = inf.clone()  # |step| two iterations back
    last_step = inf.clone()
    active = torch.arange(t.numel(), device=t.device)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        xa, la, ha = x[active], lo[active], hi[active]
        f, d = fn(xa, active)
        f = f - t[active]
        la = torch.where(f < 0, xa, la)
        ha = torch.where(f > 0, xa, ha)
        cap = 1 + xa.abs()
        step = f / d
        ok = torch.isfinite(step) & (d > 0)
        step = torch.where(ok, torch.clamp(step, -cap, cap), torch.sign(f) * cap)
        xn = xa - step
        both = torch.isfinite(la) & torch.isfinite(ha)
        stall = 2 * step.abs() > step_before[active]
        xn = torch.where(both & ((xn <= la) | (xn >= ha) | stall), 0.5 * (la + ha), xn)
        xn = torch.where(f == 0, xa, xn)
        moved = (xn - xa).abs()
        tol = rtol * (1 + xa.abs())
        done = (moved <= tol) | (both & (ha - la <= tol)) | torch.isnan(f)
        x[active], lo[active], hi[active] = xn, la, ha
        step_before[active] = last_step[active]
        last_step[active] = moved
        active = active[~done]
    return x.reshape(shape)


def attach_root_gradient(fn, x_star, target):
    """``x*`` (found without gradient) made differentiable: ``dx/dtheta = -df/dtheta / f'``, ``dx/dy = 1/f'``."""
    if not torch.is_grad_enabled():
        return x_star
    x_star = x_star.detach()
    f, d = fn(x_star)
    return x_star - (f - target) / d.detach()


class NumericalInverse(nn.Module):
    """Mixin: ``inverse`` by :func:`solve_increasing`.

    Subclasses define ``prepare(p) -> c`` (per-element coefficients that do not depend on
    x, computed once per call) and ``evaluate(x, c) -> (value, derivative)``.
    """

    zero_logdet = False

    def prepare(self, p):
        return p

    def evaluate(self, x, c):  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, x, c):
        """``dy/dx`` alone (cheaper than :meth:`evaluate` for some transformers)."""
        return self.evaluate(x, c)[1]

    def value_and_derivative(self, x, p):
        return self.evaluate(x, self.prepare(p))

    def forward(self, x, p):
        y, d = self.value_and_derivative(x, p)
        return y, torch.log(d)

    def initial_guess(self, y, c):
        return y

    def inverse(self, y, p):
        c = self.prepare(p)
        flat = c.detach().reshape(-1, c.shape[-1])

        def some(x, idx):
            return self.evaluate(x, flat.index_select(0, idx))

        x = solve_increasing(some, y.detach(), x0=self.initial_guess(y.detach(), c.detach()))
        x = attach_root_gradient(lambda v: self.evaluate(v, c), x, y)
        return x, -torch.log(self.derivative(x, c))


class DSF(NumericalInverse):
    """Deep sigmoidal flow (Huang et al. 2018): ``y = logit(sum_h w_h sigmoid(a_h x + b_h))``.

    Parameters ``[a_raw (H), b (H), w_raw (H)]``: ``a = softplus(.) + 1e-3 > 0``, ``w = softmax``;
    computed in log space, so it is finite far in the tails (slope -> min a there). Zero
    parameters give the identity.
    """

    A_MIN = 1e-3

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.params_per_dim = 3 * hidden
        self.shift = _softplus_shift(1.0, self.A_MIN)

    @classmethod
    def from_spec(cls, spec) -> DSF:
        return cls(spec.hidden)

    def prepare(self, p):
        h = self.hidden
        a = F.softplus(p[..., :h] + self.shift) + self.A_MIN
        return torch.cat([a, p[..., h : 2 * h], torch.log_softmax(p[..., 2 * h :], dim=-1)], dim=-1)

    def log_parts(self, x, c):
        """``(y, log dy/dx)`` from prepared coefficients ``[a, b, log w]``."""
        h = self.hidden
        a, log_w = c[..., :h], c[..., 2 * h :]
        z = a * x[..., None] + c[..., h : 2 * h]
        log_s = torch.logsumexp(log_w + F.logsigmoid(z), dim=-1)
        log_1ms = torch.logsumexp(log_w + F.logsigmoid(-z), dim=-1)
        log_ds = torch.logsumexp(log_w + torch.log(a) + F.logsigmoid(z) + F.logsigmoid(-z), dim=-1)
        return log_s - log_1ms, log_ds - log_s - log_1ms

    def forward(self, x, p):
        return self.log_parts(x, self.prepare(p))

    def evaluate(self, x, c):
        y, log_d = self.log_parts(x, c)
        return y, torch.exp(log_d)


def clenshaw_curtis(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``cos(k pi / N)``, k = 0..N, and weights of Clenshaw-Curtis quadrature on [-1, 1].

    Exact for polynomials of degree <= N.

    >>> t, w = clenshaw_curtis(4)
    >>> round(float(w.sum()), 12), round(float((w * t**4).sum()), 12)
    (2.0, 0.4)
    """
    n = steps
    theta = np.pi * np.arange(n + 1) / n
    nodes = np.cos(theta)
    weights = np.zeros(n + 1)
    inner = np.arange(1, n)
    v = np.ones(n - 1)
    if n % 2 == 0:
        weights[0] = weights[n] = 1.0 / (n * n - 1)
        for j in range(1, n // 2):
            v -= 2 * np.cos(2 * j * theta[inner]) / (4 * j * j - 1)
        v -= np.cos(n * theta[inner]) / (n * n - 1)
    else:
        weights[0] = weights[n] = 1.0 / (n * n)
        for j in range(1, (n - 1) // 2 + 1):
            v -= 2 * np.cos(2 * j * theta[inner]) / (4 * j * j - 1)
    weights[inner] = 2 * v / n
    return nodes, weights


class UMNN(NumericalInverse):
    """Unconstrained monotonic neural network (Wehenkel & Louppe 2019): ``y = b + int_0^x g(t, e) dt``.

    Parameters ``[e (E), b]``; ``g = softplus(integrand([t, e]) + c) + 1e-4 > 0`` (1 at zero
    output). The integral uses Clenshaw-Curtis quadrature on ``steps + 1`` nodes, the
    derivative is exactly ``g(x, e)``.
    """

    G_MIN = 1e-4

    def __init__(self, integrand: nn.Module, steps: int, embedding: int):
        super().__init__()
        self.integrand = integrand
        self.embedding = embedding
        self.params_per_dim = embedding + 1
        self.shift = _softplus_shift(1.0, self.G_MIN)
        nodes, weights = clenshaw_curtis(steps)
        dtype = torch.get_default_dtype()
        self.register_buffer("fractions", torch.as_tensor((nodes + 1) / 2, dtype=dtype), persistent=False)
        self.register_buffer("weights", torch.as_tensor(weights / 2, dtype=dtype), persistent=False)

    @classmethod
    def from_spec(cls, spec) -> UMNN:
        """Builds the integrand net the spec describes (silu when its activation was left unset)."""
        return cls(build_net(spec.integrand_net(), *spec.integrand_io, 0), spec.steps, spec.embedding)

    def g(self, t, e):
        """Integrand at points ``t [..., M]`` for embeddings ``e [..., E]``: ``[..., M]``."""
        inp = torch.cat([t[..., None], e[..., None, :].expand(*t.shape, e.shape[-1])], dim=-1)
        raw = self.integrand(inp.reshape(-1, inp.shape[-1])).reshape(t.shape)
        return F.softplus(raw + self.shift) + self.G_MIN

    def initial_guess(self, y, c):
        """The root of the linearisation at 0: ``(y - b) / g(0)``."""
        return (y - c[..., self.embedding]) / self.derivative(torch.zeros_like(y), c)

    def derivative(self, x, c):
        return self.g(x[..., None], c[..., : self.embedding])[..., 0]

    def evaluate(self, x, c):
        e, b = c[..., : self.embedding], c[..., self.embedding]
        t = torch.cat([x[..., None] * self.fractions.to(x.dtype), x[..., None]], dim=-1)
        g = self.g(t, e)
        integral = x * (g[..., :-1] * self.weights.to(x.dtype)).sum(-1)
        return b + integral, g[..., -1]


class SOS(NumericalInverse):
    """Sum-of-squares polynomial flow (Jaini et al. 2019): ``y = c + int_0^x (1e-3 + sum_k p_k(t)^2) dt``.

    Parameters ``[a (K x (r+1)), c]``, ``p_k(t) = sum_l a_kl t^l``; the integral is the exact
    polynomial of degree ``2r + 1``. Zero parameters give the identity (an offset on the
    constant coefficients makes the integrand 1).
    """

    EPS = 1e-3

    def __init__(self, polynomials: int, degree: int):
        super().__init__()
        self.k, self.r = polynomials, degree
        self.params_per_dim = polynomials * (degree + 1) + 1
        base = torch.zeros(polynomials, degree + 1)
        base[:, 0] = math.sqrt((1 - self.EPS) / polynomials)
        n = degree + 1
        conv = torch.zeros(n, n, 2 * n - 1)  # conv[l, m, l + m] = 1 / (l + m + 1)
        for i in range(n):
            for j in range(n):
                conv[i, j, i + j] = 1.0 / (i + j + 1)
        self.register_buffer("base", base.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("conv", conv.to(torch.get_default_dtype()), persistent=False)

    @classmethod
    def from_spec(cls, spec) -> SOS:
        return cls(spec.polynomials, spec.degree)

    def initial_guess(self, y, c):
        """``d = y - c`` near 0, else ``sign(d) |d|^(1 / (2r + 1))``: the integral grows like ``x^(2r + 1)``,
        so Newton from ``y`` itself would creep down from ``|y| ~ 1e9`` for ``|x| ~ 20``."""
        d = y - c[..., -1]
        return torch.where(d.abs() > 1, d.sign() * d.abs().pow(1.0 / (2 * self.r + 1)), d)

    def prepare(self, p):
        """``[q (2r + 1), a (K (r + 1)), c]``: q[n] multiplies x^(n+1) in the integral."""
        a = p[..., :-1].reshape(*p.shape[:-1], self.k, self.r + 1) + self.base.to(p.dtype)
        gram = torch.einsum("...kl,...km->...lm", a, a)
        q = torch.einsum("...lm,lmn->...n", gram, self.conv.to(p.dtype))
        return torch.cat([q, a.flatten(-2), p[..., -1:]], dim=-1)

    def evaluate(self, x, c):
        n = 2 * self.r + 1
        q, a = c[..., :n], c[..., n:-1].unflatten(-1, (self.k, self.r + 1))
        poly = q[..., -1]
        for i in range(n - 2, -1, -1):
            poly = poly * x + q[..., i]
        value = c[..., -1] + x * (self.EPS + poly)
        pk = a[..., -1]
        for i in range(self.r - 1, -1, -1):
            pk = pk * x[..., None] + a[..., i]
        return value, self.EPS + (pk * pk).sum(-1)
