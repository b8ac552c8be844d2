"""Video Pixel Network layers (Kalchbrenner et al. 2016): ``video_encoder`` and ``pixel_decoder``.

A video ``[T, C, H, W]`` is generated frame by frame, each frame in raster order, the colour
channels of a pixel in turn (time -> row -> column -> channel).

- ``video_encoder(channels, blocks)`` (the first layer) encodes every frame with a
  resolution-preserving CNN (a 3x3 convolution, then ``blocks`` residual blocks of two 3x3
  convolutions with dilation 2^b in block b, so the reach doubles per block) and runs a
  convolutional LSTM (3x3) over time. Its output at frame t is the LSTM state after frames
  0..t-1 (zero at frame 0): causal in time. It passes the frames on, unchanged, as the
  ``frames`` stream.
- ``pixel_decoder(channels, blocks, kernel=3)`` is a Gated PixelCNN over each frame (vertical
  and horizontal stacks, mask A in its first block, mask B and residuals after; R-G-B channel
  masks on colour video), every gate also conditioned on the encoder's output at the same
  position through 1x1 convolutions. It must follow ``video_encoder``.

Both declare their exact dependency structure over the (T, H, W) grid, so the checker proves
the generation order and computes the receptive field.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> ctx = LayerContext(shape=(4, 1, 8, 8), model_kind="autoregressive", input_type="video", levels=17)
    >>> info = LAYERS.bind(Symbol("video_encoder", kwargs=(("channels", 8), ("blocks", 1)))).infer(ctx)
    >>> info.out_shape, info.params
    ((8, 4, 8, 8), 7040)
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import AR, ar_input, as_groups, check_groups, colour_groups, input_levels
from flowdsl.layers.ar_conv import masked_taps
from flowdsl.layers.dependency_sets import DepContext, DepMaps, any_group, conv, group_allowed, read
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt

__all__ = ["VideoEncoderSpec", "PixelDecoderSpec", "encoder_dilations"]

Blocks = Annotated[PositiveInt, Field(le=16)]


def encoder_dilations(blocks: int) -> list[int]:
    """Dilation of the residual block b of the frame encoder: 1, 2, 4, ..."""
    return [2 ** b for b in range(blocks)]


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _video(ctx: LayerContext, name: str):
    f, grid = ar_input(ctx)
    if len(grid) != 3:
        raise SpecError(f"{name} models videos, but this model's input is {_a(ctx.input_type)}",
                        hint="declare 'input x: video[T, C, H, W] levels N'")
    return f, grid


def _square(d: int = 1, dt: int = 0):
    return [((dt, dy * d, dx * d), None) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class VideoEncoderSpec(Layer):
    """``video_encoder(channels, blocks)``: per-frame dilated residual CNN + convolutional LSTM, shifted one frame."""

    name: ClassVar[str] = "video_encoder"
    models: ClassVar[frozenset[str]] = AR
    streams: ClassVar[bool] = True  # passes the frames on as the "frames" stream
    runtime: ClassVar[str] = "flowdsl.runtime.ar_video:build_video_encoder"
    summary: ClassVar[str] = "VPN encoder: per-frame dilated CNN, conv LSTM over time; frame t reads frames < t"
    channels: PositiveInt = 64
    blocks: Blocks = 2

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if ctx.position != 0:
            raise SpecError("video_encoder reads the model's input frames: it must be the first layer")
        f, grid = _video(ctx, self.name)
        ch = self.channels
        params = (f * ch * 9 + ch) + self.blocks * 2 * (ch * ch * 9 + ch) + (2 * ch * 4 * ch * 9 + 4 * ch)
        reach = 1 + 2 * sum(encoder_dilations(self.blocks)) + 1
        return LayerInfo(
            out_shape=(ch, *grid), params=params, logdet="n/a",
            causal=CausalFacts(streams=self.streams, cacheable=True,
                               blind_spot_remedy="more video_encoder blocks widen its reach into earlier frames "
                                                 "(the dilation doubles per block)"),
            report=f"{self.blocks} residual blocks (dilations "
                   f"{', '.join(map(str, encoder_dilations(self.blocks)))}), conv LSTM; "
                   f"reach {reach} pixels into the previous frame; frame t reads frames < t",
            meta={"in_features": f, "reach": reach})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        x = any_group(maps.main)
        p = conv(x, _square())
        for d in encoder_dilations(self.blocks):
            p = conv(conv(p, _square(d)), _square(d))
        gates = conv(p, _square())
        state = gates
        for _ in range(ctx.layout.grid[0] - 1):  # h_t reads the gates of frame t and, in 3x3, h_{t-1}
            state = gates | conv(state, _square(dt=-1))
        return maps.only(read(state, (-1, 0, 0)), frames=maps.main)


class PixelDecoderSpec(Layer):
    """``pixel_decoder(channels, blocks, kernel=3)``: a conditioned Gated PixelCNN applied to every frame."""

    name: ClassVar[str] = "pixel_decoder"
    models: ClassVar[frozenset[str]] = AR
    streams: ClassVar[bool] = True  # reads the frames stream besides the encoder's output
    runtime: ClassVar[str] = "flowdsl.runtime.ar_video:build_pixel_decoder"
    summary: ClassVar[str] = "VPN decoder: Gated PixelCNN per frame, conditioned on the encoder"
    channels: PositiveInt = 64
    blocks: Blocks = 2
    kernel: Annotated[PositiveInt, Field(le=15)] = 3

    def infer(self, ctx: LayerContext) -> LayerInfo:
        fe, grid = _video(ctx, self.name)
        if not ctx.previous or ctx.previous[-1] != "video_encoder":
            raise SpecError("pixel_decoder reads the frames that video_encoder passes on: put it right after "
                            "video_encoder")
        if self.kernel % 2 == 0:
            raise SpecError(f"argument 'kernel' of pixel_decoder must be odd (got {self.kernel}): a mask needs "
                            f"a centre tap", arg="kernel")
        groups = colour_groups(ctx)
        check_groups(self.channels, groups, "channels", arg="channels")
        f = groups * input_levels(ctx)
        ch, k, labels = self.channels, self.kernel, ctx.context_features
        params = 0
        for b in range(self.blocks):
            fin = f if b == 0 else ch
            params += (fin * 2 * ch * (k // 2 + 1) * k + 2 * ch) + (fin * 2 * ch * (k // 2 + 1) + 2 * ch) \
                + (2 * ch * 2 * ch + 2 * ch) + (ch * ch + ch) + 2 * fe * 2 * ch + 2 * labels * 2 * ch
        return LayerInfo(
            out_shape=(ch, *grid), params=params, logdet="n/a",
            causal=CausalFacts(streams=self.streams, passes_stream=False, cacheable=True), reads_condition=labels > 0,
            report=f"{self.blocks} gated blocks (mask A, then B), kernel {k}, {ch} channels, "
                   f"conditioned on the encoder" + (" and the condition (flattened)" if labels else ""),
            meta={"frame_features": f, "encoder_features": fe, "groups": groups})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        g, k = ctx.meta["groups"], self.kernel
        e = any_group(maps.main)
        h = as_groups(maps.streams["frames"], g)  # infer() put this layer right after video_encoder
        v = any_group(h)
        v_taps = [((0, dy, dx), None) for dy in range(-(k // 2), 1) for dx in range(-(k // 2), k // 2 + 1)]
        for b in range(self.blocks):
            mask = "A" if b == 0 else "B"
            h_taps = [((0, *off), allowed) for off, allowed in masked_taps((1, k // 2 + 1), (0, k // 2), mask, g)]
            v_conv = conv(v, v_taps)
            pre = conv(h, h_taps, groups=g) | read(v_conv, (0, -1, 0)) | e
            out = conv(pre, [((0, 0, 0), group_allowed(g, strict=False) if g > 1 else None)], groups=g)
            h, v = (out | h if b > 0 else out), v_conv | e
        return maps.only(h)
