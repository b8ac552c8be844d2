"""Autoregressive flow layers: ``autoregressive affine | dsf | umnn | sos | rq_spline | cubic_spline``.

Each transforms dimension ``i`` by a scalar monotone *transformer* whose parameters a
``made`` net computes from the dimensions before ``i`` in the layer's order:

- ``affine`` (MAF; ``direction=inverse`` is IAF): ``y = x exp(s) + t``, ``|s| < clamp``;
- ``dsf(hidden=H)`` (NAF): ``y = logit(sum_h w_h sigmoid(a_h x + b_h))``, ``a > 0``, ``w`` a softmax;
- ``umnn(integrand=net, steps=N, embedding=E)``: ``y = b + int_0^x g(t, e) dt``, ``g > 0``, by
  Clenshaw-Curtis quadrature on ``N + 1`` nodes; the log-det is ``log g(x, e)``;
- ``sos(polynomials=K, degree=r)``: ``y = c + int_0^x (eps + sum_k p_k(t)^2) dt``, exact;
- ``rq_spline(bins, bound)`` / ``cubic_spline(bins, bound)``: the splines of
  :mod:`flowdsl.layers.splines`.

``direction=forward`` (default, MAF) reads the layer's input: the density is one pass and
sampling takes one pass per generation of the dependency DAG; ``direction=inverse`` (IAF)
reads the output instead, so sampling is one pass. The checker proves causality (the MADE
mask product is strictly triangular in the order), records the Jacobian pattern, and warns
when a hidden layer is too narrow.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> made = Symbol("made", args=((16,),))
    >>> layer = LAYERS.bind(Symbol("autoregressive affine", kwargs=(("net", made), ("order", Symbol("reverse")))))
    >>> info = layer.infer(LayerContext(shape=(3,)))
    >>> info.params, info.meta["report"]
    (166, 'affine transformer; order reverse; density in one pass, sampling in 3 passes')
    >>> info.dependency.matrix().astype(int).tolist()
    [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
"""

from __future__ import annotations

from typing import ClassVar, Optional

import numpy as np
from pydantic import Field
from typing_extensions import Annotated

from flowdsl.layers import made_masks as made_math
from flowdsl.errors import SpecError
from flowdsl.layers.registry import NETS, Finding, Layer, LayerContext, LayerInfo, NonNegativeInt, PositiveInt, choice, register_layer, symbolic
from flowdsl.layers.structure import Dependency
from flowdsl.layers.made_net import MADE, OrderField, effective_order, made_structure, narrow_findings
from flowdsl.layers.nets import MLP, Net
from flowdsl.layers.splines import Bins, Bound, spline_params_per_dim, spline_summary

__all__ = [
    "AutoregressiveLayer", "AutoregressiveAffine", "AutoregressiveDSF", "AutoregressiveUMNN", "AutoregressiveSOS",
    "AutoregressiveRQSpline", "AutoregressiveCubicSpline", "SMOOTH_ACTIVATIONS",
]

NetField = symbolic(NETS, Net)
#: activations under which Clenshaw-Curtis quadrature converges geometrically
SMOOTH_ACTIVATIONS = ("tanh", "softplus", "silu", "gelu", "sigmoid")


class AutoregressiveLayer(Layer):
    """Shared rules: a ``made`` net, an order, a direction; subclasses set the transformer."""

    runtime: ClassVar[str] = "flowdsl.runtime.autoregressive_flows:build_autoregressive"
    transformer: ClassVar[str] = ""
    #: "analytic" or a description of the numerical inverse
    inverse_kind: ClassVar[str] = "analytic"
    net: NetField = MADE()
    order: Optional[OrderField] = None
    direction: choice("forward", "inverse") = "forward"

    @property
    def params_per_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_params(self, ctx: LayerContext) -> int:
        """Parameters outside the made net (UMNN's integrand)."""
        return 0

    def extra_meta(self) -> dict:
        return {}

    def made(self) -> MADE:
        if not isinstance(self.net, MADE):
            raise SpecError(f"{self.name} needs a masked conditioner, net=made([...]); net {self.net.name} would "
                            f"let each dimension read itself and later dimensions", arg="net",
                            hint="e.g. net=made([64, 64])")
        return self.net

    def infer(self, ctx: LayerContext) -> LayerInfo:
        net = self.made()
        if len(ctx.shape) != 1:
            raise SpecError(f"{self.name} takes vectors, but this layer sees a tensor of shape {list(ctx.shape)}")
        n, k = ctx.shape[0], self.params_per_dim
        net.validate_io((n,), (k * n,))
        s = made_structure(net, self.order, n, k, ctx.context_features)
        if s.complete:
            dep = Dependency.autoregressive(s.rank)
        else:
            # MAF: y_i reads x_i and every connected x_j; IAF: z_i reads z_j for every connected j, hence
            # x_j and all that z_j reads (the transitive closure). Every dim is transformed, even one that
            # reads no other (Dependency.explicit would guess "untransformed" for an identity row).
            pattern = s.connectivity | np.eye(n, dtype=bool) if self.direction == "forward" \
                else made_math.transitive_closure(s.connectivity)
            dep = Dependency("explicit", n, np.arange(n), np.ones(n, dtype=bool), pattern)
        order = effective_order(net, self.order).describe()
        one_pass, slow = ("density", "sampling") if self.direction == "forward" else ("sampling", "density")
        passes = s.passes
        report = (f"{self.transformer} transformer; order {order}; {one_pass} in one pass, {slow} in "
                  f"{passes} pass{'es' if passes != 1 else ''}")
        if self.inverse_kind != "analytic":
            report += f" ({self.inverse_kind})"
        meta = {
            "transformer": self.transformer, "order": order, "perm": tuple(int(v) for v in s.perm),
            "direction": self.direction, "one_pass": one_pass, "inverse_passes": passes,
            "generations": s.generations, "params_per_dim": k, "hidden": tuple(net.hidden),
            "connectivity_complete": s.complete, "inverse": self.inverse_kind,
            "reads_condition": ctx.context_features > 0, "report": report, **self.extra_meta(),
        }
        params = net.param_count((n,), (k * n,), ctx.context_features) + self.extra_params(ctx)
        return LayerInfo(out_shape=ctx.shape, params=params, logdet="exact", dependency=dep, meta=meta)

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        s = made_structure(self.made(), self.order, ctx.shape[0], self.params_per_dim, ctx.context_features)
        return narrow_findings(self.made(), s)


_NEWTON = "inverse by bracketed Newton to 8 eps"


@register_layer
class AutoregressiveAffine(AutoregressiveLayer):
    """``autoregressive affine(net=made([..]), order, direction, clamp=3)``: MAF, or IAF with ``direction=inverse``."""

    name: ClassVar[str] = "autoregressive affine"
    summary: ClassVar[str] = "affine autoregressive flow (MAF; IAF with direction=inverse)"
    transformer: ClassVar[str] = "affine"
    clamp: Annotated[float, Field(gt=0, le=20)] = 3.0

    @property
    def params_per_dim(self) -> int:
        return 2


@register_layer
class AutoregressiveDSF(AutoregressiveLayer):
    """``autoregressive dsf(net=made([..]), hidden=16)``: deep sigmoidal flow transformer (NAF)."""

    name: ClassVar[str] = "autoregressive dsf"
    summary: ClassVar[str] = "neural autoregressive flow, deep sigmoidal transformer (monotone by construction)"
    transformer: ClassVar[str] = "dsf"
    inverse_kind: ClassVar[str] = _NEWTON
    hidden: Annotated[int, Field(ge=1, le=4096)] = 16

    @property
    def params_per_dim(self) -> int:
        return 3 * self.hidden


@register_layer
class AutoregressiveUMNN(AutoregressiveLayer):
    """``autoregressive umnn(net=made([..]), integrand=mlp([..]), steps=32, embedding=8)``: UMNN transformer.

    The integrand net reads ``[t, e_i]`` (``e_i``: dimension i's embedding from the made net)
    and is made positive by a softplus; with its activation left unset it uses silu (smooth,
    so the quadrature converges geometrically, and cheaper than tanh).
    """

    name: ClassVar[str] = "autoregressive umnn"
    summary: ClassVar[str] = "unconstrained monotonic neural network transformer (integral of a positive net)"
    transformer: ClassVar[str] = "umnn"
    inverse_kind: ClassVar[str] = _NEWTON
    integrand: NetField = MLP(hidden=(32, 32))
    steps: Annotated[int, Field(ge=2, le=1024)] = 32
    embedding: PositiveInt = 8

    @property
    def params_per_dim(self) -> int:
        return self.embedding + 1

    def integrand_activation(self) -> str | None:
        act = getattr(self.integrand, "activation", None)
        if act is not None and "activation" not in self.integrand.model_fields_set:
            return "silu"
        return act

    def extra_params(self, ctx):
        io = ((1 + self.embedding,), (1,))
        try:
            self.integrand.validate_io(*io)
        except SpecError as err:
            raise SpecError(f"integrand: {err.message}", arg="integrand", hint=err.hint) from None
        return self.integrand.param_count(*io, 0)

    def extra_meta(self) -> dict:
        return {"steps": self.steps, "nodes": self.steps + 1, "embedding": self.embedding,
                "integrand_activation": self.integrand_activation()}

    def check(self, ctx, info):
        out = super().check(ctx, info)
        act = self.integrand_activation()
        if act is not None and act not in SMOOTH_ACTIVATIONS:
            out.append(Finding("warning", f"umnn integrand activation {act} is not smooth: Clenshaw-Curtis "
                                          f"quadrature with {self.steps} steps converges slowly, so the computed "
                                          f"transform and its log-det (the integrand) disagree; use one of "
                                          f"{', '.join(SMOOTH_ACTIVATIONS)}", arg="integrand"))
        return out


@register_layer
class AutoregressiveSOS(AutoregressiveLayer):
    """``autoregressive sos(net=made([..]), polynomials=4, degree=3)``: sum-of-squares polynomial transformer."""

    name: ClassVar[str] = "autoregressive sos"
    summary: ClassVar[str] = "sum-of-squares polynomial flow transformer (integral of a sum of squares)"
    transformer: ClassVar[str] = "sos"
    inverse_kind: ClassVar[str] = _NEWTON
    polynomials: Annotated[int, Field(ge=1, le=256)] = 4
    degree: Annotated[NonNegativeInt, Field(le=16)] = 3

    @property
    def params_per_dim(self) -> int:
        return self.polynomials * (self.degree + 1) + 1


@register_layer
class AutoregressiveRQSpline(AutoregressiveLayer):
    """``autoregressive rq_spline(bins=8, bound=3, net=made([..]))``: autoregressive neural spline flow."""

    name: ClassVar[str] = "autoregressive rq_spline"
    summary: ClassVar[str] = "rational-quadratic spline autoregressive flow (NSF), identity tails"
    transformer: ClassVar[str] = "rq_spline"
    bins: Bins = 8
    bound: Bound = 3.0

    @property
    def params_per_dim(self) -> int:
        return spline_params_per_dim("rq", self.bins)

    def extra_meta(self) -> dict:
        return {"bins": self.bins, "bound": self.bound, "spline": spline_summary("rq", self.bins, self.bound)}


@register_layer
class AutoregressiveCubicSpline(AutoregressiveLayer):
    """``autoregressive cubic_spline(bins=8, bound=3, net=made([..]))``: autoregressive cubic spline flow."""

    name: ClassVar[str] = "autoregressive cubic_spline"
    summary: ClassVar[str] = "monotone cubic spline autoregressive flow, linear tails"
    transformer: ClassVar[str] = "cubic_spline"
    inverse_kind: ClassVar[str] = "inverse by bracketed Newton in the bin to 8 eps"
    bins: Bins = 8
    bound: Bound = 3.0

    @property
    def params_per_dim(self) -> int:
        return spline_params_per_dim("cubic", self.bins)

    def extra_meta(self) -> dict:
        return {"bins": self.bins, "bound": self.bound, "spline": spline_summary("cubic", self.bins, self.bound)}
