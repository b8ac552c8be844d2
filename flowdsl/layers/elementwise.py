"""Elementwise bijections: actnorm, batchnorm, logit preprocessing, dequantization.

Example:
    >>> from flowdsl.layers.registry import LayerContext
    >>> ActNormSpec().infer(LayerContext(shape=(3, 4, 4))).params
    6
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.registry import Finding, Layer, LayerContext, LayerInfo, Word
from flowdsl.layers.structure import Dependency

__all__ = ["ActNormSpec", "BatchNormSpec", "LogitSpec", "DequantizeSpec"]


def _features(shape: tuple[int, ...]) -> int:
    """Parameters of per-feature layers: one per channel of an image, one per entry of a vector."""
    return shape[0]


class ActNormSpec(Layer):
    """``actnorm``: per-channel scale and bias, initialised from the first batch (zero mean, unit variance)."""

    name: ClassVar[str] = "actnorm"
    runtime: ClassVar[str] = "flowdsl.runtime.elementwise:ActNorm.build"
    summary: ClassVar[str] = "per-channel affine, data-dependent initialisation (Glow)"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        return LayerInfo(ctx.shape, params=2 * _features(ctx.shape), logdet="exact",
                         dependency=Dependency.elementwise(ctx.size))


class BatchNormSpec(Layer):
    """``batchnorm(momentum=0.1, eps=1e-5)``: batch normalisation as a bijection (RealNVP, MAF)."""

    name: ClassVar[str] = "batchnorm"
    runtime: ClassVar[str] = "flowdsl.runtime.elementwise:BatchNorm.build"
    summary: ClassVar[str] = "batch statistics in training, running averages in evaluation"
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.1
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-5

    def infer(self, ctx: LayerContext) -> LayerInfo:
        return LayerInfo(ctx.shape, params=2 * _features(ctx.shape), logdet="exact",
                         dependency=Dependency.elementwise(ctx.size))


class LogitSpec(Layer):
    """``logit(alpha=0.05)``: x / levels -> alpha + (1 - 2 alpha) x -> log(p / (1 - p)) (RealNVP)."""

    name: ClassVar[str] = "logit"
    positional: ClassVar[tuple[str, ...]] = ("alpha",)
    runtime: ClassVar[str] = "flowdsl.runtime.elementwise:Logit.build"
    summary: ClassVar[str] = "rescale [0, levels) to (0, 1), then logit"
    alpha: Annotated[float, Field(ge=0, lt=0.5)] = 0.05

    def infer(self, ctx: LayerContext) -> LayerInfo:
        return LayerInfo(ctx.shape, params=0, logdet="exact", dependency=Dependency.elementwise(ctx.size),
                         meta={"scale": float(ctx.levels or 1)})

    def check(self, ctx, info):
        if ctx.position > 0 and "dequantize" not in ctx.previous[-1:] and ctx.levels is not None:
            return [Finding("warning", "logit expects data in [0, levels); it is usually the first layer")]
        if ctx.levels is None:
            return [Finding("note", "logit expects data in (0, 1) (the input declares no levels)")]
        return []


class DequantizeSpec(Layer):
    """``dequantize(uniform)``: how integer data becomes continuous; must come first.

    Inputs with ``levels`` are dequantized with uniform noise even without this layer.
    """

    name: ClassVar[str] = "dequantize"
    runtime: ClassVar[str] = "flowdsl.runtime.elementwise:Dequantize.build"
    summary: ClassVar[str] = "uniform dequantization of integer data (log-likelihood bound on the discrete data)"
    method: Annotated[Literal["uniform", "variational"], Word] = "uniform"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if ctx.levels is None:
            raise SpecError("dequantize needs a discrete input (declare 'levels' on the input)")
        if ctx.position != 0:
            raise SpecError("dequantize must be the first layer of the flow")
        if self.method == "variational":
            raise SpecError("variational dequantization is not available yet; use dequantize(uniform)", arg="method")
        return LayerInfo(ctx.shape, params=0, logdet="zero", dependency=Dependency.identity(ctx.size))
