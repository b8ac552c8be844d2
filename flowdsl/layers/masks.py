"""Coupling masks: which positions a coupling keeps (conditions on) and which it transforms.

``half``, ``checkerboard(p)``, ``channel(p)``, or an explicit list of 0/1 (1 = kept).
Each mask computes its boolean ``kept`` array for a per-example shape, or raises a
SpecError naming the shape it cannot split.

Example:
    >>> Checkerboard(parity=0).kept((1, 2, 2)).astype(int).tolist()
    [[[1, 0], [0, 1]]]
    >>> HalfMask().kept((5,)).astype(int).tolist()
    [1, 1, 0, 0, 0]
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import BeforeValidator

from flowdsl.errors import SpecError
from flowdsl.language.values import Symbol
from flowdsl.layers.registry import Bit, Family, Spec, _strict_int

__all__ = ["MASKS", "Mask", "HalfMask", "Checkerboard", "ChannelMask", "ExplicitMask", "MaskField"]

MASKS = Family("mask")


def _describe(shape) -> str:
    kind = {1: "vector", 3: "image"}.get(len(shape), "tensor")
    return f"{kind}[{', '.join(map(str, shape))}]"


class Mask(Spec):
    #: "index": kept/transformed parts are selected by index along one axis (features or channels);
    #: "spatial": a pattern over the whole tensor (checkerboard)
    style: ClassVar[str] = "index"

    def kept(self, shape: tuple[int, ...]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_split(kept: np.ndarray, what: str, shape) -> np.ndarray:
    if kept.all():
        raise SpecError(f"mask {what} keeps every position of {_describe(shape)}: the coupling would transform "
                        f"nothing", arg="mask")
    if not kept.any():
        raise SpecError(f"mask {what} keeps no position of {_describe(shape)}: the conditioner would have nothing "
                        f"to read", arg="mask")
    return kept


@MASKS.register
class HalfMask(Mask):
    """First half kept: features of a vector, channels of an image."""

    name: ClassVar[str] = "half"

    def kept(self, shape):
        n = shape[0]
        if n < 2:
            hint = "; use checkerboard(0) on images" if len(shape) == 3 else ""
            raise SpecError(f"mask half cannot split {n} {'channel' if len(shape) == 3 else 'dimension'} "
                            f"of {_describe(shape)}{hint}", arg="mask")
        axis = np.arange(n) < n // 2
        return np.broadcast_to(axis.reshape((n,) + (1,) * (len(shape) - 1)), shape).copy()


@MASKS.register
class Checkerboard(Mask):
    """Pixels with (row + column) % 2 == parity kept (images only)."""

    name: ClassVar[str] = "checkerboard"
    style: ClassVar[str] = "spatial"
    parity: Bit = 0

    def kept(self, shape):
        if len(shape) != 3:
            raise SpecError(f"checkerboard mask needs an image input, but this layer sees {_describe(shape)}",
                            arg="mask", hint="use mask=half on vectors")
        c, h, w = shape
        board = (np.add.outer(np.arange(h), np.arange(w)) % 2) == self.parity
        return _check_split(np.broadcast_to(board, shape).copy(), f"checkerboard({self.parity})", shape)


@MASKS.register
class ChannelMask(Mask):
    """channel(0): the first half of the channels kept; channel(1): the second half."""

    name: ClassVar[str] = "channel"
    parity: Bit = 0

    def kept(self, shape):
        if len(shape) != 3:
            raise SpecError(f"channel mask needs an image input, but this layer sees {_describe(shape)}",
                            arg="mask", hint="use mask=half on vectors")
        c = shape[0]
        if c < 2:
            raise SpecError(f"channel mask cannot split the single channel of {_describe(shape)}",
                            arg="mask", hint="use checkerboard(0), or squeeze(2) first")
        first = np.arange(c) < c // 2
        axis = first if self.parity == 0 else ~first
        return np.broadcast_to(axis[:, None, None], shape).copy()


class ExplicitMask(Mask):
    """An explicit list of 0/1 over the flattened input (1 = kept)."""

    name: ClassVar[str] = "list"
    bits: tuple[Bit, ...]

    def kept(self, shape):
        size = int(np.prod(shape))
        if len(self.bits) != size:
            raise SpecError(f"mask has {len(self.bits)} entries but the input {_describe(shape)} has {size}",
                            arg="mask")
        return _check_split(np.array(self.bits, dtype=bool).reshape(shape), self.describe(), shape)

    def describe(self) -> str:
        return "[" + ", ".join(map(str, self.bits)) + "]"


def _coerce(value):
    if isinstance(value, tuple):
        bits = []
        for v in value:
            v = _strict_int(v) if not isinstance(v, (tuple, Symbol, str)) else v
            if v not in (0, 1) or isinstance(v, bool):
                raise ValueError("an explicit mask is a list of 0 and 1")
            bits.append(v)
        return ExplicitMask(bits=tuple(bits))
    return MASKS.coerce(value)


MaskField = Annotated[Mask, BeforeValidator(_coerce)]
