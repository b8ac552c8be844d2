"""Autoregressive layers over vectors (fvbn, nade, made) and glue (relu, conv1x1); the output head.

Shapes in the IR of an autoregressive model are ``(features, *grid)``: ``(F, D)`` over a
vector or sequence, ``(F, H, W)`` over an image (the C colour channels of a pixel are
sub-positions; image layers split their F features into C channel groups, group c
predicting channel c), ``(F, T, H, W)`` over a video. The first layer's context still
carries the input's declared shape: it reads the one-hot input, ``C * levels`` features per
grid position (:func:`ar_input`). ``fvbn``, ``nade`` and ``made`` emit the output
distribution's parameters themselves (``(P, D)``, ``CausalFacts.emits_params``); after any
other last layer the output head, a 1x1 projection (mask B over colour groups), maps the
features to P parameters per position (:func:`flowdsl.layers.ar_output.output_head`).
Every layer declares its exact dependency structure for :mod:`flowdsl.analysis.causality`.

Example:
    >>> from flowdsl.layers.registry import LAYERS, LayerContext
    >>> from flowdsl.language.values import Symbol
    >>> from flowdsl.layers.registry import OUTPUTS
    >>> ctx = LayerContext(shape=(16,), model_kind="autoregressive", levels=2, output=OUTPUTS.bind("bernoulli"))
    >>> info = LAYERS.bind(Symbol("fvbn")).infer(ctx)
    >>> info.out_shape, info.params   # 16 x 16 weights over a 2-level one-hot, a bias each
    ((1, 16), 528)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from flowdsl.errors import SpecError
from flowdsl.layers import made_masks as made_math
from flowdsl.layers.budgets import linear_params, made_analysis_bytes, refuse_bytes, refuse_params
from flowdsl.layers.dependency_sets import DepContext, DepMaps, any_group, connect, conv, group_allowed
from flowdsl.layers.distributions import CategoricalSpec
from flowdsl.layers.orders import MODEL_ORDERS, ModelOrderField, Natural, Order
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, PositiveInt

__all__ = [
    "AR", "ar_input", "input_levels", "condition_note", "colour_groups", "params_per_position", "as_groups",
    "check_groups",
    "FVBNSpec", "NADESpec", "MadeModel", "MADE_ORDERS", "made_layer_masks", "ReLUSpec", "Conv1x1",
]

AR = frozenset({"autoregressive"})


def input_levels(ctx: LayerContext) -> int:
    """The model input's levels; SpecError when the input is not discrete."""
    if ctx.levels is None:
        raise SpecError("an autoregressive model needs a discrete input", hint="add 'levels N' after the input type")
    return ctx.levels


def ar_input(ctx: LayerContext) -> tuple[int, tuple[int, ...]]:
    """``(features per grid position, grid)`` a layer receives; the one-hot input for the first layer."""
    if ctx.position > 0:
        return ctx.shape[0], tuple(ctx.shape[1:])
    levels = input_levels(ctx)
    shape = ctx.shape
    if len(shape) == 1:
        return levels, shape
    if len(shape) == 3:
        return shape[0] * levels, shape[1:]
    return shape[1] * levels, (shape[0],) + shape[2:]


def colour_groups(ctx: LayerContext) -> int:
    """Channels per grid position of the model's input (R, G, B: 3); 1 for vectors and sequences."""
    shape = ctx.input_shape or (ctx.shape if ctx.position == 0 else ())
    if len(shape) == 3:
        return shape[0]
    if len(shape) == 4:
        return shape[1]
    return 1


def params_per_position(ctx: LayerContext) -> int:
    out = ctx.output or CategoricalSpec()
    return out.params_per_position(ctx.levels)


def as_groups(a: np.ndarray, groups: int) -> np.ndarray:
    """A stream with ``groups`` channel groups (a single group's set is shared by all)."""
    if a.shape[0] == groups:
        return a
    if a.shape[0] == 1:
        return np.repeat(a, groups, axis=0)
    raise ValueError(f"a stream of {a.shape[0]} groups cannot be read as {groups}")


def check_groups(features: int, groups: int, subject: str, arg: str | None = None) -> None:
    """Colour images: features split evenly into R, G, B groups (SpecError otherwise)."""
    if groups > 1 and features % groups:
        raise SpecError(f"{subject} ({features}) must be divisible by the {groups} colour channels: "
                        f"each channel's prediction gets its own group of features", arg=arg)


# ----------------------------------------------------------------------------- vector layers
def _vector(ctx: LayerContext, name: str) -> tuple[int, int]:
    features, grid = ar_input(ctx)
    if len(grid) != 1:
        raise SpecError(f"{name} models vectors and sequences, but its input is over a {len(grid)}-d grid "
                        f"{list(grid)}", hint="use masked_conv or gated_block on images")
    return features, grid[0]


def condition_note(context: int) -> str:
    """The report's note on the condition a layer reads (``context`` encoded features; 0: none)."""
    return f"; reads the condition ({context} features)" if context else ""


def _strict_prefix(maps: DepMaps) -> DepMaps:
    """Position i reads every position before i (all features): FVBN, NADE."""
    a = any_group(maps.main)[0]
    out = np.zeros_like(a)
    out[1:] = np.bitwise_or.accumulate(a, axis=0)[:-1]
    return maps.only(out[None])


class FVBNSpec(Layer):
    """``fvbn``: p(x_i | x_<i) from a linear function of every earlier position (Frey 1998).

    params_i = b_i + sum_{j<i} W_ij x_j (+ U_i y with a condition y: a context term in each logistic
    conditional, read by no other position's). Arguments: none.
    References: B. Frey, Graphical Models for Machine Learning (1998).
    """

    name: ClassVar[str] = "fvbn"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_basic:build_fvbn"
    summary: ClassVar[str] = "fully visible belief network: logistic conditionals on every earlier position"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, d = _vector(ctx, "fvbn")
        p, c = params_per_position(ctx), ctx.context_features
        return LayerInfo(out_shape=(p, d), params=d * p * d * f + d * p + d * p * c, logdet="n/a",
                         causal=CausalFacts(emits_params=True, cacheable=ctx.position == 0), reads_condition=c > 0,
                         report=f"{d} conditionals, each linear in all earlier positions" + condition_note(c),
                         meta={"in_features": f, "positions": d, "params_per_position": p, "context": c})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return _strict_prefix(maps)


class NADESpec(Layer):
    """``nade(hidden)``: one hidden layer whose weights all conditionals share; O(D H) per pass.

    h_i = sigmoid(c + W x_<i), params_i = V_i h_i + b_i (Larochelle & Murray 2011); with a condition y the
    hidden pre-activation of every conditional gains U y (shared, like c: it opens no path between positions).
    """

    name: ClassVar[str] = "nade"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_basic:build_nade"
    summary: ClassVar[str] = "NADE: shared hidden weights, O(DH) density evaluation"
    hidden: PositiveInt = 500

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, d = _vector(ctx, "nade")
        p, h, c = params_per_position(ctx), self.hidden, ctx.context_features
        return LayerInfo(out_shape=(p, d), params=h * d * f + h + d * p * h + d * p + h * c, logdet="n/a",
                         causal=CausalFacts(emits_params=True, cacheable=ctx.position == 0), reads_condition=c > 0,
                         report=f"{h} shared hidden units; one O(DH) pass" + condition_note(c),
                         meta={"in_features": f, "positions": d, "params_per_position": p, "context": c})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return _strict_prefix(maps)


# ----------------------------------------------------------------------------- MADE as a model
#: the orders the MADE model accepts (natural, reverse, random, agnostic: :mod:`flowdsl.layers.orders`)
MADE_ORDERS = MODEL_ORDERS


@lru_cache(maxsize=64)
def _made_cached(d: int, features: int, p: int, hidden: tuple, masks: int, order: Order, context: int):
    orders = order.orders(d, masks)
    sets = made_math.mask_sets(orders, hidden, features=features, params=p, context=context, params_major=False,
                               draw_seed=order.seed_value)
    conns = [made_math.connectivity(m, d, p, features, params_major=False) for m in sets]
    return orders, tuple(zip(sets, conns))


def made_layer_masks(layer: MadeModel, d: int, features: int, p: int, context: int = 0):
    """``(orders [K, D], ((masks, connectivity[D, D]), ...))`` of a MADE layer, one entry per mask.

    ``context``: the condition's encoded features, the first mask's last columns (degree 0: every hidden
    unit reads them; no output reads them but through a hidden unit, so they add no path between positions).

    >>> layer = MadeModel(hidden=(4,))
    >>> _, ((masks, conn),) = made_layer_masks(layer, 3, 2, 1, context=5)
    >>> masks[0].shape, bool(masks[0][:, 6:].all()), conn.astype(int).tolist()
    ((4, 11), True, [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    """
    return _made_cached(d, features, p, tuple(layer.hidden), layer.masks, layer.order, int(context))


class MadeModel(Layer):
    """``made([h1, ...], masks=K, order=natural|reverse|random(seed=N)|agnostic)``: a masked autoencoder.

    With K > 1 masks, training cycles through K hidden-degree draws (connectivity-agnostic);
    ``order=agnostic`` also draws an input order per mask. At evaluation the model's log-prob
    is the exact log of the average of the K masks' probabilities (Germain et al. 2015).
    Each draw assigns the degrees ``lo..D-1`` to a hidden layer's units at random but as evenly
    as its width allows (``lo``: the previous layer's lowest), so layers of at least D-1 units
    miss no dependency; narrower ones leave a blind spot, which the checker reports. A condition enters
    the first layer as extra columns of degree 0: every hidden unit reads it, and it adds no path between
    positions (:func:`made_layer_masks`); a direct linear term of it in every conditional reaches the
    first position's too, which no hidden unit feeds.
    """

    name: ClassVar[str] = "made"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_basic:build_made"
    summary: ClassVar[str] = "MADE: masked autoencoder; order- and connectivity-agnostic with several masks"
    hidden: tuple[PositiveInt, ...] = (500,)
    masks: Annotated[PositiveInt, Field(le=256)] = 1
    order: ModelOrderField = Natural()

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, d = _vector(ctx, "made")
        p, c = params_per_position(ctx), ctx.context_features
        sizes = [d * f + c, *self.hidden, d * p]
        refuse_params("made", linear_params(sizes), ctx.limits)  # from the widths, before any mask exists
        refuse_bytes(f"the {self.masks} mask set{'s' if self.masks > 1 else ''} of made",
                     made_analysis_bytes(sizes, d, sets=self.masks), ctx.limits)
        orders, per_mask = made_layer_masks(self, d, f, p, c)
        full = all(int(np.tril(conn[np.ix_(o, o)], -1).sum()) == d * (d - 1) // 2
                   for (_, conn), o in zip(per_mask, orders))
        return LayerInfo(
            out_shape=(p, d), params=linear_params(sizes) + c * d * p, logdet="n/a",
            causal=CausalFacts(emits_params=True, cacheable=ctx.position == 0,
                               orders=tuple(tuple(int(v) for v in o) for o in orders),
                               blind_spot_remedy=f"hidden layers of at least {max(d - 1, 1)} units remove it"),
            reads_condition=c > 0,
            report=f"{self.masks} mask{'s' if self.masks > 1 else ''}, order {self.order.describe()}"
                   f"{'' if full else '; some conditionals miss earlier positions'}" + condition_note(c),
            meta={"in_features": f, "positions": d, "params_per_position": p, "context": c})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        d, f, p = ctx.meta["positions"], ctx.meta["in_features"], ctx.meta["params_per_position"]
        _, per_mask = made_layer_masks(self, d, f, p, ctx.meta.get("context", 0))
        return maps.only(connect(any_group(maps.main), per_mask[ctx.config % len(per_mask)][1]))


# ----------------------------------------------------------------------------- glue
class ReLUSpec(Layer):
    """``relu``: elementwise max(0, x) on the main stream."""

    name: ClassVar[str] = "relu"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_basic:build_relu"
    summary: ClassVar[str] = "elementwise ReLU"

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid = ar_input(ctx)
        return LayerInfo(out_shape=(f, *grid), params=0, logdet="n/a", causal=CausalFacts(cacheable=True),
                         report="elementwise")

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        return maps.only(maps.main)


class Conv1x1(Layer):
    """``conv1x1(channels)``: a per-position linear map; on colour images, mask B over the R, G, B groups."""

    name: ClassVar[str] = "conv1x1"
    models: ClassVar[frozenset[str]] = AR
    runtime: ClassVar[str] = "flowdsl.runtime.ar_basic:build_conv1x1"
    summary: ClassVar[str] = "per-position linear map (1x1 convolution)"
    channels: PositiveInt

    def infer(self, ctx: LayerContext) -> LayerInfo:
        f, grid = ar_input(ctx)
        groups = colour_groups(ctx)
        check_groups(self.channels, groups, "channels", arg="channels")
        check_groups(f, groups, "the number of input features")
        return LayerInfo(out_shape=(self.channels, *grid), params=f * self.channels + self.channels, logdet="n/a",
                         causal=CausalFacts(cacheable=True, causality_hint="a 1x1 map reads the current position: "
                                                                           "put it after a masked layer"),
                         report=f"{f} -> {self.channels} features per position",
                         meta={"in_features": f, "groups": groups})

    def dependencies(self, maps: DepMaps, ctx: DepContext) -> DepMaps:
        g = ctx.meta["groups"]
        a = as_groups(maps.main, g)
        zero = (0,) * (a.ndim - 2)
        return maps.only(conv(a, [(zero, group_allowed(g, strict=False) if g > 1 else None)], groups=g))
