"""Residual flows: ``residual(net=lipschitz_mlp([..], coeff=c), logdet=...)`` (i-ResNet, Residual Flows).

``y = x + g(x)`` is invertible when ``Lip(g) < 1`` (Behrmann et al. 2019). The checker proves
that bound from the declared parts: ``lipschitz_mlp`` normalises each linear map to spectral
norm ``<= coeff`` (power iteration), so with 1-Lipschitz activations
``Lip(g) <= coeff ** (layers)``, which is ``< 1`` exactly when ``coeff < 1``. In a conditional
model the condition is an extra input of ``g`` whose weights are not normalised: the bound is
needed in ``x`` only (``y = x + g(x, c)`` is then invertible for every fixed ``c``). A net
without a bound, ``coeff >= 1`` or an activation steeper than 1 (``swish``, ``gelu``) is
refused, positioned at the offending argument.

The log-det ``log det(I + J_g) = sum_k (-1)^(k+1) tr(J_g^k) / k`` is computed by

- ``power_series(terms=n)``: the series truncated after ``n`` terms, traces by Hutchinson
  (biased: the truncation);
- ``russian_roulette(p=0.5, exact_terms=2)``: ``exact_terms`` terms, then a geometric(p)
  number more, each reweighted by its survival probability (unbiased; Chen et al. 2019),
  gradients by the Neumann series;
- ``exact``: the brute-force Jacobian (also what ``flowdsl.exact_logdet()`` switches to).

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[2]\\n"
    ...                    "  residual(net=lipschitz_mlp([8], coeff=0.9), logdet=power_series(terms=4))\\n}\\n")
    >>> node = a.models["f"].layers[0]
    >>> node.params, node.logdet, round(node.meta["lipschitz"], 2)
    (43, 'estimated, biased', 0.81)
    >>> from typing import get_args
    >>> get_args(LipschitzActivationName) == tuple(ACTIVATION_LIPSCHITZ)
    True
"""

from __future__ import annotations

from math import prod
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field

from flowdsl.errors import SpecError
from flowdsl.language.values import Symbol
from flowdsl.layers.nets import Hidden, Net, _linear
from flowdsl.layers.registry import (
    NETS,
    Family,
    Layer,
    LayerContext,
    LayerInfo,
    LogdetKind,
    NonNegativeInt,
    PositiveInt,
    Spec,
    Word,
)
from flowdsl.layers.structure import Dependency

__all__ = [
    "LipschitzMLP", "LOGDETS", "LogdetEstimator", "PowerSeries", "RussianRoulette", "ExactLogdet", "ResidualSpec",
    "ACTIVATION_LIPSCHITZ", "prove_contraction",
]

#: the Lipschitz constant of each activation lipschitz_mlp offers (swish, silu and gelu exceed 1)
ACTIVATION_LIPSCHITZ = {
    "lipswish": 1.0, "relu": 1.0, "elu": 1.0, "tanh": 1.0, "leaky_relu": 1.0, "softplus": 1.0, "sigmoid": 0.25,
    "swish": 1.0998, "silu": 1.0998, "gelu": 1.1289,
}
#: the same names, in the same order, as the type of lipschitz_mlp's ``activation`` argument
LipschitzActivationName = Literal[
    "lipswish", "relu", "elu", "tanh", "leaky_relu", "softplus", "sigmoid", "swish", "silu", "gelu",
]
ONE_LIPSCHITZ = [a for a, lip in ACTIVATION_LIPSCHITZ.items() if lip <= 1]
#: the Banach fixed-point inverse stops when its error bound is below this (float64; float32: 1e-6)
INVERSE_TOL = 1e-12


class LipschitzMLP(Net):
    """``lipschitz_mlp([h1, ...], coeff=0.97, activation=lipswish)``: an MLP whose linear maps are
    spectrally normalised (power iteration) to norm ``<= coeff``; ``lipswish`` is swish(x) / 1.1."""

    name: ClassVar[str] = "lipschitz_mlp"
    positional: ClassVar[tuple[str, ...]] = ("hidden", "coeff")
    runtime: ClassVar[str] = "flowdsl.runtime.residual:build_lipschitz_mlp"
    hidden: Hidden = (64, 64)
    coeff: Annotated[float, Field(gt=0, le=100)] = 0.97
    activation: Annotated[LipschitzActivationName, Word] = "lipswish"

    def param_count(self, in_shape, out_shape, context=0):
        sizes = [prod(in_shape) + context, *self.hidden, prod(out_shape)]
        betas = len(self.hidden) if self.activation == "lipswish" else 0  # one learnable beta per activation
        return sum(_linear(a, b) for a, b in zip(sizes, sizes[1:])) + betas

    @property
    def linear_maps(self) -> int:
        return len(self.hidden) + 1

    def lipschitz(self) -> float:
        """An upper bound on Lip(net) in its input: coeff per linear map, times each activation's."""
        return self.coeff ** self.linear_maps * ACTIVATION_LIPSCHITZ[self.activation] ** len(self.hidden)


# ----------------------------------------------------------------------------- log-det estimators
LOGDETS = Family("log-det estimator")


class LogdetEstimator(Spec):
    #: the LayerInfo.logdet kind
    kind: ClassVar[LogdetKind] = "exact"

    def text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@LOGDETS.register
class PowerSeries(LogdetEstimator):
    """``power_series(terms=8)``: the log-det series truncated after ``terms`` terms, Hutchinson traces."""

    name: ClassVar[str] = "power_series"
    kind: ClassVar[LogdetKind] = "estimated, biased"
    terms: Annotated[PositiveInt, Field(le=200)] = 8

    def text(self):
        return f"power series, {self.terms} terms, Hutchinson traces (biased by truncation)"


@LOGDETS.register
class RussianRoulette(LogdetEstimator):
    """``russian_roulette(p=0.5, exact_terms=2)``: ``exact_terms`` terms plus a geometric(p) number
    more, reweighted by survival probability: unbiased (Chen et al. 2019)."""

    name: ClassVar[str] = "russian_roulette"
    positional: ClassVar[tuple[str, ...]] = ("p", "exact_terms")
    kind: ClassVar[LogdetKind] = "estimated, unbiased"
    # p >= 1e-3: at most 999 extra terms expected (a smaller p would be a resource bomb: ~1/p terms)
    p: Annotated[float, Field(ge=1e-3, lt=1)] = 0.5
    exact_terms: Annotated[NonNegativeInt, Field(le=200)] = 2

    def text(self):
        extra = (1 - self.p) / self.p
        return (f"Russian roulette, {self.exact_terms} + geometric(p={self.p:g}) terms "
                f"({self.exact_terms + extra:.3g} on average), Hutchinson traces, Neumann-series gradient (unbiased)")


@LOGDETS.register
class ExactLogdet(LogdetEstimator):
    """``exact``: log det(I + J_g) from the brute-force Jacobian (D backward passes)."""

    name: ClassVar[str] = "exact"
    kind: ClassVar[LogdetKind] = "exact"

    def text(self):
        return "exact (brute-force Jacobian)"


# ----------------------------------------------------------------------------- the contraction proof
def _arg_pos(sym: Symbol, cls, key: str):
    for (k, _), p in zip(sym.kwargs, sym.kwarg_pos):
        if k == key:
            return p
    positional = list(cls.positional if cls.positional is not None else cls.model_fields)
    if key in positional and positional.index(key) < len(sym.arg_pos):
        return sym.arg_pos[positional.index(key)]
    return sym.pos if sym.pos.line else None


def prove_contraction(net: Net, sym: Symbol | None = None) -> float:
    """Lip(g) of a residual branch, proved ``< 1`` from its declared parts; SpecError naming the culprit."""
    if not isinstance(net, LipschitzMLP):
        raise SpecError(f"residual needs Lip(g) < 1, but {net.name} declares no Lipschitz bound",
                        pos=sym.pos if sym is not None and sym.pos.line else None, arg="net",
                        hint="use net=lipschitz_mlp([64, 64], coeff=0.97)")
    where = (lambda key: _arg_pos(sym, LipschitzMLP, key)) if sym is not None else (lambda key: None)
    if net.coeff >= 1:
        raise SpecError(f"residual needs Lip(g) < 1, but lipschitz_mlp has coeff={net.coeff:g}: each linear map is "
                        f"normalised to spectral norm <= coeff, so coeff must be < 1", pos=where("coeff"), arg="net",
                        hint="use coeff=0.97 (any value below 1)")
    lip = ACTIVATION_LIPSCHITZ[net.activation]
    if lip > 1:
        raise SpecError(f"residual needs Lip(g) < 1, but activation {net.activation} of lipschitz_mlp is not "
                        f"1-Lipschitz (its slope reaches {lip:g})", pos=where("activation"), arg="net",
                        hint="use lipswish (swish / 1.1), elu, tanh or relu")
    return net.lipschitz()


def _contractive_net(value):
    net = NETS.coerce(value)
    prove_contraction(net, value if isinstance(value, Symbol) else None)
    return net


class ResidualSpec(Layer):
    """``residual(net=lipschitz_mlp([..], coeff=0.97), logdet=russian_roulette(p=0.5))``: y = x + g(x), Lip(g) < 1."""

    name: ClassVar[str] = "residual"
    positional: ClassVar[tuple[str, ...]] = ("net", "logdet")
    runtime: ClassVar[str] = "flowdsl.runtime.residual:Residual.build"
    summary: ClassVar[str] = "invertible residual block (i-ResNet / Residual Flows): y = x + g(x), Lip(g) < 1 proved"
    net: Annotated[Net, BeforeValidator(_contractive_net)] = LipschitzMLP()
    logdet: Annotated[LogdetEstimator, BeforeValidator(LOGDETS.coerce)] = RussianRoulette()

    def infer(self, ctx: LayerContext) -> LayerInfo:
        net = self.net
        lip = prove_contraction(net)
        assert isinstance(net, LipschitzMLP)  # prove_contraction refuses any other net
        net.validate_io(ctx.shape, ctx.shape)
        params = net.param_count(ctx.shape, ctx.shape, ctx.context_features)
        acts = f", {net.activation} {ACTIVATION_LIPSCHITZ[net.activation]:g}-Lipschitz" if net.hidden else ""
        in_x = " in x; the condition's weights free" if ctx.context_features else ""
        report = (f"Lip(g) <= {net.coeff:g}^{net.linear_maps} = {lip:.3g}{in_x} (spectral norm <= {net.coeff:g} per "
                  f"linear map{acts}); log-det {self.logdet.text()}; inverse by Banach fixed-point iteration "
                  f"(contraction {lip:.3g}, error bound {INVERSE_TOL:g})")
        return LayerInfo(
            ctx.shape, params=params, logdet=self.logdet.kind, dependency=Dependency.dense(ctx.size),
            meta={"features": ctx.size, "lipschitz": lip, "net_in": ctx.shape, "net_out": ctx.shape},
            reads_condition=ctx.context_features > 0, report=report, roundtrip_tol=1e3 * INVERSE_TOL,
        )

