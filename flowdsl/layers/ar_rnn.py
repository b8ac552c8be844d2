"""PixelRNN layers over images: ``row_lstm(hidden)`` and ``diagonal_bilstm(hidden)`` (van den Oord et al. 2016).

Row LSTM: an input-to-state ``1 x 3`` convolution with mask B over the current row, and a
state-to-state ``1 x 3`` convolution over the previous row's state: a triangular context.
Diagonal BiLSTM: an input-to-state 1x1 convolution with mask B, and per direction a
state-to-state ``2 x 1`` column convolution over the *skewed* map (row i shifted right by i),
so a state reads its left and upper neighbours; the right-to-left direction runs on the
mirrored map and is shifted down one row before the two are added, so it cannot see the
future. Both keep H and W; their output has ``hidden`` features (in colour groups on RGB).
A condition (flattened, F features) is an added projection ``U c`` to the input-to-state term of
every gate (one per direction): the same at every pixel, it adds no path between positions.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> ctx = LayerContext(shape=(32, 8, 8), model_kind="autoregressive", input_type="image", levels=17, position=1)
    >>> LAYERS.bind(Symbol("row_lstm", kwargs=(("hidden", 32),))).infer(ctx).params
    24704
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flowdsl.errors import SpecError
from flowdsl.layers.ar_basic import AR, ar_input, as_groups, check_groups, colour_groups, condition_note
from flowdsl.layers.ar_conv import masked_taps
from flowdsl.layers.dependency_sets import DepContext, DepMaps, accumulate, any_group, conv, group_allowed, read
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt

__all__ = ["RowLSTMSpec", "DiagonalBiLSTMSpec"]

_FIRST_HINT = "its input-to-state convolution uses mask B: start the model with masked_conv(mask=A, ...)"


def _rnn_input(ctx: LayerContext, name: str, hidden: int):
    f, grid = ar_input(ctx)
    if len(grid) != 2:
        raise SpecError(f"{name} needs an image input, but this model's input is a {ctx.input_type}")
    groups = colour_groups(ctx)
    check_groups(f, groups, "the number of input features")
    check_groups(hidden, groups, "hidden", arg="hidden")
    return f, grid, groups


class RowLSTMSpec(Layer):
    """``row_lstm(hidden)``: an LSTM that processes an image row by row, each row in one step."""

    name: ClassVar[str] = "row_lstm"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_rnn:build_row_lstm"
    summary: ClassVar[str] = "PixelRNN Row LSTM: row-by-row, 1x3 state-to-state, triangular context"
    hidden: PositiveInt = 64

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid, groups = _rnn_input(ctx, self.name, self.hidden)
        h, c = self.hidden, ctx.context_features
        return LayerInfo(
            out_shape=(h, *grid), params=f * 4 * h * 3 + 4 * h + h * 4 * h * 3 + c * 4 * h, logdet="n/a",
            causal=CausalFacts(causality_hint=_FIRST_HINT, blind_spot_remedy="gated_block removes it"),
            reads_condition=c > 0, report=f"{h} hidden, {grid[0]} sequential row steps" + condition_note(c),
            meta={"in_features": f, "groups": groups})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        g = ctx.meta["groups"]
        state = conv(as_groups(maps.main, g), masked_taps((1, 3), (0, 1), "B", g), groups=g)
        for r in range(1, state.shape[1]):  # state[r, c] also reads state[r-1, c-1..c+1], every group
            above = any_group(state[:, r - 1: r])
            spread = above | read(above, (0, -1)) | read(above, (0, 1))
            state[:, r] |= spread[:, 0]
        return maps.only(state)


class DiagonalBiLSTMSpec(Layer):
    """``diagonal_bilstm(hidden)``: two diagonal LSTMs over the skewed image; the full causal context."""

    name: ClassVar[str] = "diagonal_bilstm"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_rnn:build_diagonal_bilstm"
    summary: ClassVar[str] = "PixelRNN Diagonal BiLSTM: skewed diagonals, both directions, no blind spot"
    hidden: PositiveInt = 64

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid, groups = _rnn_input(ctx, self.name, self.hidden)
        h, c = self.hidden, ctx.context_features
        return LayerInfo(
            out_shape=(h, *grid), params=2 * (f * 4 * h + 4 * h + h * 4 * h * 2 + c * 4 * h), logdet="n/a",
            causal=CausalFacts(causality_hint=_FIRST_HINT), reads_condition=c > 0,
            report=f"{h} hidden per direction, {grid[0] + grid[1] - 1} sequential diagonal steps"
                   + condition_note(c),
            meta={"in_features": f, "groups": groups})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        g = ctx.meta["groups"]
        i2s = conv(as_groups(maps.main, g), [((0, 0), group_allowed(g, strict=False) if g > 1 else None)], groups=g)
        seen = any_group(i2s)
        out = []
        for reverse, step in ((False, -1), (True, 1)):
            # u[r, c]: what any unit of the state at (r, c) reads; it reads (r, c -/+ 1) and (r - 1, c)
            u = np.zeros_like(seen)
            for r in range(seen.shape[1]):
                base = seen[:, r] | (u[:, r - 1] if r else 0)
                u[:, r] = accumulate(base, axis=0, reverse=reverse)
            out.append(i2s | read(u, (0, step)) | read(u, (-1, 0)))
        left, right = out
        return maps.only(left | read(right, (-1, 0)))  # right-to-left shifted down one row
