"""Coupling layers: ``coupling T(mask, net, ...)`` for every transformer T (NICE, RealNVP, Glow, NSF, ...).

A coupling splits its input by a mask into kept positions (passed through, and read by the
conditioner net) and transformed positions, each sent through the transformer T
(:mod:`flowdsl.layers.transformers`) with ``T.params_per_dim`` parameters the net computes
from the kept positions. The checker proves the split is a partition and that the conditioner
reads only kept positions; the declared Jacobian is "identity on kept, kept -> transformed".

One structure, :class:`Coupling`, takes the transformer as a value; the registered layers
``coupling affine``, ``coupling additive``, ``coupling rq_spline``, ... are derived from it, one
per transformer, with the transformer's arguments after ``mask`` and ``net``.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> layer = LAYERS.bind(Symbol("coupling affine", kwargs=(("mask", Symbol("half")),)))
    >>> info = layer.infer(LayerContext(shape=(4,)))
    >>> info.out_shape, info.params, layer.transformer
    ((4,), 4612, AffineSpec(clamp=3.0))
    >>> [cls.name for cls in COUPLING_LAYERS][:3]
    ['coupling affine', 'coupling additive', 'coupling rq_spline']
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

import numpy as np

from flowdsl.errors import SpecError
from flowdsl.layers.masks import HalfMask, MaskField
from flowdsl.layers.nets import MLP, NetField
from flowdsl.layers.registry import Finding, LayerContext, LayerInfo
from flowdsl.layers.structure import Dependency
from flowdsl.layers.transformers import TRANSFORMERS, AffineSpec, Transformer, TransformerLayer, combine

__all__ = ["CouplingSpec", "COUPLING_LAYERS", "coupling_io"]

def coupling_io(kept: np.ndarray, style: str, shape: tuple[int, ...], params_per_dim: int):
    """Shapes the conditioner net sees and produces for a mask: ``(net_in, net_out)``."""
    if style == "spatial":  # checkerboard: the net sees the whole (masked) image
        return shape, (shape[0] * params_per_dim,) + shape[1:]
    if len(shape) == 3:  # channel split
        kept_c = int(kept[:, 0, 0].sum())
        return (kept_c,) + shape[1:], ((shape[0] - kept_c) * params_per_dim,) + shape[1:]
    n_kept = int(kept.sum())
    return (n_kept,), ((prod(shape) - n_kept) * params_per_dim,)


class CouplingSpec(TransformerLayer):
    """The coupling structure, generic over the transformer (``transformer_spec``, set per derived class)."""

    runtime: ClassVar[str] = "flowdsl.runtime.coupling:build_coupling"
    transformer_spec: ClassVar[type[Transformer]] = AffineSpec
    #: what the derived layers' summaries call the structure
    structure_title: ClassVar[str] = "coupling"
    mask: MaskField = HalfMask()
    net: NetField = MLP()

    def kept(self, ctx: LayerContext) -> np.ndarray:
        if len(ctx.shape) not in (1, 3):
            raise SpecError(f"coupling layers take vectors or images, not a tensor of shape {list(ctx.shape)}")
        return self.mask.kept(ctx.shape)

    def infer(self, ctx: LayerContext) -> LayerInfo:
        t = self.transformer
        kept = self.kept(ctx)
        # an image mask that does not keep whole channels (an explicit list) is applied like checkerboard
        spatial = self.mask.style == "spatial" or (len(ctx.shape) == 3 and not (kept == kept[:, :1, :1]).all())
        net_in, net_out = coupling_io(kept, "spatial" if spatial else "index", ctx.shape, t.params_per_dim)
        self.net.validate_io(net_in, net_out)
        params = self.net.param_count(net_in, net_out, ctx.context_features) + t.extra_params()
        n_kept = int(kept.sum())
        return LayerInfo(
            out_shape=ctx.shape,
            params=params,
            logdet=t.logdet,
            dependency=Dependency.coupling(kept),
            reads_condition=ctx.context_features > 0,
            report=t.report(),
            meta={"kept": n_kept, "transformed": kept.size - n_kept, "net_in": net_in, "net_out": net_out,
                  "spatial": bool(spatial), "transformer": t.name, "params_per_dim": t.params_per_dim},
        )

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        return self.transformer.findings()


#: ``coupling T`` for every transformer T, in the order of :data:`~flowdsl.layers.transformers.TRANSFORMERS`
COUPLING_LAYERS: tuple[type[CouplingSpec], ...] = tuple(
    combine(CouplingSpec, t, word="coupling", class_name=f"{t.stem}Coupling", module=__name__)
    for t in TRANSFORMERS
)
globals().update({cls.__name__: cls for cls in COUPLING_LAYERS})  # AffineCoupling, RQSplineCoupling, ...
