"""Coupling layers: ``coupling additive(...)`` (NICE) and ``coupling affine(...)`` (RealNVP, Glow).

A coupling splits its input by a mask into kept positions (passed through, and read
by the conditioner net) and transformed positions (shifted, or scaled and shifted,
elementwise). The checker proves the split is a partition and that the conditioner
reads only kept positions; the declared Jacobian is "identity on kept, kept -> transformed".

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> layer = LAYERS.bind(Symbol("coupling affine", kwargs=(("mask", Symbol("half")),)))
    >>> info = layer.infer(LayerContext(shape=(4,)))
    >>> info.out_shape, info.params
    ((4,), 4612)
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

import numpy as np
from pydantic import Field
from typing_extensions import Annotated

from flowdsl.errors import SpecError
from flowdsl.layers.registry import NETS, Layer, LayerContext, LayerInfo, register_layer, symbolic
from flowdsl.layers.structure import Dependency
from flowdsl.layers.masks import HalfMask, MaskField
from flowdsl.layers.nets import MLP, Net

__all__ = ["Coupling", "AdditiveCoupling", "AffineCoupling", "coupling_io"]

NetField = symbolic(NETS, Net)


def coupling_io(kept: np.ndarray, style: str, shape: tuple[int, ...], params_per_dim: int):
    """Shapes the conditioner net sees and produces for a mask: ``(net_in, net_out)``."""
    if style == "spatial":  # checkerboard: the net sees the whole (masked) image
        return shape, (shape[0] * params_per_dim,) + shape[1:]
    if len(shape) == 3:  # channel split
        kept_c = int(kept[:, 0, 0].sum())
        return (kept_c,) + shape[1:], ((shape[0] - kept_c) * params_per_dim,) + shape[1:]
    n_kept = int(kept.sum())
    return (n_kept,), ((prod(shape) - n_kept) * params_per_dim,)


class Coupling(Layer):
    """Shared rules of coupling layers; subclasses set ``params_per_dim`` and the log-det kind."""

    runtime: ClassVar[str] = "flowdsl.runtime.coupling:build_coupling"
    params_per_dim: ClassVar[int] = 1
    logdet_kind: ClassVar[str] = "exact"
    mask: MaskField = HalfMask()
    net: NetField = MLP()

    def kept(self, ctx: LayerContext) -> np.ndarray:
        if len(ctx.shape) not in (1, 3):
            raise SpecError(f"coupling layers take vectors or images, not a tensor of shape {list(ctx.shape)}")
        return self.mask.kept(ctx.shape)

    def infer(self, ctx: LayerContext) -> LayerInfo:
        kept = self.kept(ctx)
        net_in, net_out = coupling_io(kept, self.mask.style, ctx.shape, self.params_per_dim)
        self.net.validate_io(net_in, net_out)
        params = self.net.param_count(net_in, net_out, ctx.context_features)
        n_kept = int(kept.sum())
        return LayerInfo(
            out_shape=ctx.shape,
            params=params,
            logdet=self.logdet_kind,
            dependency=Dependency.coupling(kept),
            meta={"kept": n_kept, "transformed": kept.size - n_kept, "net_in": net_in, "net_out": net_out,
                  "reads_condition": ctx.context_features > 0},
        )


@register_layer
class AdditiveCoupling(Coupling):
    """``coupling additive(mask, net)``: y_t = x_t + t(x_k); volume preserving (NICE)."""

    name: ClassVar[str] = "coupling additive"
    summary: ClassVar[str] = "additive coupling (NICE): y = x + t(x_kept) on the transformed part"
    logdet_kind: ClassVar[str] = "zero"


@register_layer
class AffineCoupling(Coupling):
    """``coupling affine(mask, net, clamp=3)``: y_t = x_t * exp(s(x_k)) + t(x_k), |s| < clamp (RealNVP, Glow)."""

    name: ClassVar[str] = "coupling affine"
    summary: ClassVar[str] = "affine coupling (RealNVP/Glow): y = x * exp(s) + t, s soft-clamped"
    params_per_dim: ClassVar[int] = 2
    clamp: Annotated[float, Field(gt=0, le=20)] = 3.0
