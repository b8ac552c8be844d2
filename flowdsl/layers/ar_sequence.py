"""Autoregressive layers over sequences: ``embed``, ``causal_conv``, ``gated_residual`` (WaveNet), ``bytenet_block``.

A layer over a sequence maps features ``(F, L)`` to ``(F', L)``. The first layer reads the
model's input and must not see the current sample: ``embed(dim)`` shifts the input right by
one (position i embeds x_{i-1}; a learned start vector at 0), and a first ``causal_conv``
drops its current-sample tap (mask A: taps at -d, ..., -(k-1)d). Later causal convolutions
read taps ``-(k-1)d .. 0``. ``gated_residual`` carries two streams: the residual stream
(``residual`` features) feeds the next block, the running sum of the skip outputs (``skip``
features) is the main output, so the layer after a stack of blocks (WaveNet's head) reads
the summed skips. ``context=N`` on ``embed`` or ``causal_conv`` declares how many earlier
samples a prediction should see; the checker warns when the receptive field is shorter.

The condition (WaveNet's global and local conditioning, ByteNet's source): a vector (a label, a
``vector``, an ``embed`` mlp's output; any other layout flattened) is added through a Linear at every
step (global). A sequence map ``(C, L')`` (a ``sequence`` condition, or an ``embed`` net over
sequences such as ``seq_conv``) is local: ``gated_residual`` and ``causal_conv`` upsample it to the
input's length L (L a multiple of L') by repetition or a learned transposed convolution
(``upsample=repeat|transposed``) and read it through a 1x1 convolution at each step;
``bytenet_block`` reads a source map of the target's length at each position (the encoder-decoder).
The condition is not the input: reading its "future" never breaks causality.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> ctx = LayerContext(shape=(32, 100), model_kind="autoregressive", input_type="sequence", levels=256, position=1)
    >>> call = Symbol("gated_residual", kwargs=(("kernel", 2), ("dilation", 4), ("residual", 32), ("skip", 64)))
    >>> info = LAYERS.bind(call).infer(ctx)
    >>> info.out_shape, info.params, info.meta["offsets"]
    ((64, 100), 7328, (-4, 0))
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import AR, ar_input
from flowdsl.layers.ar_conv import read_context
from flowdsl.layers.dependency_sets import DepContext, DepMaps, any_group, conv, read
from flowdsl.layers.facts import ContextShape, Finding
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt, Word

__all__ = ["EmbedSpec", "CausalConv", "GatedResidualSpec", "ByteNetBlockSpec", "conv_offsets", "describe_dilations",
           "sequence_condition"]

Kernel = Annotated[PositiveInt, Field(le=64)]
Dilation = Annotated[PositiveInt, Field(le=1 << 20)]
Upsample = Annotated[Literal["repeat", "transposed"], Word]
_FIRST_HINT = "start the model with causal_conv (its first layer drops the current sample) or embed (shifts by one)"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _sequence(ctx: LayerContext, name: str) -> tuple[int, int]:
    f, grid = ar_input(ctx)
    if len(grid) != 1:
        raise SpecError(f"{name} models sequences, but this model's input is {_a(ctx.input_type)} over a "
                        f"{len(grid)}-d grid {list(grid)}", hint="use masked_conv or gated_block on images")
    return f, grid[0]


def conv_offsets(kernel: int, dilation: int, padding: str = "causal", first: bool = False) -> tuple[int, ...]:
    """The taps a 1-d convolution reads, relative to the output position.

    >>> conv_offsets(3, 2), conv_offsets(3, 2, first=True), conv_offsets(3, 2, "same")
    ((-4, -2, 0), (-4, -2), (-2, 0, 2))
    """
    if padding == "same":
        return tuple((j - (kernel - 1) // 2) * dilation for j in range(kernel))
    taps = tuple(-(kernel - 1 - j) * dilation for j in range(kernel))
    return taps[:-1] if first else taps


def describe_dilations(runs: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> str:
    """``[(dilations, kernels), ...]`` of the stacks -> "3 stacks of dilations 1..512, kernel 2".

    >>> describe_dilations([((1, 2, 4, 8), (2, 2, 2, 2))] * 3)
    '3 stacks of dilations 1..8, kernel 2'
    >>> describe_dilations([((1, 3), (3, 3))])
    '1 stack of dilations 1, 3, kernel 3'
    """
    def dil(d):
        doubling = len(d) > 2 and all(b == 2 * a for a, b in zip(d, d[1:]))
        return f"{d[0]}..{d[-1]}" if doubling else ", ".join(map(str, d))

    kernels = sorted({k for _, ks in runs for k in ks})
    ktext = f"kernel {kernels[0]}" if len(kernels) == 1 else "kernels " + ", ".join(map(str, kernels))
    stacks = f"{len(runs)} stack{'s' if len(runs) != 1 else ''}"
    if all(r[0] == runs[0][0] for r in runs):
        return f"{stacks} of dilations {dil(runs[0][0])}, {ktext}"
    return f"{stacks} of dilations " + "; ".join(dil(r[0]) for r in runs) + f", {ktext}"


def sequence_condition(context: ContextShape | None, length: int, name: str, upsample: str | None = "repeat"
                       ) -> dict:
    """How a layer over a sequence of ``length`` reads the condition: ``{"mode": None | "vector" | "map",
    "features": numbers read per step, "scale": L / L', "upsample": repeat | transposed}``.

    A sequence map ``(C, L')`` is read locally, upsampled ``L / L'`` times (``upsample=None``: the map must
    have the input's length); any other layout is read as a vector (flattened). A length that does not fit is
    a SpecError at the layer.

        >>> sequence_condition(ContextShape("sequence", (3, 4)), 16, "gated_residual")
        {'mode': 'map', 'features': 3, 'scale': 4, 'upsample': 'repeat'}
        >>> sequence_condition(ContextShape("vector", (5,)), 16, "gated_residual")["mode"]
        'vector'
    """
    if context is None or not context.features:
        return {"mode": None, "features": 0, "scale": 1, "upsample": upsample}
    if context.layout != "sequence":
        return {"mode": "vector", "features": context.features, "scale": 1, "upsample": upsample}
    c, lc = context.shape
    if upsample is None and lc != length:
        raise SpecError(f"{name} reads the condition's sequence map {context.describe()} at each of the input's "
                        f"{length} positions: the map's length must equal it (got {lc})",
                        hint=f"declare the source with length {length} (pad it), or give it an embed net that "
                             f"keeps its length")
    if length % lc:
        raise SpecError(f"{name} upsamples the condition's sequence map {context.describe()} to the input's length "
                        f"{length}: that must be a multiple of the map's length {lc}",
                        hint=f"use a condition length that divides {length}")
    return {"mode": "map", "features": c, "scale": length // lc, "upsample": upsample}


def _upsample_params(cond: dict) -> int:
    """Parameters of a learned upsampling (a transposed convolution, C -> C, kernel = stride = L / L')."""
    if cond["mode"] != "map" or cond["upsample"] != "transposed":
        return 0
    return cond["features"] ** 2 * cond["scale"] + cond["features"]


def _condition_report(cond: dict) -> str:
    if cond["mode"] == "map":
        s = cond["scale"]
        return ", local conditioning" + (f" (upsampled x{s} by {cond['upsample']})" if s > 1 else "")
    return ", global conditioning" if cond["mode"] else ""


def _upsample_findings(layer: Layer, info: LayerInfo) -> list[Finding]:
    """A warning at ``upsample=`` when it is written but the layer reads no sequence map."""
    cond = info.meta["condition"]
    if "upsample" in layer.model_fields_set and cond["mode"] != "map":
        return [Finding("warning", f"upsample={cond['upsample']} has no effect: {layer.name} reads no sequence "
                                   f"condition here (it upsamples a sequence[L'] condition to the input's length)",
                        arg="upsample")]
    return []


def _taps(offsets):
    return [((o,), None) for o in offsets]


class EmbedSpec(Layer):
    """``embed(dim, context=None)``: a learned embedding of the integer input, shifted right by one position.

    Position i receives the embedding of x_{i-1} (position 0 a learned start vector), so the
    layers after it may read the current position. It must be the model's first layer.
    """

    name: ClassVar[str] = "embed"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_sequence:build_embed"
    summary: ClassVar[str] = "embedding of the integer input, shifted right by one (a learned start vector)"
    dim: PositiveInt = 64
    context: PositiveInt | None = None

    def infer(self, ctx: LayerContext) -> LayerInfo:
        if ctx.position != 0:
            raise SpecError("embed reads the model's integer input: it must be the first layer",
                            hint="use conv1x1 to change the number of features later on")
        f, length = _sequence(ctx, self.name)
        levels = f
        return LayerInfo(out_shape=(self.dim, length), params=levels * self.dim + self.dim, logdet="n/a",
                         causal=CausalFacts(takes_indices=True, declared_context=self.context, cacheable=True),
                         report=f"{levels} levels -> {self.dim} features, shifted right by one",
                         meta={"levels": levels})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return maps.only(read(any_group(maps.main), (-1,)))


class CausalConv(Layer):
    """``causal_conv(kernel, channels, dilation=1, padding=causal, context=None)``: a dilated causal 1-d convolution.

    Output t reads inputs t-(k-1)d, ..., t-d, t; as the first layer (reading the model's input)
    the tap at t is dropped (mask A). ``padding=same`` centres the kernel and reads later
    samples: the checker reports it as a causality error. With a condition it adds a context bias
    (global: V h; local: a 1x1 convolution of the upsampled sequence map).
    """

    name: ClassVar[str] = "causal_conv"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_sequence:build_causal_conv"
    summary: ClassVar[str] = "dilated causal 1-d convolution (WaveNet); mask A as the first layer"
    kernel: Kernel = 2
    channels: PositiveInt = 64
    dilation: Dilation = 1
    padding: Annotated[Literal["causal", "same"], Word] = "causal"
    context: PositiveInt | None = None
    upsample: Upsample = "repeat"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, length = _sequence(ctx, self.name)
        cond = sequence_condition(read_context(ctx), length, self.name, self.upsample)
        first = ctx.position == 0
        offsets = conv_offsets(self.kernel, self.dilation, self.padding, first and self.padding == "causal")
        if not offsets:
            raise SpecError("a first causal_conv with kernel=1 reads no earlier sample (its only tap is the "
                            "current one, which mask A removes)", arg="kernel", hint="use kernel >= 2")
        hint = ("padding=same centres the kernel on the current sample and reads later ones: use padding=causal"
                if self.padding == "same" else _FIRST_HINT)
        return LayerInfo(
            out_shape=(self.channels, length),
            params=f * self.channels * len(offsets) + self.channels + cond["features"] * self.channels
            + _upsample_params(cond),
            logdet="n/a", reads_condition=cond["mode"] is not None,
            causal=CausalFacts(declared_context=self.context, causality_hint=hint, cacheable=True),
            report=f"kernel {self.kernel}, dilation {self.dilation}, {f} -> {self.channels} features"
                   + (", mask A" if first else "") + _condition_report(cond),
            meta={"in_features": f, "offsets": offsets, "dilation": self.dilation, "kernel": self.kernel,
                  "first": first, "condition": cond})

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        return _upsample_findings(self, info)

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return maps.only(conv(any_group(maps.main), _taps(ctx.meta["offsets"])))


class GatedResidualSpec(Layer):
    """``gated_residual(kernel, dilation, residual, skip)``: a WaveNet block (van den Oord et al. 2016).

    z = tanh(W_f * x + V_f h) . sigmoid(W_g * x + V_g h) with a dilated causal convolution over the
    residual stream x and the condition h, if any (global: a vector; local: a ``sequence[L']`` map
    upsampled to the input's length by ``upsample=repeat|transposed``, through a 1x1 convolution);
    the residual stream continues as x + 1x1(z) and the skip sum as s + 1x1(z). The first block of
    a stack reads its input as the residual stream (it must have ``residual`` features) and starts
    the skip sum.
    """

    name: ClassVar[str] = "gated_residual"
    models: ClassVar[frozenset[str]] = AR
    streams: ClassVar[bool] = True  # reads and writes the residual stream besides the main one (the skip sum)
    runtime: ClassVar[str] = "flowdsl.runtime.ar_sequence:build_gated_residual"
    summary: ClassVar[str] = "WaveNet block: gated dilated causal conv, residual and skip 1x1s (skips summed)"
    kernel: Kernel = 2
    dilation: Dilation = 1
    residual: PositiveInt = 64
    skip: PositiveInt = 128
    upsample: Upsample = "repeat"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, length = _sequence(ctx, self.name)
        cond = sequence_condition(read_context(ctx), length, self.name, self.upsample)
        starts = not (ctx.previous and ctx.previous[-1] == self.name)
        r, s, k = self.residual, self.skip, self.kernel
        if starts and f != r:
            raise SpecError(f"the first gated_residual of a stack reads its input as the residual stream: "
                            f"residual must equal the {f} input features (got {r})", arg="residual",
                            hint=f"use residual={f}, or put causal_conv(kernel=2, channels={r}) before it")
        if not starts and f != s:
            raise SpecError(f"gated_residual adds its skip output to the previous block's skip sum of {f} features "
                            f"(got skip={s})", arg="skip", hint=f"use skip={f} in every block of the stack")
        params = r * 2 * r * k + 2 * r + (r * r + r) + (r * s + s) + cond["features"] * 2 * r + _upsample_params(cond)
        offsets = conv_offsets(k, self.dilation)
        return LayerInfo(
            out_shape=(s, length), params=params, logdet="n/a",
            causal=CausalFacts(causality_hint=_FIRST_HINT, streams=self.streams, cacheable=True),
            reads_condition=cond["mode"] is not None,
            report=f"kernel {k}, dilation {self.dilation}, residual {r}, skip {s}"
                   + (" (starts the skip sum)" if starts else "") + _condition_report(cond),
            meta={"residual": r, "skip": s, "offsets": offsets, "dilation": self.dilation, "kernel": k,
                  "starts_stack": starts, "condition": cond})

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        return _upsample_findings(self, info)

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        residual = maps.get("residual")
        x = any_group(maps.main if residual is None else residual)
        z = conv(x, _taps(ctx.meta["offsets"]))
        skips = z if residual is None else (any_group(maps.main) | z)
        return maps.only(skips, residual=x | z)


class ByteNetBlockSpec(Layer):
    """``bytenet_block(kernel, dilation, channels)``: a ByteNet decoder residual block (Kalchbrenner et al. 2016).

    x + 1x1(relu(LN(conv_k,d(relu(LN(1x1(relu(LN(x))))))))): channels -> channels/2 -> masked
    dilated causal conv -> channels (layer norm over the features of each position). As the decoder
    of an encoder-decoder (``condition src: sequence[L] levels V embed seq_conv(...)``) the first 1x1
    also reads the source representation at the same position (the paper's concatenation of source
    and target); the source must have the target's length. A vector condition is read the same way
    at every position.
    """

    name: ClassVar[str] = "bytenet_block"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_sequence:build_bytenet_block"
    summary: ClassVar[str] = "ByteNet residual block: 1x1 down, masked dilated causal conv, 1x1 up, layer norms"
    kernel: Kernel = 3
    dilation: Dilation = 1
    channels: PositiveInt = 64

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, length = _sequence(ctx, self.name)
        c, k = self.channels, self.kernel
        if c % 2:
            raise SpecError(f"bytenet_block's inner convolution has channels/2 features: channels must be even "
                            f"(got {c})", arg="channels")
        if f != c:
            raise SpecError(f"bytenet_block's residual connection needs {c} input features, but it gets {f}",
                            arg="channels", hint=f"use channels={f}, or start with embed(dim={c})")
        cond = sequence_condition(read_context(ctx), length, self.name, None)
        h = c // 2
        params = 2 * c + (c * h + h) + 2 * h + (h * h * k + h) + 2 * h + (h * c + c) + cond["features"] * h
        report = {"map": ", reads the source at each position", "vector": ", conditional", None: ""}[cond["mode"]]
        return LayerInfo(
            out_shape=(c, length), params=params, logdet="n/a", reads_condition=cond["mode"] is not None,
            causal=CausalFacts(causality_hint=_FIRST_HINT, cacheable=True),
            report=f"kernel {k}, dilation {self.dilation}, {c} -> {h} -> {c} features, residual" + report,
            meta={"offsets": conv_offsets(k, self.dilation), "dilation": self.dilation, "kernel": k,
                  "condition": cond})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        x = any_group(maps.main)
        return maps.only(conv(x, _taps(ctx.meta["offsets"])) | x)
