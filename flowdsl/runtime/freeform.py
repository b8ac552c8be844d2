"""Planar, radial and Sylvester flows: forward with exact log-det, and provably convergent inverses.

- Planar: the inverse solves the 1-D equation ``a + s tanh(a) = w.y + b`` for ``a = w.x + b``
  (``s = w.u_hat > -1``, so the left side is strictly increasing and the root lies in
  ``[c - |s|, c + |s|]``) by a vectorised, bracketed Newton iteration, then ``x = y - u_hat tanh(a)``.
- Radial: the radius solves a quadratic; the inverse is closed form.
- Sylvester: with ``w = R~ Q^T x + b``, ``y = x + Q R tanh(w)`` gives ``w + T tanh(w) = R~ Q^T y + b``
  for the upper-triangular ``T = R~ R`` with ``T_ii > -1``: back-substitution, each step a
  bracketed 1-D root find as for planar. No fixed-point iteration, no convergence assumption.

When gradients are enabled, each inverse ends with one Newton step taken with autograd on, so
the inverse is differentiable with the implicit-function gradient.

Example:
    >>> import torch
    >>> layer = Planar(3)
    >>> with torch.no_grad():
    ...     _ = layer.u.copy_(torch.tensor([1.0, -2.0, 0.5]))
    >>> x = torch.randn(4, 3)
    >>> y, ld = layer(x)
    >>> x_back, ld_inv = layer.inverse(y)
    >>> torch.allclose(x_back, x, atol=1e-5), torch.allclose(ld, -ld_inv, atol=1e-5)
    (True, True)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.base import Bijection, BuildNode, ContextLinear

__all__ = ["Planar", "Radial", "Sylvester", "solve_tanh_shift", "inverse_tol", "bjorck_orthonormal"]

MAX_ITER = 200
#: planar keeps w.u_hat >= -1 + PLANAR_MARGIN, so rounding in w.u_hat can never reach -1
PLANAR_MARGIN = 1e-4
SHIFT = math.log(math.e - 1)  # softplus(SHIFT) = 1: m(0) = 0, so u = 0 is the identity
#: radial keeps alpha >= RADIAL_MARGIN and beta + alpha >= RADIAL_MARGIN (softplus underflows to 0 far out)
RADIAL_MARGIN = 1e-6
#: Sylvester keeps |R_ii|, |R~_ii| <= 1 - SYLVESTER_MARGIN (tanh rounds to 1 beyond ~19), so R_ii R~_ii > -1
SYLVESTER_MARGIN = 1e-6


def inverse_tol(dtype: torch.dtype) -> float:
    """The tolerance the iterative inverses stop at (relative to 1 + |value|)."""
    return {torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-3)


@torch.no_grad()
def solve_tanh_shift(s: torch.Tensor, c: torch.Tensor, tol: float | None = None) -> torch.Tensor:
    """The root ``a`` of ``a + s tanh(a) = c`` (elementwise; needs ``s > -1``): bracketed Newton.

    The left side is strictly increasing (slope ``1 + s sech^2 a > min(1, 1 + s)``) and
    ``|a - c| <= |s|``, so the root is unique and bracketed; a Newton step leaving the bracket
    (or longer than half of it) is replaced by bisection, so the iteration always converges.
    """
    s, c = torch.broadcast_tensors(s, c)
    tol = inverse_tol(c.dtype) if tol is None else tol
    lo, hi = c - s.abs(), c + s.abs()
    a = c - s * torch.tanh(c)
    a = torch.minimum(torch.maximum(a, lo), hi)
    for _ in range(MAX_ITER):
        t = torch.tanh(a)
        g = a + s * t - c
        lo = torch.where(g < 0, a, lo)
        hi = torch.where(g > 0, a, hi)
        newton = a - g / (1 + s * (1 - t * t))
        # Newton only when it lands strictly inside the bracket and moves less than half of it (rtsafe)
        good = (newton > lo) & (newton < hi) & ((newton - a).abs() <= 0.5 * (hi - lo))
        a_new = torch.where(good, newton, 0.5 * (lo + hi))
        done = ((a_new - a).abs() <= tol * (1 + a.abs())) | (hi - lo <= tol * (1 + a.abs()))
        a = a_new
        if bool(done.all()):
            break
    return a


def _polish(a: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """One Newton step from a detached root, with autograd on: the implicit-function gradient."""
    if not torch.is_grad_enabled():
        return a
    a = a.detach()
    t = torch.tanh(a)
    return a - (a + s * t - c) / (1 + s * (1 - t * t))


def _hypernet(context: int, outputs: int) -> nn.Linear | None:
    """The condition's linear map onto a layer's raw parameters (zero: the layer starts unconditional)."""
    if not context:
        return None
    layer = ContextLinear(context, outputs, bias=False)  # an old checkpoint loads with it at zero
    nn.init.zeros_(layer.weight)
    return layer


def _shifted(hyper: nn.Linear, context, *own: torch.Tensor) -> list[torch.Tensor]:
    """Each raw parameter ``[n]`` as ``[B, n]``, one per context: its own value + its part of ``hyper(context)``."""
    delta = hyper(context.reshape(context.shape[0], -1).to(own[0].dtype))
    return [p + d for p, d in zip(own, delta.split([p.numel() for p in own], dim=1))]


class Planar(Bijection):
    """y = x + u_hat tanh(w.x + b), u_hat = u + (m(w.u) - w.u) w / |w|^2.

    m(a) = -1 + max(softplus(a + log(e - 1)), 1e-4) > -1 (Rezende & Mohamed's m, shifted so that
    m(0) = 0: u = 0 is the identity; floored so that rounding never reaches -1). With a condition,
    ``u, w, b`` are shifted per example by a linear map of it first (the constraint holds for each).
    """

    def __init__(self, features: int, context: int = 0):
        super().__init__()
        self.u = nn.Parameter(torch.zeros(features))
        self.w = nn.Parameter(torch.randn(features) / features**0.5)
        self.b = nn.Parameter(torch.zeros(1))
        self.hyper = _hypernet(context, 2 * features + 1)

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.meta["features"], node.context_features if node.meta.get("hyper") else 0)

    def _vectors(self, context=None):
        """``(u_hat, s, w, b)``: [D], [], [D], [1] shared, or [B, D], [B], [B, D], [B] (one per context)."""
        if self.hyper is None or context is None:
            u, w, b = self.u, self.w, self.b
        else:
            u, w, b = _shifted(self.hyper, context, self.u, self.w, self.b)
            b = b[:, 0]
        wu = torch.linalg.vecdot(w, u)
        m = -1 + F.softplus(wu + SHIFT).clamp_min(PLANAR_MARGIN)
        norm2 = torch.linalg.vecdot(w, w).clamp_min(torch.finfo(w.dtype).tiny)
        u_hat = u + ((m - wu) / norm2)[..., None] * w
        return u_hat, torch.linalg.vecdot(w, u_hat), w, b

    def u_hat(self, context=None):
        """``(u_hat, s = w.u_hat)``; ``s > -1`` is what makes the layer invertible (per context, if given)."""
        return self._vectors(context)[:2]

    @staticmethod
    def _dot(flat, w):
        """``w.x`` per example: one matrix-vector product for a shared ``w`` [D], a row sum for [B, D]."""
        return flat @ w if w.dim() == 1 else (flat * w).sum(1)

    def forward(self, x, context=None):
        flat = x.reshape(x.shape[0], -1)
        u_hat, s, w, b = self._vectors(context)
        t = torch.tanh(self._dot(flat, w) + b)
        y = flat + t[:, None] * u_hat
        return y.reshape(x.shape), torch.log1p((1 - t * t) * s)

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        u_hat, s, w, b = self._vectors(context)
        c = self._dot(flat, w) + b
        a = _polish(solve_tanh_shift(s.detach(), c.detach()), s, c)
        t = torch.tanh(a)
        x = flat - t[:, None] * u_hat
        return x.reshape(y.shape), -torch.log1p((1 - t * t) * s)


class Radial(Bijection):
    """y = x + beta (x - x0) / (alpha + r); alpha = softplus(.), beta = -alpha + softplus(.).

    With a condition, ``x0`` and the two raw values are shifted per example by a linear map of it.
    """

    def __init__(self, features: int, context: int = 0):
        super().__init__()
        self.x0 = nn.Parameter(torch.zeros(features))
        self.alpha_raw = nn.Parameter(torch.zeros(1))
        self.beta_raw = nn.Parameter(torch.zeros(1))  # beta = 0 at initialisation: the identity
        self.features = features
        self.hyper = _hypernet(context, features + 2)

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.meta["features"], node.context_features if node.meta.get("hyper") else 0)

    def _params(self, context):
        """``(x0, alpha, beta)``: [D], [1], [1] shared (or [B, D], [B], [B], one per context); alpha > 0,
        beta > -alpha."""
        if self.hyper is None or context is None:
            x0, alpha_raw, beta_raw = self.x0, self.alpha_raw, self.beta_raw
        else:
            x0, alpha_raw, beta_raw = _shifted(self.hyper, context, self.x0, self.alpha_raw, self.beta_raw)
            alpha_raw, beta_raw = alpha_raw[:, 0], beta_raw[:, 0]
        alpha = F.softplus(alpha_raw).clamp_min(RADIAL_MARGIN)
        return x0, alpha, -alpha + F.softplus(beta_raw).clamp_min(RADIAL_MARGIN)

    def coefficients(self, context=None):
        """``(alpha, beta)`` with ``alpha > 0``, ``beta > -alpha``: shape [1], or [B] per context."""
        return self._params(context)[1:]

    def _logdet(self, r, alpha, beta):
        h = 1 / (alpha + r)
        return (self.features - 1) * torch.log1p(beta * h) + torch.log1p(beta * alpha * h * h)

    def forward(self, x, context=None):
        x0, alpha, beta = self._params(context)
        d = x.reshape(x.shape[0], -1) - x0
        r = torch.linalg.vector_norm(d, dim=1)
        y = x0 + d * (1 + beta / (alpha + r))[:, None]
        return y.reshape(x.shape), self._logdet(r, alpha, beta)

    def inverse(self, y, context=None):
        x0, alpha, beta = self._params(context)
        e = y.reshape(y.shape[0], -1) - x0
        rho = torch.linalg.vector_norm(e, dim=1)
        # r^2 + (alpha + beta - rho) r - rho alpha = 0: the non-negative root, computed without cancellation
        q = alpha + beta - rho
        disc = torch.sqrt(q * q + 4 * rho * alpha)
        r = torch.where(q <= 0, (disc - q) / 2, 2 * rho * alpha / (disc + q.clamp_min(0)))
        x = x0 + e / (1 + beta / (alpha + r))[:, None]
        return x.reshape(y.shape), -self._logdet(r, alpha, beta)


def bjorck_orthonormal(v: torch.Tensor, tol: float | None = None, max_iter: int = MAX_ITER) -> torch.Tensor:
    """Orthonormal columns from ``v`` [D, M] by the iteration Q <- Q (3I - Q^T Q) / 2 (Bjorck & Bowie).

    ``v`` is first scaled so its singular values are at most 1 (the iteration then converges
    for any full-rank ``v``); once ``max |Q^T Q - I| <= tol`` (default ``64 M eps``) one more
    step (quadratic convergence) reaches rounding level. A rank-deficient ``v`` (singular
    values that never grow) falls back to a QR factorisation.
    """
    m = v.shape[1]
    tol = 64 * m * torch.finfo(v.dtype).eps if tol is None else tol
    eye = torch.eye(m, dtype=v.dtype, device=v.device)
    gram = v.T @ v
    q = v / torch.sqrt(gram.abs().sum(0).max().clamp_min(torch.finfo(v.dtype).tiny))
    for _ in range(max_iter):
        qtq = q.T @ q
        converged = bool((qtq - eye).abs().max() <= tol)
        q = q @ (1.5 * eye - 0.5 * qtq)
        if converged:
            return q
    return torch.linalg.qr(q).Q


def _mv(mat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``mat @ vec`` per example: ``mat`` [M, M] shared or [B, M, M] per example, ``vec`` [B, M]."""
    return vec @ mat.T if mat.dim() == 2 else (mat @ vec[:, :, None])[:, :, 0]


class Sylvester(Bijection):
    """y = x + Q R tanh(R~ Q^T x + b) on the flattened input; see the module docstring.

    With a condition, the raw entries of ``R``, ``R~`` and ``b`` are shifted per example by a linear
    map of it (``Q`` is shared): ``R``, ``R~`` are then [B, M, M], their diagonals still tanh-bounded.
    """

    def __init__(self, features: int, rank: int, kind: str, coords=None, context: int = 0):
        super().__init__()
        d, m = features, rank
        self.kind, self.features, self.rank = kind, d, m
        if kind == "orthogonal":
            self.v = nn.Parameter(torch.linalg.qr(torch.randn(d, m)).Q)
        elif kind == "householder":
            self.v = nn.Parameter(torch.randn(m, d))
        else:
            self.register_buffer("coords", torch.as_tensor(coords, dtype=torch.long), persistent=False)
        self.r_diag = nn.Parameter(torch.zeros(m))
        self.r_off = nn.Parameter(torch.zeros(m * (m - 1) // 2))
        self.rt_diag = nn.Parameter(torch.zeros(m))
        self.rt_off = nn.Parameter(torch.zeros(m * (m - 1) // 2))
        self.b = nn.Parameter(torch.zeros(m))
        self.register_buffer("triu", torch.triu_indices(m, m, offset=1), persistent=False)
        self.hyper = _hypernet(context, m * (m + 1) + m)

    @classmethod
    def build(cls, layer, node: BuildNode):
        meta = node.meta
        return cls(meta["features"], meta["rank"], layer.kind, meta.get("coords"),
                   node.context_features if meta.get("hyper") else 0)

    # -- parameters
    def _triangular(self, diag_raw, off):
        bound = 1 - SYLVESTER_MARGIN
        diag = torch.tanh(diag_raw).clamp(-bound, bound)
        if diag_raw.dim() == 2:  # one per context: [B, M, M]
            r = torch.diag_embed(diag)
            if self.rank > 1:
                r[:, self.triu[0], self.triu[1]] = off
            return r
        r = torch.diag(diag)
        return r.index_put((self.triu[0], self.triu[1]), off) if self.rank > 1 else r

    def _raw(self, context):
        """``(r_diag, r_off, rt_diag, rt_off, b)``: the shared parameters, or [B, ...] ones per context."""
        own = (self.r_diag, self.r_off, self.rt_diag, self.rt_off, self.b)
        return own if self.hyper is None or context is None else tuple(_shifted(self.hyper, context, *own))

    def triangles(self, context=None):
        """``(R, R~)``, upper triangular with diagonals in (-1, 1) ([B, M, M] with a context)."""
        r_diag, r_off, rt_diag, rt_off, _ = self._raw(context)
        return self._triangular(r_diag, r_off), self._triangular(rt_diag, rt_off)

    def q(self):
        """Q [D, M] with orthonormal columns (None for kind=triangular: a coordinate selection)."""
        if self.kind == "orthogonal":
            return bjorck_orthonormal(self.v)
        if self.kind == "householder":
            q = torch.eye(self.features, self.rank, dtype=self.v.dtype, device=self.v.device)
            tiny = torch.finfo(self.v.dtype).tiny
            for v in self.v.flip(0):  # Q = H_1 H_2 ... H_M E: apply H_M first
                q = q - (2 / (v @ v).clamp_min(tiny)) * torch.outer(v, v @ q)
            return q
        return None

    def _project(self, x, q):  # Q^T x
        return x.index_select(1, self.coords) if q is None else x @ q

    def _lift(self, x, z, q):  # x + Q z (z may be in autocast's lower precision: added in x's dtype)
        z = z.to(x.dtype)
        return x.index_add(1, self.coords, z) if q is None else x + z @ q.T.to(x.dtype)

    # -- the transform
    def forward(self, x, context=None):
        flat = x.reshape(x.shape[0], -1)
        q = self.q()
        r, rt = self.triangles(context)
        w = _mv(rt, self._project(flat, q)) + self._raw(context)[4]
        t = torch.tanh(w)
        y = self._lift(flat, _mv(r, t), q)
        diag = torch.diagonal(rt, dim1=-2, dim2=-1) * torch.diagonal(r, dim1=-2, dim2=-1)
        logdet = torch.log1p((1 - t * t) * diag).sum(1)
        return y.reshape(x.shape), logdet

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        q = self.q()
        r, rt = self.triangles(context)
        c = _mv(rt, self._project(flat, q)) + self._raw(context)[4]
        tri = rt @ r  # upper triangular, diagonal in (-1, 1)
        w = self._back_substitute(tri.detach(), c.detach())
        if torch.is_grad_enabled():  # one Newton step on the triangular system, with autograd on
            t = torch.tanh(w)
            jac = torch.eye(self.rank, dtype=w.dtype, device=w.device) + tri * (1 - t * t)[:, None, :]
            resid = w + _mv(tri, t) - c
            w = w - torch.linalg.solve_triangular(jac, resid[:, :, None], upper=True)[:, :, 0]
        t = torch.tanh(w)
        x = self._lift(flat, -_mv(r, t), q)
        logdet = torch.log1p((1 - t * t) * torch.diagonal(tri, dim1=-2, dim2=-1)).sum(1)
        return x.reshape(y.shape), -logdet

    @torch.no_grad()
    def _back_substitute(self, tri, c):
        """Solve ``w + tri tanh(w) = c`` row by row from the last (tri upper triangular, tri_ii > -1;
        [M, M] shared or [B, M, M] per example)."""
        tri = tri if tri.dim() == 3 else tri[None]
        w = torch.zeros_like(c)
        h = torch.zeros_like(c)
        for i in range(self.rank - 1, -1, -1):
            rhs = c[:, i] - (h[:, i + 1:] * tri[:, i, i + 1:]).sum(1)
            w[:, i] = solve_tanh_shift(tri[:, i, i], rhs)
            h[:, i] = torch.tanh(w[:, i])
        return w
