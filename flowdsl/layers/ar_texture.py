"""Non-parametric texture synthesis (Efros & Leung 1999): ``nonparametric(window, source, eps=0.1)``.

Each pixel is drawn in raster order from the example image's pixels whose causal
neighbourhood (the already generated part of a ``window x window`` square around the pixel,
and its earlier colour channels) matches: with Gaussian weights (sigma = window / 6.4, on a
1/1024 grid so that distances are exact), the candidates whose weighted SSD is within
``(1 + eps)`` of the best are equally likely. It is a sampler, not a likelihood model:
``sample`` works, ``log_prob`` raises. The source PNG is read by a small dependency-free
reader (:mod:`flowdsl.layers.png`: its size checked from the header against ``Limits.max_texture_pixels``
before decoding), relative to the spec file; nothing in a spec is executed.

Example:
    >>> weights = gaussian_weights(3)
    >>> [(o, int(w)) for o, w in weights]   # the causal part of a 3x3 window, weight 1024 at distance 0
    [((-1, -1), 11), ((-1, 0), 105), ((-1, 1), 11), ((0, -1), 105)]
"""

from __future__ import annotations

import math
import struct
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.language.spec_files import path_problem
from flowdsl.layers.ar_basic import AR, ar_input, as_groups, colour_groups, input_levels
from flowdsl.layers.ar_conv import masked_taps
from flowdsl.layers.dependency_sets import DepContext, DepMaps, conv
from flowdsl.layers.png import PNGError, read_png
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt

__all__ = ["NonParametricSpec", "read_png", "gaussian_weights", "PNGError", "NO_LIKELIHOOD"]

#: why a model with a nonparametric layer has no log_prob (CausalFacts.no_likelihood)
NO_LIKELIHOOD = ("nonparametric (Efros-Leung) texture synthesis is a sampler and defines no likelihood; "
                 "use sample()")


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


@lru_cache(maxsize=32)
def gaussian_weights(window: int) -> tuple[tuple[tuple[int, int], int], ...]:
    """The causal offsets of a window (rows above, then the current row to the left) and their integer weights:
    ``round(1024 exp(-d^2 / (2 sigma^2)))`` with sigma = window / 6.4 (Efros & Leung)."""
    half, sigma = window // 2, window / 6.4
    taps = masked_taps((window, window), (half, half), "A", 1)
    return tuple((off, max(1, round(1024 * math.exp(-(off[0] ** 2 + off[1] ** 2) / (2 * sigma ** 2)))))
                 for off, _ in taps)


@lru_cache(maxsize=16)
def _load(path: str, mtime: float, channels: int, levels: int, max_pixels: int) -> np.ndarray:
    pixels, top = read_png(path, max_pixels)
    if pixels.shape[0] == 3 and channels == 1:
        if not (pixels == pixels[:1]).all():
            raise SpecError("the source is a colour image, but the model's input has 1 channel", arg="source",
                            hint="declare image[3, H, W], or use a grey example")
        pixels = pixels[:1]
    if pixels.shape[0] != channels:
        raise SpecError(f"the source has {pixels.shape[0]} channel{'s' if pixels.shape[0] != 1 else ''}, but the "
                        f"model's input has {channels}", arg="source")
    return pixels * levels // (top + 1)


class NonParametricSpec(Layer):
    """``nonparametric(window, source, eps=0.1)``: Efros-Leung sampling from an example image (a sampler only)."""

    name: ClassVar[str] = "nonparametric"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_texture:build_nonparametric"
    summary: ClassVar[str] = "Efros-Leung texture synthesis: pixels drawn from matching example neighbourhoods"
    window: Annotated[PositiveInt, Field(le=63)] = 7
    source: str
    eps: Annotated[float, Field(ge=0.0, le=10.0)] = 0.1

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if ctx.position != 0:
            raise SpecError("nonparametric reads the model's input pixels: it must be the only layer")
        _, grid = ar_input(ctx)
        if len(grid) != 2:
            raise SpecError(f"nonparametric synthesises images, but this model's input is {_a(ctx.input_type)}")
        if self.window % 2 == 0:
            raise SpecError(f"argument 'window' of nonparametric must be odd (got {self.window}): the "
                            f"neighbourhood is centred on the pixel", arg="window")
        out = ctx.output
        if out is not None and out.name != "categorical":
            raise SpecError(f"nonparametric draws each pixel from a histogram of example pixels: it needs output "
                            f"categorical, not {out.name}")
        problem = path_problem(self.source)
        if problem is not None or not self.source.lower().endswith(".png"):
            raise SpecError(f"cannot use this texture source: {problem or 'it must be a .png file'}", arg="source")
        path = Path(ctx.spec_dir) / self.source
        if not path.is_file():
            raise SpecError(f"texture source '{self.source}' not found (looked for {path})", arg="source")
        channels, levels = colour_groups(ctx), input_levels(ctx)
        try:
            pixels = _load(str(path.resolve()), path.stat().st_mtime, channels, levels,
                           ctx.limits.max_texture_pixels)
        except (PNGError, OSError, zlib.error, ValueError, struct.error, IndexError) as err:
            if isinstance(err, PNGError) and "pixels (limit" in str(err):
                raise SpecError(f"cannot read texture source '{self.source}': {err}", arg="source",
                                hint=f"raise the limit with {ctx.limits.flag('max_texture_pixels')} if this is "
                                     f"intended") from None
            if isinstance(err, SpecError):
                raise
            raise SpecError(f"cannot read texture source '{self.source}': {err}", arg="source") from None
        half, (hs, ws) = self.window // 2, pixels.shape[1:]
        candidates = max(0, hs - half) * max(0, ws - 2 * half)
        if candidates == 0:
            raise SpecError(f"the source ({hs}x{ws}) is smaller than the causal part of a {self.window}x{self.window} "
                            f"window: no neighbourhood to copy", arg="window")
        return LayerInfo(
            out_shape=(channels * levels, *grid), params=0, logdet="n/a",
            causal=CausalFacts(emits_params=True, takes_indices=True, cacheable=True, no_likelihood=NO_LIKELIHOOD,
                               causality_hint="a neighbourhood must exclude the pixel itself"),
            report=f"{self.window}x{self.window} window, {candidates} candidate neighbourhoods from "
                   f"{self.source} ({hs}x{ws}), eps {self.eps:g}; a sampler (no likelihood)",
            meta={"pixels": pixels, "channels": channels, "candidates": candidates})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        g, w = ctx.meta["channels"], self.window
        return maps.only(conv(as_groups(maps.main, g), masked_taps((w, w), (w // 2, w // 2), "A", g), groups=g))
