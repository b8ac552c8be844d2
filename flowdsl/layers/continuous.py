"""Continuous normalizing flows: ``continuous(net=mlp([..]), solver=dopri5, trace=hutchinson, time=1.0)`` (FFJORD).

``dz/dt = f(z, t)`` is integrated from ``t = 0`` (the data) to ``t = time`` (the latent) by
torchdiffeq; ``log|det dz(T)/dx| = integral_0^T tr(df/dz) dt`` is integrated alongside. The
dynamics net reads ``(z, t)`` (and the encoded condition ``c``, flattened, if the model has one: the
dynamics ``f(z, t, c)``, a constant of the integration). The map is invertible for any dynamics
that is Lipschitz in z (Picard-Lindelof), so for every fixed condition; the inverse integrates
backwards, and the log-det is the trace of the Jacobian in z only.

- ``solver``: ``dopri5`` (adaptive; ``rtol``, ``atol``), ``rk4`` or ``euler`` (fixed grid; ``steps``);
  default tolerances: rtol 1e-9, atol 1e-10 in float64 (1e-5, 1e-6 in float32);
- ``trace``: ``hutchinson`` (one Rademacher vector per integration: unbiased) or ``exact``
  (D backward passes per evaluation; also under :func:`flowdsl.exact_logdet`).

Example:
    >>> from flowdsl.layers.registry import LayerContext
    >>> info = ContinuousSpec(solver="rk4", steps=10).infer(LayerContext(shape=(2,)))
    >>> info.params, info.logdet
    (4546, 'estimated, unbiased')
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationError

from flowdsl.errors import SpecError
from flowdsl.layers.nets import MLP, Net, NetField
from flowdsl.layers.registry import Finding, Layer, LayerContext, LayerInfo, PositiveInt, Word
from flowdsl.layers.structure import Dependency

__all__ = ["ContinuousSpec", "DEFAULT_TOLERANCES", "DEFAULT_STEPS", "SMOOTH_ACTIVATION", "dynamics_net"]

#: (rtol, atol) of the adaptive solver when the spec gives none, by dtype
DEFAULT_TOLERANCES = {"float64": (1e-9, 1e-10), "float32": (1e-5, 1e-6)}
#: steps of a fixed-grid solver over [0, time] when the spec gives none
DEFAULT_STEPS = 32

#: the activation a dynamics net gets when the spec names none (relu's kinks stall adaptive solvers)
SMOOTH_ACTIVATION = "tanh"
KINKED = ("relu", "leaky_relu")

Tolerance = Annotated[float, Field(gt=0, lt=1)] | None


class ContinuousSpec(Layer):
    """``continuous(net, solver=dopri5, trace=hutchinson, time=1.0, rtol, atol, steps)``: FFJORD."""

    name: ClassVar[str] = "continuous"
    positional: ClassVar[tuple[str, ...]] = ("net",)
    runtime: ClassVar[str] = "flowdsl.runtime.continuous:Continuous.build"
    summary: ClassVar[str] = ("continuous normalizing flow (FFJORD): ODE dz/dt = f(z, t), "
                              "log-det = integral of tr(df/dz)")
    net: NetField = MLP(hidden=(64, 64), activation=SMOOTH_ACTIVATION)
    solver: Annotated[Literal["dopri5", "rk4", "euler"], Word] = "dopri5"
    trace: Annotated[Literal["hutchinson", "exact"], Word] = "hutchinson"
    time: Annotated[float, Field(gt=0, le=1000)] = 1.0
    rtol: Tolerance = None
    atol: Tolerance = None
    steps: Annotated[PositiveInt, Field(le=100000)] | None = None

    def infer(self, ctx: LayerContext) -> LayerInfo:
        d = ctx.size
        adaptive = self.solver == "dopri5"
        if adaptive and self.steps is not None:
            raise SpecError("argument 'steps' applies to the fixed-grid solvers rk4 and euler; dopri5 chooses its "
                            "own steps", arg="steps", hint="set rtol and atol to control dopri5")
        for key in ("rtol", "atol"):
            if not adaptive and getattr(self, key) is not None:
                raise SpecError(f"argument '{key}' applies to the adaptive solver dopri5; {self.solver} takes a fixed "
                                f"number of steps", arg=key, hint="set steps=N instead")
        net_in, net_out = (d + 1,), (d,)
        net = dynamics_net(self.net)
        net.validate_io(net_in, net_out)
        params = net.param_count(net_in, net_out, ctx.context_features)
        if adaptive:
            tols = {k: (self.rtol or v[0], self.atol or v[1]) for k, v in DEFAULT_TOLERANCES.items()}
            given = self.rtol is not None or self.atol is not None
            t64, t32 = tols["float64"], tols["float32"]
            how = (f"dopri5, rtol {t64[0]:g} / atol {t64[1]:g}" if given else
                   f"dopri5, rtol {t64[0]:g} / atol {t64[1]:g} in float64 ({t32[0]:g} / {t32[1]:g} in float32)")
        else:
            tols = {}
            steps = self.steps or DEFAULT_STEPS
            order = 4 if self.solver == "rk4" else 1
            # a fixed grid is only as accurate as the method: the stated round-trip/log-det accuracy
            accuracy = 10 * max(1.0, self.time) * (self.time / steps) ** order
            how = f"{self.solver}, {steps} fixed steps (accuracy O(h^{order}), about {accuracy:.1g})"
        trace = "exact trace" if self.trace == "exact" else "Hutchinson trace (unbiased)"
        report = (f"dynamics {net.describe()} of (z, t); {how}; log-det = integral of the {trace} over "
                  f"[0, {self.time:g}]; inverse integrates backwards (accurate to the solver's tolerance)")
        solver = 1e4 * max(float(t) for t in tols["float64"]) if tols else 0.0
        return LayerInfo(
            ctx.shape, params=params, logdet="exact" if self.trace == "exact" else "estimated, unbiased",
            dependency=Dependency.dense(d),
            meta={"features": d, "net": net, "net_in": net_in, "net_out": net_out, "tolerances": tols,
                  "steps": None if adaptive else (self.steps or DEFAULT_STEPS)},
            # stated float64 accuracy: a fixed grid's, else 1e4 times the solver's tolerances
            roundtrip_tol=max(solver, 0.0 if adaptive else accuracy),
            logdet_tol=max(solver, 0.0 if adaptive else accuracy),
            reads_condition=ctx.context_features > 0, report=report,
        )

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        act = getattr(self.net, "activation", None)
        if act in KINKED and "activation" in self.net.model_fields_set:
            return [Finding("warning", f"{act} dynamics have a discontinuous Jacobian: the solver slows down at every "
                                       f"kink and the trace jumps; a smooth activation (tanh, softplus) suits ODEs",
                            arg="net")]
        return []


def dynamics_net(net: Net) -> Net:
    """The net a continuous layer builds: an activation the spec left unset becomes smooth (tanh)."""
    if "activation" not in type(net).model_fields or "activation" in net.model_fields_set:
        return net
    try:
        return type(net).model_validate({**dict(net), "activation": SMOOTH_ACTIVATION})
    except ValidationError:
        return net
