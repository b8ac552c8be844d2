"""Spline arguments and facts shared by the ``rq_spline`` and ``cubic_spline`` transformers.

Both transform each scalar by a monotone spline on ``[-bound, bound]`` whose knots and slopes
the structure's conditioner computes (the transformers are declared in
:mod:`flowdsl.layers.transformers`; ``coupling rq_spline(...)``, ``autoregressive
cubic_spline(...)`` and the other combinations are derived from them):

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
    >>> info.meta["net_out"], info.report
    ((22,), 'rational-quadratic spline, 4 bins on [-3, 3], identity tails; analytic inverse')
    >>> spline_params_per_dim("cubic", 4)
    13
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from flowdsl.layers.registry import _strict_int

__all__ = ["Bins", "Bound", "spline_params_per_dim", "spline_summary"]

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
