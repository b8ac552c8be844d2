"""Monotone spline transformers: rational-quadratic and cubic (``rq_spline``, ``cubic_spline``).

Both splines live on ``[-B, B]`` with ``K`` bins whose widths and heights are softmaxes
(each at least ``1e-3`` of the interval) and whose knot slopes are positive:

- :class:`RQSpline` (Durkan et al. 2019, NSF): ``3K - 1`` parameters; end slopes 1 and
  identity outside the interval; the inverse is the root of a quadratic, taken in the
  cancellation-free form ``2c / (-b - sqrt(b^2 - 4ac))`` (discriminant clamped at 0);
- :class:`CubicSpline` (Durkan et al. 2019, Cubic-Spline Flows): ``3K + 1`` parameters;
  Hermite cubic per bin, every knot slope inside the Fritsch-Carlson box
  ``(0, 3 min(adjacent secants))`` (so each piece is strictly increasing), tails linear
  with the end slopes; inverse by bracketed Newton on ``[0, 1]`` inside the bin.

Zero parameters give the identity. Values at and beyond the bounds and at the knots are
finite, and so are gradients (out-of-range inputs are clamped before the spline branch).
Coupling and autoregressive flows take them as values (:mod:`flowdsl.runtime.transformers`).

Example:
    >>> import torch
    >>> s = RQSpline(bins=4, bound=3.0)
    >>> p = torch.randn(6, 11, dtype=torch.float64)
    >>> x = torch.tensor([-5.0, -3.0, -1.5, 0.0, 3.0, 7.0], dtype=torch.float64)
    >>> y, ld = s(x, p)
    >>> y[[0, 1, 4, 5]].tolist(), ld[[0, 5]].tolist()
    ([-5.0, -3.0, 3.0, 7.0], [0.0, 0.0])
    >>> (s.inverse(y, p)[0] - x).abs().max().item() < 1e-12
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.monotone import attach_root_gradient, solve_increasing

__all__ = ["RQSpline", "CubicSpline", "SPLINES", "knots"]

MIN_BIN = 1e-3
MIN_SLOPE = 1e-3


def knots(raw, bound: float):
    """``[..., K] -> [..., K + 1]`` knot positions from -bound to bound (bins >= MIN_BIN * 2 bound)."""
    k = raw.shape[-1]
    frac = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, dim=-1)
    cum = F.pad(torch.cumsum(frac, dim=-1), (1, 0))
    pos = 2 * bound * cum - bound
    return torch.cat([torch.full_like(pos[..., :1], -bound), pos[..., 1:-1], torch.full_like(pos[..., :1], bound)],
                     dim=-1)


def _bin(v, edges):
    """Index of the bin of ``v`` (edges ``[..., K + 1]``), clamped to 0..K-1."""
    k = edges.shape[-1] - 1
    idx = (v[..., None] >= edges[..., 1:-1]).sum(-1)
    return idx.clamp(0, k - 1)


def _take(t, idx):
    return t.gather(-1, idx[..., None])[..., 0]


class _Spline(nn.Module):
    """Shared: knots from parameters, locate the bin, tails outside [-B, B]."""

    zero_logdet = False

    def __init__(self, bins: int, bound: float):
        super().__init__()
        self.bins, self.bound = int(bins), float(bound)

    @classmethod
    def from_spec(cls, spec):
        """The module of an ``rq_spline`` / ``cubic_spline`` transformer spec."""
        return cls(spec.bins, spec.bound)

    def _inside(self, v):
        return (v >= -self.bound) & (v <= self.bound)


class RQSpline(_Spline):
    """Rational-quadratic spline with identity tails; parameters ``[widths K, heights K, slopes K-1]``."""

    def __init__(self, bins: int, bound: float):
        super().__init__(bins, bound)
        self.params_per_dim = 3 * self.bins - 1
        self.slope_shift = math.log(math.expm1(1 - MIN_SLOPE))

    def _geometry(self, p):
        k = self.bins
        xs, ys = knots(p[..., :k], self.bound), knots(p[..., k : 2 * k], self.bound)
        inner = F.softplus(p[..., 2 * k :] + self.slope_shift) + MIN_SLOPE
        ones = torch.ones_like(xs[..., :1])
        return xs, ys, torch.cat([ones, inner, ones], dim=-1)

    def _parts(self, idx, xs, ys, d):
        x0, x1, y0, y1 = _take(xs, idx), _take(xs, idx + 1), _take(ys, idx), _take(ys, idx + 1)
        w, h = x1 - x0, y1 - y0
        return x0, w, y0, h, h / w, _take(d, idx), _take(d, idx + 1)

    def forward(self, x, p):
        xs, ys, d = self._geometry(p)
        inside = self._inside(x)
        xc = x.clamp(-self.bound, self.bound)
        x0, w, y0, h, s, d0, d1 = self._parts(_bin(xc, xs), xs, ys, d)
        t = ((xc - x0) / w).clamp(0, 1)
        tt = t * (1 - t)
        den = s + (d0 + d1 - 2 * s) * tt
        y = y0 + h * (s * t * t + d0 * tt) / den
        dydx = s * s * (d1 * t * t + 2 * s * tt + d0 * (1 - t) ** 2) / (den * den)
        return torch.where(inside, y, x), torch.where(inside, torch.log(dydx), torch.zeros_like(x))

    def inverse(self, y, p):
        xs, ys, d = self._geometry(p)
        inside = self._inside(y)
        yc = y.clamp(-self.bound, self.bound)
        x0, w, y0, h, s, d0, d1 = self._parts(_bin(yc, ys), xs, ys, d)
        eta = yc - y0
        c1 = d0 + d1 - 2 * s
        a = h * (s - d0) + eta * c1
        b = h * d0 - eta * c1
        c = -s * eta
        disc = (b * b - 4 * a * c).clamp(min=0)
        t = (2 * c / (-b - torch.sqrt(disc))).clamp(0, 1)
        x = x0 + t * w
        tt = t * (1 - t)
        den = s + c1 * tt
        dydx = s * s * (d1 * t * t + 2 * s * tt + d0 * (1 - t) ** 2) / (den * den)
        return torch.where(inside, x, y), torch.where(inside, -torch.log(dydx), torch.zeros_like(y))


class CubicSpline(_Spline):
    """Monotone cubic Hermite spline, linear tails; parameters ``[widths K, heights K, slopes K+1]``."""

    LOW, HIGH = 1e-3, 3 - 1e-3  # knot slope / limiting secant lies in (LOW, HIGH)

    def __init__(self, bins: int, bound: float):
        super().__init__(bins, bound)
        self.params_per_dim = 3 * self.bins + 1
        self.slope_shift = math.log((1 - self.LOW) / (self.HIGH - 1))  # zero parameters: slope = secant

    def _geometry(self, p):
        k = self.bins
        xs, ys = knots(p[..., :k], self.bound), knots(p[..., k : 2 * k], self.bound)
        sec = (ys[..., 1:] - ys[..., :-1]) / (xs[..., 1:] - xs[..., :-1])
        limit = torch.cat([sec[..., :1], torch.minimum(sec[..., :-1], sec[..., 1:]), sec[..., -1:]], dim=-1)
        d = limit * (self.LOW + (self.HIGH - self.LOW) * torch.sigmoid(p[..., 2 * k :] + self.slope_shift))
        return xs, ys, d

    @staticmethod
    def _eval(t, w, h, d0, d1):
        """Value offset and derivative of the Hermite piece at local ``t`` in [0, 1]."""
        t2 = t * t
        value = h * (3 * t2 - 2 * t2 * t) + w * (d0 * (t2 * t - 2 * t2 + t) + d1 * (t2 * t - t2))
        deriv = (h / w) * (6 * t - 6 * t2) + d0 * (3 * t2 - 4 * t + 1) + d1 * (3 * t2 - 2 * t)
        return value, deriv

    def _parts(self, idx, xs, ys, d):
        x0, y0 = _take(xs, idx), _take(ys, idx)
        return x0, _take(xs, idx + 1) - x0, y0, _take(ys, idx + 1) - y0, _take(d, idx), _take(d, idx + 1)

    def _tails(self, v, d, sign_inverse: bool):
        lo = v < -self.bound
        slope = torch.where(lo, d[..., 0], d[..., -1])
        edge = torch.where(lo, torch.full_like(v, -self.bound), torch.full_like(v, self.bound))
        out = edge + (v - edge) / slope if sign_inverse else edge + slope * (v - edge)
        return out, torch.log(slope)

    def forward(self, x, p):
        xs, ys, d = self._geometry(p)
        inside = self._inside(x)
        xc = x.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._parts(_bin(xc, xs), xs, ys, d)
        value, deriv = self._eval(((xc - x0) / w).clamp(0, 1), w, h, d0, d1)
        tail, tail_ld = self._tails(x, d, sign_inverse=False)
        return torch.where(inside, y0 + value, tail), torch.where(inside, torch.log(deriv), tail_ld)

    def inverse(self, y, p):
        xs, ys, d = self._geometry(p)
        inside = self._inside(y)
        yc = y.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._parts(_bin(yc, ys), xs, ys, d)
        target = yc - y0

        def fn(t):
            value, deriv = self._eval(t, w, h, d0, d1)
            return value, deriv * w

        flat = [v.reshape(-1) for v in (w, h, d0, d1)]

        def some(t, idx):
            wi, hi, d0i, d1i = (v.index_select(0, idx) for v in flat)
            value, deriv = self._eval(t, wi, hi, d0i, d1i)
            return value, deriv * wi

        t0 = (target / h).clamp(0, 1)
        t = solve_increasing(some, target, x0=t0, lo=torch.zeros_like(yc), hi=torch.ones_like(yc))
        t = attach_root_gradient(fn, t, target)
        _, deriv = self._eval(t, w, h, d0, d1)
        tail, tail_ld = self._tails(y, d, sign_inverse=True)
        return torch.where(inside, x0 + t * w, tail), torch.where(inside, -torch.log(deriv), -tail_ld)


SPLINES = {"rq": RQSpline, "cubic": CubicSpline}
