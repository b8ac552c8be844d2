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

from flowdsl.runtime.base import Bijection, BuildNode

__all__ = ["Planar", "Radial", "Sylvester", "solve_tanh_shift", "inverse_tol", "bjorck_orthonormal"]

MAX_ITER = 200
#: planar keeps w.u_hat >= -1 + PLANAR_MARGIN, so rounding in w.u_hat can never reach -1
PLANAR_MARGIN = 1e-4
SHIFT = math.log(math.e - 1)  # softplus(SHIFT) = 1: m(0) = 0, so u = 0 is the identity


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


class Planar(Bijection):
    """y = x + u_hat tanh(w.x + b), u_hat = u + (m(w.u) - w.u) w / |w|^2.

    m(a) = -1 + max(softplus(a + log(e - 1)), 1e-4) > -1 (Rezende & Mohamed's m, shifted so that
    m(0) = 0: u = 0 is the identity; floored so that rounding never reaches -1).
    """

    def __init__(self, features: int):
        super().__init__()
        self.u = nn.Parameter(torch.zeros(features))
        self.w = nn.Parameter(torch.randn(features) / features**0.5)
        self.b = nn.Parameter(torch.zeros(1))

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.meta["features"])

    def u_hat(self):
        """``(u_hat, s = w.u_hat)``; ``s > -1`` is what makes the layer invertible."""
        wu = self.w @ self.u
        m = -1 + F.softplus(wu + SHIFT).clamp_min(PLANAR_MARGIN)
        norm2 = (self.w @ self.w).clamp_min(torch.finfo(self.w.dtype).tiny)
        u_hat = self.u + (m - wu) * self.w / norm2
        return u_hat, self.w @ u_hat

    def forward(self, x, context=None):
        flat = x.reshape(x.shape[0], -1)
        u_hat, s = self.u_hat()
        t = torch.tanh(flat @ self.w + self.b)
        y = flat + t[:, None] * u_hat
        return y.reshape(x.shape), torch.log1p((1 - t * t) * s)

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        u_hat, s = self.u_hat()
        c = flat @ self.w + self.b
        a = _polish(solve_tanh_shift(s.detach(), c.detach()), s, c)
        t = torch.tanh(a)
        x = flat - t[:, None] * u_hat
        return x.reshape(y.shape), -torch.log1p((1 - t * t) * s)


class Radial(Bijection):
    """y = x + beta (x - x0) / (alpha + r); alpha = softplus(.), beta = -alpha + softplus(.)."""

    def __init__(self, features: int):
        super().__init__()
        self.x0 = nn.Parameter(torch.zeros(features))
        self.alpha_raw = nn.Parameter(torch.zeros(1))
        self.beta_raw = nn.Parameter(torch.zeros(1))  # beta = 0 at initialisation: the identity
        self.features = features

    @classmethod
    def build(cls, layer, node: BuildNode):
        return cls(node.meta["features"])

    def coefficients(self):
        alpha = F.softplus(self.alpha_raw)
        return alpha, -alpha + F.softplus(self.beta_raw)

    def _logdet(self, r, alpha, beta):
        h = 1 / (alpha + r)
        return (self.features - 1) * torch.log1p(beta * h) + torch.log1p(beta * alpha * h * h)

    def forward(self, x, context=None):
        d = x.reshape(x.shape[0], -1) - self.x0
        alpha, beta = self.coefficients()
        r = torch.linalg.vector_norm(d, dim=1)
        y = self.x0 + d * (1 + beta / (alpha + r))[:, None]
        return y.reshape(x.shape), self._logdet(r, alpha, beta)

    def inverse(self, y, context=None):
        e = y.reshape(y.shape[0], -1) - self.x0
        alpha, beta = self.coefficients()
        rho = torch.linalg.vector_norm(e, dim=1)
        # r^2 + (alpha + beta - rho) r - rho alpha = 0: the non-negative root, computed without cancellation
        q = alpha + beta - rho
        disc = torch.sqrt(q * q + 4 * rho * alpha)
        r = torch.where(q <= 0, (disc - q) / 2, 2 * rho * alpha / (disc + q.clamp_min(0)))
        x = self.x0 + e / (1 + beta / (alpha + r))[:, None]
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


class Sylvester(Bijection):
    """y = x + Q R tanh(R~ Q^T x + b) on the flattened input; see the module docstring."""

    def __init__(self, features: int, rank: int, kind: str, coords=None):
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

    @classmethod
    def build(cls, layer, node: BuildNode):
        meta = node.meta
        return cls(meta["features"], meta["rank"], layer.kind, meta.get("coords"))

    # -- parameters
    def _triangular(self, diag_raw, off):
        m = self.rank
        r = torch.diag(torch.tanh(diag_raw))
        return r.index_put((self.triu[0], self.triu[1]), off) if m > 1 else r

    def triangles(self):
        """``(R, R~)``, upper triangular with diagonals in (-1, 1)."""
        return self._triangular(self.r_diag, self.r_off), self._triangular(self.rt_diag, self.rt_off)

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
        r, rt = self.triangles()
        w = self._project(flat, q) @ rt.T + self.b
        t = torch.tanh(w)
        y = self._lift(flat, t @ r.T, q)
        logdet = torch.log1p((1 - t * t) * (torch.diagonal(rt) * torch.diagonal(r))).sum(1)
        return y.reshape(x.shape), logdet

    def inverse(self, y, context=None):
        flat = y.reshape(y.shape[0], -1)
        q = self.q()
        r, rt = self.triangles()
        c = self._project(flat, q) @ rt.T + self.b
        tri = rt @ r  # upper triangular, diagonal in (-1, 1)
        w = self._back_substitute(tri.detach(), c.detach())
        if torch.is_grad_enabled():  # one Newton step on the triangular system, with autograd on
            t = torch.tanh(w)
            jac = torch.eye(self.rank, dtype=w.dtype, device=w.device) + tri * (1 - t * t)[:, None, :]
            resid = w + t @ tri.T - c
            w = w - torch.linalg.solve_triangular(jac, resid[:, :, None], upper=True)[:, :, 0]
        t = torch.tanh(w)
        x = self._lift(flat, -(t @ r.T), q)
        logdet = torch.log1p((1 - t * t) * torch.diagonal(tri)).sum(1)
        return x.reshape(y.shape), -logdet

    @torch.no_grad()
    def _back_substitute(self, tri, c):
        """Solve ``w + tri tanh(w) = c`` row by row from the last (tri upper triangular, tri_ii > -1)."""
        w = torch.zeros_like(c)
        h = torch.zeros_like(c)
        for i in range(self.rank - 1, -1, -1):
            rhs = c[:, i] - h[:, i + 1:] @ tri[i, i + 1:]
            w[:, i] = solve_tanh_shift(tri[i, i], rhs)
            h[:, i] = torch.tanh(w[:, i])
        return w
