"""Coupling layers: ``coupling T(mask, net, ...)`` for every transformer T (NICE, RealNVP, Glow, NSF, ...).

A coupling splits its input by a mask into kept positions (passed through, and read by the
conditioner net) and transformed positions, each sent through the transformer T
(:mod:`flowdsl.layers.transformers`) with ``T.params_per_dim`` parameters the net computes
from the kept positions. The checker proves the split is a partition and that the conditioner
reads only kept positions; the declared Jacobian is "identity on kept, kept -> transformed".

One structure, :class:`Coupling`, takes the transformer as a value; the registered layers
``coupling affine``, ``coupling additive``, ``coupling rq_spline``, ... are derived from it, one
per transformer, with the transformer's arguments after ``mask`` and ``net``.

In a conditional model the net reads the encoded condition: flattened to a vector (concatenated to
a vector input, constant channels over an image), or, for a convolutional net on an image whose
``H x W`` equals the condition map's (an ``image`` condition, or a conv ``embed`` of one), the map
itself as extra channels (``meta["context_map"]``: the runtime module reads the map).

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> layer = LAYERS.bind(Symbol("coupling affine", kwargs=(("mask", Symbol("half")),)))
    >>> info = layer.infer(LayerContext(shape=(4,)))
    >>> info.out_shape, info.params, layer.transformer
    ((4,), 4612, AffineSpec(clamp=3.0))
    >>> [cls.name for cls in COUPLING_LAYERS][:3]
    ['coupling affine', 'coupling additive', 'coupling rq_spline']
    >>> from flowdsl.layers.facts import ContextShape
    >>> image = LAYERS.bind(Symbol("coupling affine", kwargs=(("mask", Symbol("checkerboard")),
    ...                                                      ("net", Symbol("conv_net", args=(8,))))))
    >>> ctx = LayerContext(shape=(1, 4, 4), context=ContextShape("image", (2, 4, 4)), context_features=32)
    >>> image.infer(ctx).meta["context_map"]   # the 2-channel map, read as 2 extra channels
    2
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

__all__ = ["CouplingSpec", "COUPLING_LAYERS", "coupling_io", "context_channels"]

def context_channels(net, ctx: LayerContext, net_in: tuple[int, ...]) -> int:
    """How many numbers of the condition the net reads per input position: the map's channels when a
    convolutional net reads an image condition map of its own ``H x W`` (0: it reads it flattened)."""
    c = ctx.context
    if c is None or not ctx.context_features or c.layout != "image" or len(net_in) != 3 or net.flattens:
        return 0
    if not type(net).runtime.startswith("flowdsl.runtime.nets:"):  # a plugin net is given the vector it expects
        return 0
    return c.shape[0] if tuple(c.shape[1:]) == tuple(net_in[1:]) else 0


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
        channels = context_channels(self.net, ctx, net_in)
        params = self.net.param_count(net_in, net_out, channels or ctx.context_features) + t.extra_params()
        n_kept = int(kept.sum())
        report = t.report()
        if channels:
            report += f"; the net reads the {ctx.context.describe() if ctx.context else ''} condition map as channels"
        return LayerInfo(
            out_shape=ctx.shape,
            params=params,
            logdet=t.logdet,
            dependency=Dependency.coupling(kept),
            reads_condition=ctx.context_features > 0,
            report=report,
            meta={"kept": n_kept, "transformed": kept.size - n_kept, "net_in": net_in, "net_out": net_out,
                  "spatial": bool(spatial), "transformer": t.name, "params_per_dim": t.params_per_dim,
                  "context_map": channels},
        )

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        findings = list(self.transformer.findings())
        c, net_in = ctx.context, info.meta["net_in"]
        if c is not None and ctx.context_features and c.layout == "image" and len(net_in) == 3 \
                and not info.meta["context_map"] and not self.net.flattens:
            findings.append(Finding("note", f"the {c.describe()} condition map is not {net_in[1]}x{net_in[2]} like "
                                            f"this layer's input: its net reads it flattened, as "
                                            f"{ctx.context_features} constant channels", arg="net"))
        return findings


#: ``coupling T`` for every transformer T, in the order of :data:`~flowdsl.layers.transformers.TRANSFORMERS`
COUPLING_LAYERS: tuple[type[CouplingSpec], ...] = tuple(
    combine(CouplingSpec, t, word="coupling", class_name=f"{t.stem}Coupling", module=__name__)
    for t in TRANSFORMERS
)
globals().update({cls.__name__: cls for cls in COUPLING_LAYERS})  # AffineCoupling, RQSplineCoupling, ...
