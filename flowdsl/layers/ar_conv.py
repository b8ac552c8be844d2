"""Masked convolutions over images: ``masked_conv`` (PixelCNN) and ``gated_block`` (Gated PixelCNN).

Both read an image's features ``(F, H, W)`` (the first layer: the one-hot input) and keep
H and W. Mask A hides the current pixel (and, on colour images, the current and later
channels of it: the R-G-B masks); mask B lets features of the current pixel through from
earlier channel groups and the same group, so that only the first layer may use mask A.

Both read the model's condition, if any (van den Oord et al. 2016, "Conditional PixelCNN"): a
vector h (a label's one-hot, a ``vector`` condition, an ``embed`` mlp's output, any other layout
flattened) adds V h to every pixel (a bias of masked_conv; both gates of gated_block); an image map
``(C, H', W')`` (an ``image`` condition, or an ``embed`` conv net's output) goes through 1x1
convolutions, upsampled to the layer's grid by repetition (nearest) when H', W' divide H, W.
The condition is not a position: reading it never breaks causality.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> call = Symbol("masked_conv", kwargs=(("mask", Symbol("A")), ("kernel", 7), ("channels", 32)))
    >>> ctx = LayerContext(shape=(1, 8, 8), model_kind="autoregressive", input_type="image", levels=17)
    >>> info = LAYERS.bind(call).infer(ctx)
    >>> info.out_shape, info.params   # 17 one-hot features in, 7x7 taps, 32 out
    ((32, 8, 8), 26688)
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import AR, ar_input, as_groups, check_groups, colour_groups
from flowdsl.layers.dependency_sets import DepContext, DepMaps, any_group, conv, group_allowed, read
from flowdsl.layers.facts import ContextShape
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt, Word

__all__ = ["MaskedConv", "GatedBlockSpec", "masked_taps", "kernel_mask", "image_condition", "read_context"]

OddKernel = Annotated[PositiveInt, Field(le=63)]


def _image(ctx: LayerContext, name: str, kernel: int) -> tuple[int, tuple[int, int], int]:
    f, grid = ar_input(ctx)
    if len(grid) != 2:
        raise SpecError(f"{name} needs an image input, but this model's input is a {ctx.input_type}",
                        hint="use fvbn, nade or made on vectors")
    if kernel % 2 == 0:
        raise SpecError(f"argument 'kernel' of {name} must be odd (got {kernel}): a mask needs a centre tap",
                        arg="kernel")
    groups = colour_groups(ctx)
    check_groups(f, groups, "the number of input features")
    return f, grid, groups


def read_context(ctx: LayerContext) -> ContextShape | None:
    """The encoded condition a layer reads: ``ctx.context``; a caller that gives only ``context_features`` (the
    one-hot protocol of label conditions) means a vector of that many features.

        >>> read_context(LayerContext(shape=(1, 4, 4), context_features=3))
        ContextShape(layout='vector', shape=(3,))
    """
    if ctx.context is not None or not ctx.context_features:
        return ctx.context
    return ContextShape("vector", (int(ctx.context_features),))


def image_condition(context: ContextShape | None, grid: tuple[int, ...], name: str) -> dict:
    """How a layer over an image ``grid`` reads the condition: ``{"mode": None | "vector" | "map", "features":
    numbers read per pixel, "scale": nearest-upsampling factors of a map}``.

    An image map is read through 1x1 convolutions, repeated ``scale`` times along H and W to reach the
    grid; any other layout is read as a vector (flattened). A map whose sizes do not divide the grid's is a
    SpecError at the layer.

        >>> image_condition(ContextShape("image", (3, 2, 4)), (8, 8), "gated_block")
        {'mode': 'map', 'features': 3, 'scale': (4, 2)}
        >>> image_condition(ContextShape("vector", (10,)), (8, 8), "gated_block")["mode"]
        'vector'
    """
    if context is None or not context.features:
        return {"mode": None, "features": 0, "scale": (1, 1)}
    if context.layout != "image":
        return {"mode": "vector", "features": context.features, "scale": (1, 1)}
    c, *hw = context.shape
    if any(g % s for g, s in zip(grid, hw)):
        raise SpecError(f"{name} reads the condition's image map {context.describe()} on its {grid[0]}x{grid[1]} "
                        f"grid: the map's height and width must divide the grid's ({hw[0]}x{hw[1]} does not), "
                        f"to be upsampled by repetition",
                        hint="resize the condition, give it an embed conv net of the grid's size, or read it as a "
                             "vector through embed mlp([...], out=F)")
    return {"mode": "map", "features": c, "scale": (grid[0] // hw[0], grid[1] // hw[1])}


def _condition_report(cond: dict) -> str:
    if cond["mode"] == "map":
        up = cond["scale"]
        return ", conditional (image map" + (f", upsampled {up[0]}x{up[1]})" if up != (1, 1) else ")")
    return ", conditional" if cond["mode"] else ""


def masked_taps(kernel_hw: tuple[int, int], centre: tuple[int, int], mask: str, groups: int):
    """Taps ``(offset, allowed)`` of a masked kernel: every tap before the centre in raster order reads
    all groups; the centre reads earlier groups (mask A) or earlier and the same group (mask B)."""
    taps: list[tuple[tuple[int, int], np.ndarray | None]] = []
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            dy, dx = i - centre[0], j - centre[1]
            if dy < 0 or (dy == 0 and dx < 0):
                taps.append(((dy, dx), None))
            elif dy == 0 and dx == 0 and (mask == "B" or groups > 1):
                taps.append(((0, 0), group_allowed(groups, strict=mask == "A") if groups > 1 else None))
    return taps


def kernel_mask(out_features: int, in_features: int, kernel_hw, centre, mask: str, groups: int) -> np.ndarray:
    """The 0/1 weight mask ``[out, in, kh, kw]`` matching :func:`masked_taps` (features split in groups)."""
    m = np.zeros((out_features, in_features) + tuple(kernel_hw), dtype=bool)
    g_out = np.arange(out_features) * groups // out_features
    g_in = np.arange(in_features) * groups // in_features
    for (dy, dx), allowed in masked_taps(kernel_hw, centre, mask, groups):
        i, j = dy + centre[0], dx + centre[1]
        m[:, :, i, j] = True if allowed is None else allowed[g_out[:, None], g_in[None, :]]
    return m


class MaskedConv(Layer):
    """``masked_conv(mask=A|B, kernel, channels)``: a PixelCNN convolution (van den Oord et al. 2016).

    Taps after the centre pixel are zero; the centre follows the mask (and the R-G-B channel
    groups on colour images). Stacked 3x3 mask-B layers leave a blind spot to the upper right.
    With a condition it adds a context bias: V h for a vector h, a 1x1 convolution of an image map.
    """

    name: ClassVar[str] = "masked_conv"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_conv:build_masked_conv"
    summary: ClassVar[str] = "PixelCNN masked convolution (mask A first, then B; R-G-B masks on colour)"
    mask: Annotated[Literal["A", "B"], Word] = "B"
    kernel: OddKernel = 3
    channels: PositiveInt = 64

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid, groups = _image(ctx, self.name, self.kernel)
        check_groups(self.channels, groups, "channels", arg="channels")
        k = self.kernel
        hint = ("mask B lets a pixel read itself: the first masked layer needs mask=A" if self.mask == "B"
                else None)
        cond = image_condition(read_context(ctx), grid, self.name)
        return LayerInfo(
            out_shape=(self.channels, *grid), params=self.channels * (f * k * k + 1 + cond["features"]),
            logdet="n/a", reads_condition=cond["mode"] is not None,
            causal=CausalFacts(causality_hint=hint, blind_spot_remedy="gated_block removes it", cacheable=True),
            report=f"mask {self.mask}, {k}x{k}, {f} -> {self.channels} features"
                   + (f" in {groups} colour groups" if groups > 1 else "") + _condition_report(cond),
            meta={"in_features": f, "groups": groups, "condition": cond})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        k, g = self.kernel, ctx.meta["groups"]
        taps = masked_taps((k, k), (k // 2, k // 2), self.mask, g)
        return maps.only(conv(as_groups(maps.main, g), taps, groups=g))


class GatedBlockSpec(Layer):
    """``gated_block(mask=A|B, kernel, channels)``: a Gated PixelCNN layer, no blind spot (van den Oord et al. 2016).

    Vertical stack: a ``(k//2+1) x k`` convolution over the rows up to the current one; its
    output, shifted down one row, feeds the horizontal stack through a 1x1 link (vertical ->
    horizontal only). Horizontal stack: a ``1 x (k//2+1)`` convolution over the current row up
    to the current pixel (mask A: excluding it). Both use gated units tanh(f) * sigmoid(g),
    conditioned in both gates on the model's condition (V h for a vector h: a label's one-hot, a
    vector; 1x1 convolutions of an image map, upsampled to the grid); the horizontal output goes
    through a 1x1 convolution and a residual connection (not in the first layer).
    """

    name: ClassVar[str] = "gated_block"
    models: ClassVar[frozenset[str]] = AR
    streams: ClassVar[bool] = True  # reads and writes the vertical stack besides the main (horizontal) one
    runtime: ClassVar[str] = "flowdsl.runtime.ar_conv:build_gated_block"
    summary: ClassVar[str] = "Gated PixelCNN block: vertical + horizontal stacks, gated units, no blind spot"
    mask: Annotated[Literal["A", "B"], Word] = "B"
    kernel: OddKernel = 3
    channels: PositiveInt = 64

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid, groups = _image(ctx, self.name, self.kernel)
        ch, k = self.channels, self.kernel
        check_groups(ch, groups, "channels", arg="channels")
        first = ctx.position == 0
        fv = ctx.shape[0] if ctx.previous and ctx.previous[-1] == self.name else f
        if not first and f != ch:
            raise SpecError(f"gated_block's residual connection needs {ch} input features, but it gets {f}",
                            arg="channels", hint=f"use channels={f}, or put conv1x1({ch}) before it")
        cond = image_condition(read_context(ctx), grid, self.name)
        params = (fv * 2 * ch * (k // 2 + 1) * k + 2 * ch) + (f * 2 * ch * (k // 2 + 1) + 2 * ch) \
            + (2 * ch * 2 * ch + 2 * ch) + (ch * ch + ch) + 2 * cond["features"] * 2 * ch
        hint = ("the horizontal stack of a mask-B block reads the current pixel: the first gated_block needs mask=A"
                if self.mask == "B" else None)
        return LayerInfo(
            out_shape=(ch, *grid), params=params, logdet="n/a",
            causal=CausalFacts(causality_hint=hint, streams=self.streams, cacheable=True),
            reads_condition=cond["mode"] is not None,
            report=f"mask {self.mask}, kernel {k}, {ch} channels"
                   + (", residual" if not first else "") + _condition_report(cond),
            meta={"in_features": f, "vertical_features": fv, "groups": groups, "residual": not first,
                  "condition": cond})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        k, g = self.kernel, ctx.meta["groups"]
        h_in = as_groups(maps.main, g)
        v_in = any_group(maps.get("vertical", maps.main))
        v_taps = [((dy, dx), None) for dy in range(-(k // 2), 1) for dx in range(-(k // 2), k // 2 + 1)]
        v_pre = conv(v_in, v_taps, groups=1)  # rows r-k//2..r: includes the current row
        link = read(v_pre, (-1, 0))  # shifted down one row: only rows above reach the horizontal stack
        h_taps = masked_taps((1, k // 2 + 1), (0, k // 2), self.mask, g)
        h_pre = conv(h_in, h_taps, groups=g) | link
        out = conv(h_pre, [((0, 0), group_allowed(g, strict=False) if g > 1 else None)], groups=g)
        if ctx.meta["residual"]:
            out = out | h_in
        return maps.only(out, vertical=v_pre)
