"""Spline couplings: ``coupling rq_spline(bins, bound, mask, net)`` and ``coupling cubic_spline(...)``.

Both transform each non-kept position by a monotone spline on ``[-bound, bound]`` whose knots
and slopes the conditioner net computes from the kept positions; the masks, the kept/
transformed split and the net's input/output shapes are those of every coupling
(:mod:`flowdsl.layers.coupling`).

- ``rq_spline``: rational-quadratic (Durkan et al. 2019, Neural Spline Flows), ``3 bins - 1``
  parameters per dimension, identity tails outside the interval, analytic inverse.
- ``cubic_spline``: monotone cubic Hermite (Durkan et al. 2019, Cubic-Spline Flows),
  ``3 bins + 1`` parameters per dimension (bin widths, heights and the ``bins + 1`` knot
  slopes, each slope kept inside the Fritsch-Carlson box ``(0, 3 min(adjacent secants))``),
  linear tails continuing the end slopes, inverse by a bracketed Newton search inside the bin.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> layer = LAYERS.bind(Symbol("coupling rq_spline", kwargs=(("bins", 4),)))
    >>> info = layer.infer(LayerContext(shape=(4,)))
    >>> info.meta["net_out"], info.meta["report"]
    ((22,), 'rational-quadratic spline, 4 bins on [-3, 3], identity tails; analytic inverse')
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pydantic import BeforeValidator, Field
from typing_extensions import Annotated

from flowdsl.layers.registry import LayerContext, LayerInfo, _strict_int, register_layer
from flowdsl.layers.coupling import Coupling

__all__ = ["Bins", "Bound", "spline_params_per_dim", "spline_summary", "RQSplineCoupling", "CubicSplineCoupling"]

#: number of spline bins (>= 1)
Bins = Annotated[int, BeforeValidator(_strict_int), Field(ge=1, le=4096)]
#: half-width of the spline's interval (> 0)
Bound = Annotated[float, Field(gt=0, le=1e6)]


def spline_params_per_dim(kind: str, bins: int) -> int:
    """Parameters per transformed dimension: rq ``3K - 1``, cubic ``3K + 1``."""
    return 3 * bins - 1 if kind == "rq" else 3 * bins + 1


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def spline_summary(kind: str, bins: int, bound: float) -> str:
    """One line for the report."""
    b = _num(bound)
    if kind == "rq":
        return f"rational-quadratic spline, {bins} bins on [-{b}, {b}], identity tails; analytic inverse"
    return (f"monotone cubic spline, {bins} bins on [-{b}, {b}], linear tails; "
            f"inverse by bracketed Newton in the bin to 8 eps")


class _SplineCoupling(Coupling):
    runtime: ClassVar[str] = "flowdsl.runtime.splines:build_spline_coupling"
    spline_kind: ClassVar[str] = "rq"
    bins: Bins = 8
    bound: Bound = 3.0

    @property
    def params_per_dim(self) -> int:  # type: ignore[override]
        return spline_params_per_dim(self.spline_kind, self.bins)

    def infer(self, ctx: LayerContext) -> LayerInfo:
        info = super().infer(ctx)
        meta = dict(info.meta, spline=self.spline_kind, bins=self.bins, bound=self.bound,
                    params_per_dim=self.params_per_dim, report=spline_summary(self.spline_kind, self.bins, self.bound))
        return dataclasses.replace(info, meta=meta)


@register_layer
class RQSplineCoupling(_SplineCoupling):
    """``coupling rq_spline(bins=8, bound=3, mask, net)``: rational-quadratic spline coupling (NSF)."""

    name: ClassVar[str] = "coupling rq_spline"
    summary: ClassVar[str] = "rational-quadratic spline coupling (Neural Spline Flow), identity tails"
    spline_kind: ClassVar[str] = "rq"


@register_layer
class CubicSplineCoupling(_SplineCoupling):
    """``coupling cubic_spline(bins=8, bound=3, mask, net)``: monotone cubic spline coupling."""

    name: ClassVar[str] = "coupling cubic_spline"
    summary: ClassVar[str] = "monotone cubic spline coupling (Cubic-Spline Flow), linear tails"
    spline_kind: ClassVar[str] = "cubic"
