"""A model's ``condition``: what it is conditioned on, how it is encoded, what its layers read.

``condition c: label[K] | vector[K] | image[C, H, W] | sequence[L] | sequence[L, C]``, optionally
``levels V`` (integer values, one-hot encoded like an input) and ``embed NET(..., out=F)`` (a context
encoder that trains with the model; any net of the registry that fits the condition's shape).

:class:`ConditionInfo` is the checked declaration. Its ``encoded`` shape is what every layer that
reads the condition sees (:class:`~flowdsl.layers.facts.ContextShape`):

==========================  ======================================  ==================================
declared                    encoding (no ``embed``)                 ``embed NET(out=F)``
==========================  ======================================  ==================================
``label[K]``                one-hot vector (K,)                     mlp: vector (F,) (a learned table)
``vector[K]`` [levels V]    vector (K,) [one-hot (K*V,)]            vector (F,)
``image[C,H,W]`` [levels V] image map (C, H, W) [(C*V, H, W)]       mlp: vector (F,); conv nets: (F, H, W)
``sequence[L(, C)]``        sequence map (C, L) [(C*V, L)]          vector (F,) (the net reads it flat)
==========================  ======================================  ==================================

Example:
    >>> from flowdsl.language.loader import load_source
    >>> from flowdsl.language.expand import Limits, expand_model
    >>> src = "flow f {\\n input x: vector[2]\\n condition c: image[1, 4, 4] embed mlp([8], out=3)\\n}\\n"
    >>> unit = load_source(src, "f.flow")
    >>> header, _ = expand_model(unit, unit.models[0], Limits())
    >>> cond = header.condition
    >>> cond.shape, cond.raw.describe(), cond.encoded.describe(), cond.embed_params
    ((1, 4, 4), 'image[1, 4, 4]', 'vector[3]', 163)
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, Literal

from flowdsl.errors import Pos, SpecError
from flowdsl.language.values import Symbol, describe
from flowdsl.layers.facts import ContextShape

__all__ = ["ConditionInfo", "CONDITION_TYPES", "CONDITION_SIZES", "condition_shapes", "split_embed_out"]

#: condition type -> the numbers of sizes it takes in brackets
CONDITION_SIZES: dict[str, tuple[int, ...]] = {"label": (1,), "vector": (1,), "image": (3,), "sequence": (1, 2)}
CONDITION_TYPES = tuple(CONDITION_SIZES)
MAX_LEVELS = 2**16  # a condition's levels are one-hot encoded: bounded well below an input's


@dataclass(frozen=True)
class ConditionInfo:
    """A checked ``condition`` declaration.

    ``shape`` is the per-example shape a caller passes (``()`` for a label); ``levels`` the number of
    classes of a label or the declared levels (None: real values); ``embed`` the bound net spec of the
    context encoder (None: none) with ``embed_out`` features.
    """

    name: str
    type_name: str
    shape: tuple[int, ...]
    levels: int | None
    pos: Pos
    embed: Any = None  # flowdsl.layers.nets.Net
    embed_out: int = 0
    embed_pos: Pos | None = None

    @property
    def classes(self) -> int:
        """The classes of a label condition (0 for the other types)."""
        return (self.levels or 0) if self.type_name == "label" else 0

    @property
    def integer(self) -> bool:
        """Whether a caller passes whole numbers (a label, or declared levels): a LongTensor."""
        return self.levels is not None

    @property
    def raw(self) -> ContextShape:
        """The condition one-hot encoded (integer values) or as given, before ``embed``."""
        return condition_shapes(self.type_name, self.shape, self.levels)

    @property
    def net_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The embed net's input and output shapes: a sequence ``(C, L)`` is read flat by a net that takes no
        sequences (``2 not in net.ranks``); an mlp (``flattens``) gives a vector, a convolutional net keeps the grid."""
        raw = self.raw
        ranks = getattr(self.embed, "ranks", (1, 3))
        in_shape = raw.shape if len(raw.shape) in ranks else (raw.features,)
        flattens = getattr(self.embed, "flattens", True)
        out_shape = (self.embed_out,) if len(in_shape) == 1 or flattens else (self.embed_out, *in_shape[1:])
        return in_shape, out_shape

    @property
    def encoded(self) -> ContextShape:
        """What the layers read: the raw encoding, or the embed net's output."""
        if self.embed is None:
            return self.raw
        out = self.net_shapes[1]
        layout: Literal["vector", "image", "sequence"] = ("vector", "sequence", "image")[min(len(out), 3) - 1]
        return ContextShape(layout, out)

    @property
    def embed_params(self) -> int:
        if self.embed is None:
            return 0
        return int(self.embed.param_count(*self.net_shapes))

    def describe(self) -> str:
        """The declaration as written (sizes evaluated): ``vector[10] embed mlp(...)``."""
        text = f"{self.type_name}[{self.levels if self.type_name == 'label' else ', '.join(map(str, self.shape))}]"
        if self.levels is not None and self.type_name != "label":
            text += f" levels {self.levels}"
        if self.embed is not None:
            net = self.embed.describe()
            inner = net[len(self.embed.name) + 1:-1] if net.endswith(")") else ""
            text += f" embed {self.embed.name}({inner + ', ' if inner else ''}out={self.embed_out})"
        return text


def condition_shapes(type_name: str, shape: tuple[int, ...], levels: int | None) -> ContextShape:
    """The encoding of a condition before ``embed`` (see the module's table).

        >>> condition_shapes("sequence", (16, 2), 3).describe()
        'sequence[6, 16]'
    """
    v = levels or 1
    if type_name == "label":
        return ContextShape("vector", (int(levels or 0),))
    if type_name == "vector":
        return ContextShape("vector", (shape[0] * v,))
    if type_name == "image":
        return ContextShape("image", (shape[0] * v, *shape[1:]))
    length, channels = shape[0], (shape[1] if len(shape) > 1 else 1)
    return ContextShape("sequence", (channels * v, length))


def split_embed_out(sym: Symbol) -> tuple[Symbol, Any, Pos | None]:
    """The embed call without its ``out=`` argument, the value of ``out`` and where it was written."""
    kwargs, kwarg_pos, out, where = [], [], None, None
    for (k, v), p in zip(sym.kwargs, sym.kwarg_pos):
        if k == "out":
            out, where = v, p
        else:
            kwargs.append((k, v))
            kwarg_pos.append(p)
    return Symbol(sym.name, sym.args, tuple(kwargs), sym.pos, sym.arg_pos, tuple(kwarg_pos)), out, where


def check_embed_out(out: Any, call_pos: Pos, out_pos: Pos | None) -> int:
    """``out=`` of an embed net: a whole number of features from 1 to 2**16 (SpecError otherwise)."""
    if out is None:
        raise SpecError("an embed net needs out=F, the number of features it gives the layers", call_pos,
                        hint="e.g. embed mlp([64, 64], out=16)")
    if isinstance(out, bool) or not isinstance(out, int) or not 1 <= out <= 2**16:
        raise SpecError(f"out must be a whole number of features from 1 to {2**16}, got {describe(out)}",
                        out_pos or call_pos)
    return out


def raw_size(type_name: str, shape: tuple[int, ...], levels: int | None) -> int:
    """Numbers in the encoded condition of one example (bounded by the input-size limit)."""
    return prod(condition_shapes(type_name, shape, levels).shape)
