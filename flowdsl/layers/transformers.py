"""The transformer family: the scalar monotone maps that coupling and autoregressive flows apply.

A *transformer* maps each transformed scalar ``x`` with its own parameter vector ``p`` (computed
by the structure's conditioner) to ``y = h(x; p)``, strictly increasing in ``x``. Each member is
declared once here, torch-free: its arguments (pydantic fields), ``params_per_dim``, its log-det
kind, why it is monotone, how it is inverted, its report line, extra parameters and findings,
and its ONE torch module (``runtime``, resolved only by the compiler). The structures take the
transformer as a value: :func:`combine` derives ``coupling T(...)``
(:mod:`flowdsl.layers.coupling`) and ``autoregressive T(...)``
(:mod:`flowdsl.layers.autoregressive_flows`) for every member of :data:`TRANSFORMERS`.

Example:
    >>> [t.name for t in TRANSFORMERS]
    ['affine', 'additive', 'rq_spline', 'cubic_spline', 'dsf', 'umnn', 'sos']
    >>> t = RQSplineSpec(bins=4)
    >>> t.params_per_dim, t.logdet, t.inverse_kind
    (11, 'exact', 'analytic')
    >>> t.report()
    'rational-quadratic spline, 4 bins on [-3, 3], identity tails; analytic inverse'
    >>> AdditiveSpec().logdet, UMNNSpec().extra_params()
    ('zero', 1409)
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar, cast

from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.nets import MLP, Net, NetField
from flowdsl.layers.registry import Finding, Layer, LogdetKind, NonNegativeInt, PositiveInt, Spec
from flowdsl.layers.splines import Bins, Bound, spline_params_per_dim, spline_summary

__all__ = [
    "Transformer", "AffineSpec", "AdditiveSpec", "RQSplineSpec", "CubicSplineSpec", "DSFSpec", "UMNNSpec", "SOSSpec",
    "TRANSFORMERS", "SMOOTH_ACTIVATIONS", "NEWTON", "TransformerLayer", "combine",
]

#: activations under which Clenshaw-Curtis quadrature converges geometrically
SMOOTH_ACTIVATIONS = ("tanh", "softplus", "silu", "gelu", "sigmoid")
#: the numerical inverse of the transformers without a closed form
NEWTON = "inverse by bracketed Newton to 8 eps"


class Transformer(Spec):
    """Base of the family. A member sets the class variables and ``params_per_dim``."""

    #: log|dh/dx| of the whole layer: "exact", or "zero" (volume preserving)
    logdet: ClassVar[LogdetKind] = "exact"
    #: one line: why h is strictly increasing in x (hence invertible)
    monotone: ClassVar[str] = ""
    #: "analytic", or a description of the numerical inverse
    inverse_kind: ClassVar[str] = "analytic"
    #: ``"module:Class"`` of the torch module (``Class.from_spec(spec)``; imported only by the compiler)
    runtime: ClassVar[str] = ""
    #: what it is, for the layer reference
    summary: ClassVar[str] = ""
    #: structure ("coupling", "autoregressive") -> the summary of a combination known under its own name
    known_as: ClassVar[Mapping[str, str]] = {}
    #: stem of the derived classes' names: ``AffineCoupling``, ``AutoregressiveAffine``
    stem: ClassVar[str] = ""

    @property
    def params_per_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def report(self) -> str:
        """The transformer's part of the compile report ("" when there is nothing beyond the name)."""
        return ""

    def extra_params(self) -> int:
        """Parameters of the transformer's own nets (UMNN's integrand); SpecError if they cannot be built."""
        return 0

    def findings(self) -> list[Finding]:
        """Warnings and notes about the transformer's arguments."""
        return []


class AffineSpec(Transformer):
    """``affine(clamp=3)``: ``y = x exp(s) + t`` with ``s = clamp tanh(raw / clamp)``; parameters ``[t, raw]``."""

    name: ClassVar[str] = "affine"
    stem: ClassVar[str] = "Affine"
    monotone: ClassVar[str] = "slope exp(s) > 0, s bounded by the clamp"
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:Affine"
    summary: ClassVar[str] = "affine transformer: y = x * exp(s) + t, s soft-clamped"
    known_as: ClassVar[Mapping[str, str]] = {
        "coupling": "affine coupling (RealNVP/Glow): y = x * exp(s) + t, s soft-clamped",
        "autoregressive": "affine autoregressive flow (MAF; IAF with direction=inverse)",
    }
    clamp: Annotated[float, Field(gt=0, le=20)] = 3.0

    @property
    def params_per_dim(self) -> int:
        return 2


class AdditiveSpec(Transformer):
    """``additive``: ``y = x + t``; volume preserving."""

    name: ClassVar[str] = "additive"
    stem: ClassVar[str] = "Additive"
    logdet: ClassVar[LogdetKind] = "zero"
    monotone: ClassVar[str] = "slope 1"
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:Additive"
    summary: ClassVar[str] = "additive transformer: y = x + t, log-det 0"
    known_as: ClassVar[Mapping[str, str]] = {
        "coupling": "additive coupling (NICE): y = x + t(x_kept) on the transformed part",
    }

    @property
    def params_per_dim(self) -> int:
        return 1


class _SplineSpec(Transformer):
    kind: ClassVar[str] = "rq"
    bins: Bins = 8
    bound: Bound = 3.0

    @property
    def params_per_dim(self) -> int:
        return spline_params_per_dim(self.kind, self.bins)

    def report(self) -> str:
        return spline_summary(self.kind, self.bins, self.bound)


class RQSplineSpec(_SplineSpec):
    """``rq_spline(bins=8, bound=3)``: rational-quadratic spline on [-bound, bound], identity tails (NSF)."""

    name: ClassVar[str] = "rq_spline"
    stem: ClassVar[str] = "RQSpline"
    monotone: ClassVar[str] = "positive bin widths, heights and knot slopes: each rational-quadratic piece increases"
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:RQSpline"
    summary: ClassVar[str] = "rational-quadratic spline transformer, identity tails"
    known_as: ClassVar[Mapping[str, str]] = {
        "coupling": "rational-quadratic spline coupling (Neural Spline Flow), identity tails",
        "autoregressive": "rational-quadratic spline autoregressive flow (NSF), identity tails",
    }


class CubicSplineSpec(_SplineSpec):
    """``cubic_spline(bins=8, bound=3)``: monotone cubic Hermite spline, linear tails."""

    name: ClassVar[str] = "cubic_spline"
    stem: ClassVar[str] = "CubicSpline"
    kind: ClassVar[str] = "cubic"
    monotone: ClassVar[str] = "knot slopes inside the Fritsch-Carlson box (0, 3 min(adjacent secants))"
    inverse_kind: ClassVar[str] = "inverse by bracketed Newton in the bin to 8 eps"
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:CubicSpline"
    summary: ClassVar[str] = "monotone cubic spline transformer, linear tails"
    known_as: ClassVar[Mapping[str, str]] = {
        "coupling": "monotone cubic spline coupling (Cubic-Spline Flow), linear tails",
        "autoregressive": "monotone cubic spline autoregressive flow, linear tails",
    }


class DSFSpec(Transformer):
    """``dsf(hidden=16)``: deep sigmoidal flow, ``logit(sum_h w_h sigmoid(a_h x + b_h))`` (NAF)."""

    name: ClassVar[str] = "dsf"
    stem: ClassVar[str] = "DSF"
    monotone: ClassVar[str] = "a_h > 0 and softmax weights: a positive mix of increasing sigmoids, through logit"
    inverse_kind: ClassVar[str] = NEWTON
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:DSF"
    summary: ClassVar[str] = "deep sigmoidal transformer (NAF), monotone by construction"
    known_as: ClassVar[Mapping[str, str]] = {
        "autoregressive": "neural autoregressive flow, deep sigmoidal transformer (monotone by construction)",
    }
    hidden: Annotated[int, Field(ge=1, le=4096)] = 16

    @property
    def params_per_dim(self) -> int:
        return 3 * self.hidden

    def report(self) -> str:
        return f"deep sigmoidal flow, {self.hidden} sigmoids; {self.inverse_kind}"


class UMNNSpec(Transformer):
    """``umnn(integrand=mlp([32, 32]), steps=32, embedding=8)``: ``y = b + int_0^x g(t, e) dt``, g > 0.

    The integrand net reads ``[t, e_i]`` (``e_i``: dimension i's embedding from the conditioner)
    and is made positive by a softplus; with its activation left unset it uses silu (smooth,
    so the quadrature converges geometrically, and cheaper than tanh).
    """

    name: ClassVar[str] = "umnn"
    stem: ClassVar[str] = "UMNN"
    monotone: ClassVar[str] = "the integral of a positive function (softplus of the integrand net, plus 1e-4)"
    inverse_kind: ClassVar[str] = NEWTON
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:UMNN"
    summary: ClassVar[str] = "unconstrained monotonic neural network transformer (integral of a positive net)"
    known_as: ClassVar[Mapping[str, str]] = {"autoregressive": summary}
    integrand: NetField = MLP(hidden=(32, 32))
    steps: Annotated[int, Field(ge=2, le=1024)] = 32
    embedding: PositiveInt = 8

    @property
    def params_per_dim(self) -> int:
        return self.embedding + 1

    @property
    def integrand_io(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (1 + self.embedding,), (1,)

    def integrand_activation(self) -> str | None:
        act = getattr(self.integrand, "activation", None)
        if act is not None and "activation" not in self.integrand.model_fields_set:
            return "silu"
        return act

    def integrand_net(self) -> Net:
        """The integrand's net spec as built (silu when its activation was left unset)."""
        act = self.integrand_activation()
        if act is not None and getattr(self.integrand, "activation", act) != act:
            return self.integrand.model_copy(update={"activation": act})
        return self.integrand

    def report(self) -> str:
        return f"integral of a positive net, {self.steps} Clenshaw-Curtis intervals; {self.inverse_kind}"

    def extra_params(self) -> int:
        try:
            self.integrand.validate_io(*self.integrand_io)
        except SpecError as err:
            raise SpecError(f"integrand: {err.message}", arg="integrand", hint=err.hint) from None
        return self.integrand.param_count(*self.integrand_io, 0)

    def findings(self) -> list[Finding]:
        act = self.integrand_activation()
        if act is None or act in SMOOTH_ACTIVATIONS:
            return []
        return [Finding("warning", f"umnn integrand activation {act} is not smooth: Clenshaw-Curtis quadrature "
                                   f"with {self.steps} steps converges slowly, so the computed transform and its "
                                   f"log-det (the integrand) disagree; use one of {', '.join(SMOOTH_ACTIVATIONS)}",
                        arg="integrand")]


class SOSSpec(Transformer):
    """``sos(polynomials=4, degree=3)``: ``y = c + int_0^x (1e-3 + sum_k p_k(t)^2) dt``."""

    name: ClassVar[str] = "sos"
    stem: ClassVar[str] = "SOS"
    monotone: ClassVar[str] = "the integral of a sum of squares plus 1e-3 > 0"
    inverse_kind: ClassVar[str] = NEWTON
    runtime: ClassVar[str] = "flowdsl.runtime.transformers:SOS"
    summary: ClassVar[str] = "sum-of-squares polynomial flow transformer (integral of a sum of squares)"
    known_as: ClassVar[Mapping[str, str]] = {"autoregressive": summary}
    polynomials: Annotated[int, Field(ge=1, le=256)] = 4
    degree: Annotated[NonNegativeInt, Field(le=16)] = 3

    @property
    def params_per_dim(self) -> int:
        return self.polynomials * (self.degree + 1) + 1

    def report(self) -> str:
        return f"sum of {self.polynomials} squared polynomials of degree {self.degree}; {self.inverse_kind}"


#: every member, in the order the layer reference lists them
TRANSFORMERS: tuple[type[Transformer], ...] = (
    AffineSpec, AdditiveSpec, RQSplineSpec, CubicSplineSpec, DSFSpec, UMNNSpec, SOSSpec,
)


class TransformerLayer(Layer):
    """Base of a structure generic over the transformer (coupling, autoregressive flow), for :func:`combine`."""

    #: the transformer of a derived layer (set by :func:`combine`)
    transformer_spec: ClassVar[type[Transformer]] = AffineSpec
    #: what the derived layers' summaries call the structure
    structure_title: ClassVar[str] = ""

    @property
    def transformer(self) -> Transformer:
        """The transformer value: this layer's transformer arguments bound to ``transformer_spec``."""
        spec = self.transformer_spec
        return spec.model_validate({key: getattr(self, key) for key in spec.model_fields})

    @property
    def params_per_dim(self) -> int:
        return self.transformer.params_per_dim


S = TypeVar("S", bound=TransformerLayer)


def combine(structure: type[S], transformer: type[Transformer], *, word: str, class_name: str,
            module: str) -> type[S]:
    """The layer class ``{word} {transformer.name}``: ``structure``'s fields, then the transformer's.

    ``structure`` declares ``transformer_spec`` and ``structure_title`` class variables; the derived
    class sets the first, its name, its summary (the transformer's ``known_as[word]``, else one made
    of ``structure_title`` and the transformer's summary) and a docstring.
    """
    namespace: dict[str, Any] = {
        "__module__": module, "__qualname__": class_name, "__annotations__": {},
        "__doc__": f"``{word} {transformer.name}``, transformer {(transformer.__doc__ or '').strip().splitlines()[0]}",
        "name": f"{word} {transformer.name}", "transformer_spec": transformer,
        "summary": transformer.known_as.get(word, f"{structure.structure_title} with the {transformer.summary}"),
    }
    for key, info in transformer.model_fields.items():
        if key in structure.model_fields:
            raise TypeError(f"transformer {transformer.name} argument '{key}' clashes with {structure.__name__}'s")
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        namespace["__annotations__"][key] = annotation
        namespace[key] = info.default
    # new_class uses the bases' metaclass (pydantic's), like ``type(structure)(...)``, but is typed
    return cast("type[S]", types.new_class(class_name, (structure,), exec_body=lambda ns: ns.update(namespace)))
