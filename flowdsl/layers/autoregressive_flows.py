"""Autoregressive flow layers: ``autoregressive T(net=made([..]), order, direction, ...)`` for every transformer T.

Each transforms dimension ``i`` by the scalar monotone transformer T
(:mod:`flowdsl.layers.transformers`: ``affine``, ``additive``, ``rq_spline``, ``cubic_spline``,
``dsf``, ``umnn``, ``sos``) whose ``T.params_per_dim`` parameters a ``made`` net computes from the
dimensions before ``i`` in the layer's order. One structure, :class:`AutoregressiveLayer`,
takes the transformer as a value; the registered layers are derived from it, one per
transformer, with the transformer's arguments after ``net``, ``order`` and ``direction``.

``direction=forward`` (default, MAF) reads the layer's input: the density is one pass and
sampling takes one pass per generation of the dependency DAG; ``direction=inverse`` (IAF)
reads the output instead, so sampling is one pass. The checker proves causality (the MADE
mask product is strictly triangular in the order), records the Jacobian pattern, and warns
when a hidden layer is too narrow.

In a conditional model the encoded condition (flattened) enters the MADE as extra input columns of
degree 0 (:func:`flowdsl.layers.made_masks.made_masks`): every first-layer hidden unit reads all of
it, and since those columns are no dimension they add no path between dimensions (the mask product
over the dimensions is unchanged, proved by the same check). The transform is then a triangular
bijection of ``x`` for every fixed condition.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> made = Symbol("made", args=((16,),))
    >>> layer = LAYERS.bind(Symbol("autoregressive affine", kwargs=(("net", made), ("order", Symbol("reverse")))))
    >>> info = layer.infer(LayerContext(shape=(3,)))
    >>> info.params, info.report
    (166, 'affine transformer; order reverse; density in one pass, sampling in 3 passes')
    >>> info.dependency.matrix().astype(int).tolist()
    [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    >>> "autoregressive additive" in [cls.name for cls in AUTOREGRESSIVE_FLOW_LAYERS]
    True
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np

from flowdsl.errors import SpecError
from flowdsl.layers import made_masks as made_math
from flowdsl.layers.made_net import MADESpec, OrderField, effective_order, made_structure, narrow_findings
from flowdsl.layers.nets import NetField
from flowdsl.layers.registry import Finding, LayerContext, LayerInfo, Word
from flowdsl.layers.structure import Dependency
from flowdsl.layers.transformers import (
    SMOOTH_ACTIVATIONS,
    TRANSFORMERS,
    AffineSpec,
    Transformer,
    TransformerLayer,
    combine,
)

__all__ = ["AutoregressiveLayer", "AUTOREGRESSIVE_FLOW_LAYERS", "SMOOTH_ACTIVATIONS"]

class AutoregressiveLayer(TransformerLayer):
    """The autoregressive-flow structure: a ``made`` net, an order, a direction; generic over the transformer."""

    runtime: ClassVar[str] = "flowdsl.runtime.autoregressive_flows:build_autoregressive"
    transformer_spec: ClassVar[type[Transformer]] = AffineSpec
    #: what the derived layers' summaries call the structure
    structure_title: ClassVar[str] = "autoregressive flow"
    net: NetField = MADESpec()
    order: OrderField | None = None
    direction: Annotated[Literal["forward", "inverse"], Word] = "forward"

    def made(self) -> MADESpec:
        if not isinstance(self.net, MADESpec):
            raise SpecError(f"{self.name} needs a masked conditioner, net=made([...]); net {self.net.name} would "
                            f"let each dimension read itself and later dimensions", arg="net",
                            hint="e.g. net=made([64, 64])")
        return self.net

    def infer(self, ctx: LayerContext) -> LayerInfo:
        net = self.made()
        if len(ctx.shape) != 1:
            raise SpecError(f"{self.name} takes vectors, but this layer sees a tensor of shape {list(ctx.shape)}")
        t = self.transformer
        n, k = ctx.shape[0], t.params_per_dim
        net.validate_io((n,), (k * n,))
        s = made_structure(net, self.order, n, k, ctx.context_features, ctx.limits)
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
        report = (f"{t.name} transformer; order {order}; {one_pass} in one pass, {slow} in "
                  f"{passes} pass{'es' if passes != 1 else ''}")
        if t.inverse_kind != "analytic":
            report += f" ({t.inverse_kind})"
        meta = {
            "transformer": t.name, "order": order, "perm": tuple(int(v) for v in s.perm),
            "direction": self.direction, "one_pass": one_pass, "inverse_passes": passes,
            "generations": s.generations, "params_per_dim": k, "hidden": tuple(net.hidden),
            "connectivity_complete": s.complete, "inverse": t.inverse_kind,
        }
        params = net.param_count((n,), (k * n,), ctx.context_features) + t.extra_params()
        return LayerInfo(out_shape=ctx.shape, params=params, logdet=t.logdet, dependency=dep,
                         reads_condition=ctx.context_features > 0, report=report, meta=meta)

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        s = made_structure(self.made(), self.order, ctx.shape[0], self.params_per_dim, ctx.context_features,
                           ctx.limits)
        return narrow_findings(self.made(), s) + self.transformer.findings()


#: ``autoregressive T`` for every transformer T, in the order of :data:`~flowdsl.layers.transformers.TRANSFORMERS`
AUTOREGRESSIVE_FLOW_LAYERS: tuple[type[AutoregressiveLayer], ...] = tuple(
    combine(AutoregressiveLayer, t, word="autoregressive", class_name=f"Autoregressive{t.stem}", module=__name__)
    for t in TRANSFORMERS
)
globals().update({cls.__name__: cls for cls in AUTOREGRESSIVE_FLOW_LAYERS})  # AutoregressiveAffine, ...
