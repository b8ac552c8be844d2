"""Layers that move or mix positions: permute, invconv1x1, squeeze, split.

Index arrays are computed here, once, with numpy; the runtime receives them.

Example:
    >>> from flowdsl.layers.registry import LayerContext
    >>> SqueezeSpec().infer(LayerContext(shape=(1, 4, 4))).out_shape
    (4, 2, 2)
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.orders import PERMUTATIONS, ExplicitOrder, PermutationField, RandomOrder, Reverse  # noqa: F401
from flowdsl.layers.orders import Order as _Order
from flowdsl.layers.registry import Layer, LayerContext, LayerInfo, Seed
from flowdsl.layers.structure import Dependency

__all__ = [
    "PermuteSpec", "InvConv1x1Spec", "SqueezeSpec", "SplitSpec", "ORDERS", "squeeze_source", "permutation_indices",
]

#: the orders ``permute(...)`` accepts (one family with the MADE net's and model's, :mod:`flowdsl.layers.orders`)
ORDERS = PERMUTATIONS  # members: Reverse, RandomOrder; a list binds to ExplicitOrder
Order = _Order
OrderField = PermutationField


def _kind(shape) -> str:
    return {1: "vector", 3: "image"}.get(len(shape), "tensor") + f"[{', '.join(map(str, shape))}]"


def permutation_indices(order: Order, shape: tuple[int, ...]) -> np.ndarray:
    """Indices along the permuted axis: features of a vector, channels of an image."""
    return order.indices(shape[0])


class PermuteSpec(Layer):
    """``permute(reverse | random(seed=N) | [i, ...])``: permute features (vectors) or channels (images)."""

    name: ClassVar[str] = "permute"
    runtime: ClassVar[str] = "flowdsl.runtime.structural:Permute.build"
    summary: ClassVar[str] = "fixed permutation of features / channels"
    structural: ClassVar[bool] = True
    order: OrderField = Reverse()

    def infer(self, ctx: LayerContext) -> LayerInfo:
        idx = permutation_indices(self.order, ctx.shape)
        source = idx if len(ctx.shape) == 1 else np.arange(ctx.size).reshape(ctx.shape)[idx].ravel()
        return LayerInfo(ctx.shape, params=0, logdet="zero", dependency=Dependency.permutation(source),
                         meta={"indices": np.asarray(idx, dtype=np.int64)})  # an array: 8 bytes an index


class InvConv1x1Spec(Layer):
    """``invconv1x1``: invertible 1x1 convolution, LU-parameterised (Glow); a dense LU linear map on vectors."""

    name: ClassVar[str] = "invconv1x1"
    runtime: ClassVar[str] = "flowdsl.runtime.structural:InvConv1x1.build"
    summary: ClassVar[str] = "W = P L (U + diag(sign(s) exp(log|s|))): det never zero"
    seed: Seed = 0

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if len(ctx.shape) not in (1, 3):
            raise SpecError(f"invconv1x1 takes vectors or images, not {_kind(ctx.shape)}")
        c = ctx.shape[0]
        if len(ctx.shape) == 3:
            groups = np.broadcast_to(np.arange(ctx.shape[1] * ctx.shape[2]).reshape(ctx.shape[1:]), ctx.shape)
        else:
            groups = np.zeros(c, dtype=np.int64)
        # L and U are stored as full matrices (masked), plus log|s|: 2 C^2 + C tensor entries, C^2 effective
        return LayerInfo(ctx.shape, params=2 * c * c + c, logdet="exact", dependency=Dependency.groups(groups),
                         meta={"channels": c})


def squeeze_source(shape: tuple[int, int, int], factor: int) -> np.ndarray:
    """For each output position of squeeze, the input position it copies (matches the runtime)."""
    c, h, w = shape
    grid = np.arange(c * h * w).reshape(c, h // factor, factor, w // factor, factor)
    return grid.transpose(0, 2, 4, 1, 3).reshape(-1)


class SqueezeSpec(Layer):
    """``squeeze(2)``: trade space for channels, [C, H, W] -> [4C, H/2, W/2]."""

    name: ClassVar[str] = "squeeze"
    runtime: ClassVar[str] = "flowdsl.runtime.structural:Squeeze.build"
    summary: ClassVar[str] = "space-to-channels reshape"
    structural: ClassVar[bool] = True
    factor: Annotated[int, Field(ge=2, le=64)] = 2

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if len(ctx.shape) != 3:
            raise SpecError(f"squeeze needs an image input, but this layer sees {_kind(ctx.shape)}")
        c, h, w = ctx.shape
        f = self.factor
        if h % f or w % f:
            raise SpecError(f"squeeze({f}) needs height and width divisible by {f}, but this layer sees "
                            f"{_kind(ctx.shape)}", arg="factor")
        out = (c * f * f, h // f, w // f)
        return LayerInfo(out, params=0, logdet="zero", dependency=Dependency.permutation(squeeze_source(ctx.shape, f)))


class SplitSpec(Layer):
    """``split``: factor out half the channels (features) to the base density (multi-scale RealNVP/Glow)."""

    name: ClassVar[str] = "split"
    runtime: ClassVar[str] = "flowdsl.runtime.structural:Split.build"
    summary: ClassVar[str] = "factor half the channels out to the base density"
    structural: ClassVar[bool] = True

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if len(ctx.shape) not in (1, 3):
            raise SpecError(f"split takes vectors or images, not {_kind(ctx.shape)}")
        n = ctx.shape[0]
        if n < 2:
            unit = "channel" if len(ctx.shape) == 3 else "dimension"
            raise SpecError(f"split cannot factor out half of a single {unit} ({_kind(ctx.shape)})",
                            hint="squeeze(2) first to get more channels" if len(ctx.shape) == 3 else None)
        kept = n - n // 2
        out = (kept,) + ctx.shape[1:]
        factored = (n // 2,) + ctx.shape[1:]
        return LayerInfo(out, params=0, logdet="zero", factored=factored)
