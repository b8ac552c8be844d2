"""Attention over sequences: ``attention(heads, dim, pattern)`` (Transformer / Sparse Transformer) and ``mlp(hidden)``.

Patterns (Child et al. 2019), each intersected with causality (key j <= query i):

- ``dense``: every j <= i;
- ``strided(stride=l)``: A1 = {max(0, i-l), ..., i} (the previous l positions) and
  A2 = {j : (i - j) mod l = 0} (every l-th position back);
- ``fixed(block=l, summary=c)``: A1 = {j : floor(j / l) = floor(i / l)} (the block so far) and
  A2 = {j : j mod l in {l-c, ..., l-1}} (the last c "summary" positions of every block).

With at least as many heads as index sets, head h attends to set h mod (number of sets)
(the paper's multi-head variant); with fewer heads every head attends to their union. A
layer is pre-norm and residual: ``x + W_o attn(LN(x))``; the first attention layer of a
model also adds learned position embeddings to its input. ``mlp(hidden)`` is the
Transformer's position-wise block ``x + W2 relu(W1 LN(x))``. The checker propagates each
pattern's index sets exactly (banded and strided unions, no L x L matrix), proves causality,
reports the pattern's density and checks that every earlier position reaches every later
one within the model's depth.

A condition (flattened, F features) is read by every attention layer as an added projection to
its residual stream (the same at every position); ``context_keys=K`` also makes it K extra keys
and values (``K`` tokens projected from it, through the layer's own key and value maps) that every
query may attend to besides its pattern's keys. The condition is not a position: reading it
never breaks causality, and the checker's index sets are those of the pattern alone.

Example:
    >>> import numpy as np
    >>> sets = StridedPattern(stride=2).index_sets(5)
    >>> [np.flatnonzero(s[4]).tolist() for s in sets]   # query 4: the last 2 back, then every 2nd back
    [[2, 3, 4], [0, 2, 4]]
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import BeforeValidator, Field

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import AR, ar_input, condition_note
from flowdsl.layers.dependency_sets import DepContext, DepMaps, accumulate, any_group, layout_of, read, unpack
from flowdsl.layers.registry import (
    CausalFacts,
    Family,
    Layer,
    LayerContext,
    LayerInfo,
    NonNegativeInt,
    PositiveInt,
    Spec,
)

__all__ = ["PATTERNS", "Pattern", "DensePattern", "StridedPattern", "FixedPattern", "AttentionSpec", "PositionMLPSpec",
           "head_masks", "pattern_density"]

PATTERNS = Family("pattern")


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _causal(n: int) -> np.ndarray:
    return np.tri(n, dtype=bool)


def _blocks(a: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """``[G, L, NB] -> [G, L' / size, size, NB]`` (zero-padded to a multiple of size)."""
    g, n, nb = a.shape
    padded = -(-n // size) * size
    out = np.zeros((g, padded, nb), dtype=a.dtype)
    out[:, :n] = a
    return out.reshape(g, padded // size, size, nb), n


def window(a: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = OR of a[j] for i - width <= j <= i`` in O(log width) shifted unions."""
    out, span = a.copy(), 1  # out covers offsets 0 .. span-1
    while span < width + 1:
        step = min(span, width + 1 - span)
        out |= read(out, (-step,))
        span += step
    return out


class Pattern(Spec):
    """An attention pattern: causal index sets over ``n`` positions, and their exact dependency rule."""

    def index_sets(self, n: int) -> list[np.ndarray]:
        """The paper's sets as ``bool [n, n]`` (query i, key j), intersected with j <= i."""
        return [s & _causal(n) for s in self.raw_sets(n)]

    def raw_sets(self, n: int) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def propagate(self, a: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - abstract
        """Per index set: ``out[g, i] = OR over j in the set of query i of a[g, j]`` (packed ``[G, L, NB]``)."""
        raise NotImplementedError

    def labels(self) -> tuple[str, ...]:
        return ("causal",)


@PATTERNS.register
class DensePattern(Pattern):
    name: ClassVar[str] = "dense"

    def raw_sets(self, n):
        return [np.ones((n, n), dtype=bool)]

    def propagate(self, a):
        return [accumulate(a, 0)]


@PATTERNS.register
class StridedPattern(Pattern):
    name: ClassVar[str] = "strided"
    stride: PositiveInt

    def raw_sets(self, n):
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        return [(j >= i - self.stride) & (j <= i), (i - j) % self.stride == 0]

    def propagate(self, a):
        blocks, n = _blocks(a, self.stride)
        every = np.bitwise_or.accumulate(blocks, axis=1).reshape(a.shape[0], -1, a.shape[2])[:, :n]
        return [window(a, self.stride), every]

    def labels(self):
        return ("local", "strided")


@PATTERNS.register
class FixedPattern(Pattern):
    name: ClassVar[str] = "fixed"
    block: PositiveInt
    summary: PositiveInt

    def raw_sets(self, n):
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        l, c = self.block, self.summary
        return [(j // l) == (i // l), np.broadcast_to((j % l) >= l - c, (n, n)).copy()]

    def propagate(self, a):
        blocks, n = _blocks(a, self.block)
        within = np.bitwise_or.accumulate(blocks, axis=2).reshape(a.shape[0], -1, a.shape[2])[:, :n]
        keep = (np.arange(a.shape[1]) % self.block) >= self.block - self.summary
        return [within, accumulate(np.where(keep[None, :, None], a, 0).astype(a.dtype), 0)]

    def labels(self):
        return ("block", "summary")


PatternField = Annotated[Pattern, BeforeValidator(PATTERNS.coerce)]


def head_assignment(heads: int, sets: int) -> list[tuple[int, ...]]:
    """Which index sets each head attends to: set h mod S with at least S heads, else all of them."""
    return [(h % sets,) for h in range(heads)] if heads >= sets else [tuple(range(sets))] * heads


def head_masks(pattern: Pattern, heads: int, n: int) -> np.ndarray:
    """``bool [heads, n, n]``: the keys each head's query i may attend to."""
    sets = pattern.index_sets(n)
    return np.stack([np.logical_or.reduce([sets[k] for k in ks]) for ks in head_assignment(heads, len(sets))])


def pattern_density(pattern: Pattern, n: int) -> tuple[int, int, int]:
    """``(attended pairs, causal pairs, pairs reading a later key)`` of the union of a pattern's sets, counted
    from the exact rule the checker propagates (the proof that the pattern is causal: the last count is 0)."""
    lay = layout_of("sequence", (n,))
    union = np.bitwise_or.reduce(pattern.propagate(DepMaps.identity(lay).main), axis=0)[0]
    count = later = 0
    for rows in np.array_split(np.arange(n), max(1, n // 512)):
        bits = unpack(union[rows], n)
        count += int(bits.sum())
        later += int((bits & (np.arange(n)[None, :] > rows[:, None])).sum())
    return count, n * (n + 1) // 2, later


def _sequence(ctx: LayerContext, name: str) -> tuple[int, int]:
    f, grid = ar_input(ctx)
    if len(grid) != 1:
        raise SpecError(f"{name} attends over sequences, but this model's input is {_a(ctx.input_type)} over a "
                        f"{len(grid)}-d grid {list(grid)}")
    return f, grid[0]


class AttentionSpec(Layer):
    """``attention(heads, dim, pattern=dense|strided(stride)|fixed(block, summary), context_keys=0)``: causal
    self-attention; with a condition, an added projection of it, and ``context_keys`` keys/values made from it."""

    name: ClassVar[str] = "attention"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_attention:build_attention"
    summary: ClassVar[str] = "causal multi-head self-attention (dense or Sparse Transformer patterns), residual"
    heads: Annotated[PositiveInt, Field(le=1024)] = 4
    dim: PositiveInt = 64
    pattern: PatternField = DensePattern()
    context_keys: Annotated[NonNegativeInt, Field(le=4096)] = 0

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, n = _sequence(ctx, self.name)
        c, keys = ctx.context_features, self.context_keys
        if keys and not c:
            raise SpecError(f"context_keys={keys} makes keys of the condition, but this layer reads none (the "
                            f"model declares no condition, or the layer says reads=false)", arg="context_keys",
                            hint="declare a condition, or drop context_keys")
        if self.dim % self.heads:
            raise SpecError(f"attention splits dim={self.dim} features over {self.heads} heads: dim must be "
                            f"divisible by heads", arg="heads")
        if isinstance(self.pattern, FixedPattern) and self.pattern.summary > self.pattern.block:
            raise SpecError(f"pattern fixed(block={self.pattern.block}, summary={self.pattern.summary}): a block "
                            f"cannot have more summary positions than positions", arg="pattern")
        if f != self.dim:
            raise SpecError(f"attention's residual connection needs {self.dim} input features, but it gets {f}",
                            arg="dim", hint=f"use dim={f}, or start the model with embed(dim={self.dim})")
        positions = "attention" not in ctx.previous
        d = self.dim
        params = (n * d if positions else 0) + 2 * d + (d * 3 * d + 3 * d) + (d * d + d)
        params += c * d + (c * keys * d + keys * d)  # the added projection; the context's keys
        attended, causal, later = pattern_density(self.pattern, n)
        if later:
            raise SpecError(f"attention pattern {self.pattern.describe()} attends to later positions "
                            f"({later} (query, key) pairs with key > query)", arg="pattern")
        labels = self.pattern.labels()
        assign = head_assignment(self.heads, len(labels))
        return LayerInfo(
            out_shape=(d, n), params=params, logdet="n/a",
            causal=CausalFacts(full_reach="attention", cacheable=True,
                               causality_hint="attention reads the current position: start the model "
                                              "with embed (which shifts the input by one)",
                               reach_remedy="stack more attention layers, or use a denser pattern"),
            reads_condition=c > 0,
            report=f"{self.heads} heads, pattern {self.pattern.describe()}, "
                   f"{100.0 * attended / causal:.1f}% of causal pairs" + (", learned positions" if positions else "")
                   + condition_note(c) + (f", as {keys} extra key{'s' if keys > 1 else ''}" if keys else ""),
            meta={"positions": positions, "length": n, "density": (attended, causal), "head_sets": assign})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        a = any_group(maps.main)
        return maps.only(np.bitwise_or.reduce(self.pattern.propagate(a), axis=0) | a)


class PositionMLPSpec(Layer):
    """``mlp(hidden)``: the Transformer's position-wise block x + W2 relu(W1 LN(x)) (any grid)."""

    name: ClassVar[str] = "mlp"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_attention:build_mlp"
    summary: ClassVar[str] = "position-wise residual MLP block (Transformer feed-forward)"
    hidden: PositiveInt = 256

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid = ar_input(ctx)
        if ctx.position == 0:
            raise SpecError("mlp reads the current position: it cannot be the first layer",
                            hint="start the model with embed (which shifts the input by one)")
        h = self.hidden
        return LayerInfo(out_shape=(f, *grid), params=2 * f + (f * h + h) + (h * f + f), logdet="n/a",
                         causal=CausalFacts(cacheable=True),
                         report=f"{f} -> {h} -> {f} features per position, residual",
                         meta={"in_features": f})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return maps.only(maps.main)
