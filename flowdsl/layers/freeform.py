"""Free-form flows: ``planar``, ``radial`` (Rezende & Mohamed 2015) and ``sylvester`` (van den Berg et al. 2018).

Each layer acts on the flattened input. Invertibility is guaranteed by the parameterisation,
so any parameter values give a bijection:

- planar ``y = x + u_hat tanh(w.x + b)`` with ``u_hat`` adjusted so that ``w.u_hat > -1``;
- radial ``y = x + beta (x - x0) / (alpha + |x - x0|)`` with ``alpha > 0`` and ``beta > -alpha``;
- sylvester ``y = x + Q R tanh(R~ Q^T x + b)``: ``Q`` has ``rank`` orthonormal columns
  (``kind=orthogonal``: iterative orthogonalisation; ``householder``: ``rank`` reflections;
  ``triangular``: a permutation), ``R`` and ``R~`` are upper triangular with
  ``R_ii R~_ii = tanh(.) tanh(.) in (-1, 1)``, which proves ``det(I + diag(h') R~ R) > 0``.

In a conditional model each reads the (flattened) condition ``c`` through a small hypernetwork:
its parameters are the unconditional ones plus a linear map of ``c`` (planar ``u, w, b``; radial
``x0`` and the raw ``alpha, beta``; Sylvester the raw ``R, R~`` and ``b``, ``Q`` stays shared),
zero-initialised, so a fresh layer is the unconditional one. The constraints above are applied
after the map, so the layer is a bijection of ``x`` for every fixed context; its log-det is the
Jacobian in ``x`` only.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> layer = LAYERS.bind(Symbol("sylvester", kwargs=(("kind", Symbol("householder")), ("rank", 2))))
    >>> info = layer.infer(LayerContext(shape=(4,)))
    >>> info.params, info.logdet
    (16, 'exact')
    >>> PlanarSpec().infer(LayerContext(shape=(3,))).params
    7
    >>> PlanarSpec().infer(LayerContext(shape=(3,), context_features=2)).params  # + (2 * 3 + 1) * 2
    21
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np

from flowdsl.errors import SpecError
from flowdsl.layers.registry import Layer, LayerContext, LayerInfo, PositiveInt, Word
from flowdsl.layers.structure import Dependency

__all__ = ["PlanarSpec", "RadialSpec", "SylvesterSpec", "sylvester_order"]

#: inverse root finds stop when the bracket / step is below this (float64; float32 uses 1e-6)
INVERSE_TOL = 1e-12


def _hyper(ctx: LayerContext, conditioned: int) -> tuple[int, dict]:
    """``(params, meta)`` of the hypernetwork mapping the condition to ``conditioned`` parameters (none when
    the layer reads no condition)."""
    f = ctx.context_features
    return conditioned * f, ({"hyper": conditioned} if f else {})


def _shape(shape) -> str:
    kind = {1: "vector", 3: "image"}.get(len(shape), "tensor")
    return f"{kind}[{', '.join(map(str, shape))}]"


class PlanarSpec(Layer):
    """``planar``: y = x + u_hat tanh(w.x + b); invertible since w.u_hat > -1 by construction."""

    name: ClassVar[str] = "planar"
    runtime: ClassVar[str] = "flowdsl.runtime.freeform:Planar.build"
    summary: ClassVar[str] = "planar flow (Rezende & Mohamed 2015): y = x + u tanh(w.x + b), w.u > -1 enforced"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        d = ctx.size
        extra, hyper = _hyper(ctx, 2 * d + 1)
        return LayerInfo(
            ctx.shape, params=2 * d + 1 + extra, logdet="exact", dependency=Dependency.dense(d),
            meta={"features": d, **hyper}, roundtrip_tol=1e3 * INVERSE_TOL, reads_condition=bool(extra),
            report=("u, w, b = their own + a linear map of the condition; " if extra else "")
            + "tanh; u reparameterised so w.u > -1 (invertible); log-det exact; "
              f"inverse by a bracketed 1-D Newton root find along w (tolerance {INVERSE_TOL:g})",
        )


class RadialSpec(Layer):
    """``radial``: y = x + beta (x - x0) / (alpha + r), r = |x - x0|; beta > -alpha by construction."""

    name: ClassVar[str] = "radial"
    runtime: ClassVar[str] = "flowdsl.runtime.freeform:Radial.build"
    summary: ClassVar[str] = "radial flow (Rezende & Mohamed 2015): contraction/expansion around x0, beta > -alpha"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        d = ctx.size
        extra, hyper = _hyper(ctx, d + 2)
        return LayerInfo(
            ctx.shape, params=d + 2 + extra, logdet="exact", dependency=Dependency.dense(d),
            meta={"features": d, **hyper}, reads_condition=bool(extra),
            report=("x0, alpha, beta = their own + a linear map of the condition; " if extra else "")
            + "alpha > 0, beta > -alpha (invertible); log-det exact; inverse analytic (a quadratic in the radius)",
        )


def sylvester_order(order: str, index: int, size: int, rank: int) -> np.ndarray:
    """The coordinates a triangular Sylvester layer acts on, in its (upper-triangular) order."""
    if order == "alternate":
        order = "natural" if index % 2 == 0 else "reverse"
    perm = np.arange(size) if order == "natural" else np.arange(size)[::-1]
    return perm[:rank].copy()


class SylvesterSpec(Layer):
    """``sylvester(kind=orthogonal|householder|triangular, rank=M, order=alternate)``.

    y = x + Q R tanh(R~ Q^T x + b) with Q of M orthonormal columns; log-det
    sum_i log(1 + h'_i R~_ii R_ii). ``order`` (triangular only) picks the permutation Q:
    ``natural``, ``reverse`` or ``alternate`` (natural at even layer positions, reverse at odd).
    """

    name: ClassVar[str] = "sylvester"
    positional: ClassVar[tuple[str, ...]] = ("kind", "rank")
    runtime: ClassVar[str] = "flowdsl.runtime.freeform:Sylvester.build"
    summary: ClassVar[str] = "Sylvester flow (van den Berg et al. 2018): y = x + QR tanh(R~Q^T x + b)"
    kind: Annotated[Literal["orthogonal", "householder", "triangular"], Word] = "orthogonal"
    rank: PositiveInt | None = None
    order: Annotated[Literal["alternate", "natural", "reverse"], Word] = "alternate"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        d = ctx.size
        m = d if self.rank is None else self.rank
        if m > d:
            raise SpecError(f"sylvester rank {m} exceeds the dimension {d} of its input {_shape(ctx.shape)}: "
                            f"A = QR has rank at most {d}", arg="rank", hint=f"use rank <= {d}")
        if self.kind != "triangular" and self.order != "alternate":
            raise SpecError(f"argument 'order' of sylvester applies to kind=triangular only (this is kind={self.kind})",
                            arg="order")
        tri = m * (m + 1) // 2
        q_params = {"orthogonal": d * m, "householder": m * d, "triangular": 0}[self.kind]
        meta: dict[str, Any] = {"features": d, "rank": m}
        if self.kind == "triangular":
            coords = sylvester_order(self.order, ctx.position, d, m)
            meta["coords"] = tuple(int(c) for c in coords)
            if m == d:
                rank = np.empty(d, dtype=np.int64)
                rank[coords] = m - 1 - np.arange(m)  # output coords[i] reads coords[j], j >= i
                dependency = Dependency.autoregressive(rank)
            else:
                pattern = np.eye(d, dtype=bool)
                pattern[np.ix_(coords, coords)] = np.triu(np.ones((m, m), dtype=bool))
                moved = np.zeros(d, dtype=bool)
                moved[coords] = True  # even the last coordinate, whose row is diagonal, is transformed
                dependency = Dependency.explicit(pattern, transformed=moved)
            q_text = f"Q = permutation ({'natural' if coords[0] == 0 else 'reverse'} order)"
        else:
            dependency = Dependency.dense(d)
            q_text = ("Q by iterative (Bjorck) orthogonalisation" if self.kind == "orthogonal"
                      else f"Q from {m} Householder reflections")
        extra, hyper = _hyper(ctx, 2 * tri + m)
        report = (f"rank {m}; {q_text}; " + ("R, R~, b = their own + a linear map of the condition; " if extra else "")
                  + "R_ii R~_ii in (-1, 1) (invertible); log-det exact; "
                  f"inverse by back-substitution with bracketed 1-D root finds (tolerance {INVERSE_TOL:g})")
        return LayerInfo(ctx.shape, params=q_params + 2 * tri + m + extra, logdet="exact", dependency=dependency,
                         meta={**meta, **hyper}, report=report, roundtrip_tol=1e3 * INVERSE_TOL,
                         reads_condition=bool(extra))
