"""The dependency-set algebra autoregressive layers declare their structure with (numpy bitsets).

A network's activations are *streams* (the main data path, plus e.g. the vertical stack of a
gated PixelCNN, or summed ``skip`` connections), each a packed bitset array ``uint8 [G, *grid, NB]``:
for channel group ``g`` at grid position ``s``, the set of flattened input positions (bit ``q`` of
``NB = ceil(N / 8)`` bytes) that the features there depend on. Groups are colour channels (R, G, B
features of a PixelCNN) or a single group. A layer declares its structure by a
``dependencies(maps, ctx) -> DepMaps`` method on its spec, built from the operations here
(:func:`read`, :func:`conv`, :func:`mix`, :func:`accumulate`, :func:`connect`), so every tap of every
kernel, mask, shift, padding, channel group, residual and skip edge is propagated exactly. The
model check that runs these declarations is :mod:`flowdsl.analysis.causality`.

Layouts: ``vector[D]`` and ``sequence[L]`` have grid ``(D,)`` and one channel; ``image[C, H, W]`` has
grid ``(H, W)`` and C channels (sub-positions of a pixel, generated R, G, B in turn);
``video[T, C, H, W]`` has grid ``(T, H, W)``.

Example:
    >>> lay = layout_of("image", (1, 3, 3))
    >>> maps = DepMaps.identity(lay)
    >>> out = conv(maps.main, [((-1, 0), None), ((0, -1), None)])  # read above and left
    >>> members(out[0, 1, 1], lay.n).tolist()   # pixel (1, 1) reads (0, 1) and (1, 0)
    [1, 3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any, overload

import numpy as np

__all__ = [
    "Layout", "layout_of", "DepMaps", "DepContext", "read", "conv", "mix", "any_group", "connect", "union",
    "accumulate", "members", "pack", "unpack", "group_allowed",
]


# ----------------------------------------------------------------------------- layouts and maps
@dataclass(frozen=True, eq=False)
class Layout:
    """Where each input position sits: ``index[c, *s]`` is the flattened position of channel c at grid s."""

    input_type: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    channels: int
    index: np.ndarray

    @property
    def n(self) -> int:
        return int(prod(self.shape))

    def raster_order(self) -> np.ndarray:
        """Grid positions in raster order, the channels of each in turn."""
        return self.index.reshape(self.channels, -1).T.reshape(-1).copy()

    def coords(self, q: np.ndarray) -> np.ndarray:
        """Grid coordinates ``[len(q), ndim]`` of flattened positions."""
        inverse = np.empty(self.n, dtype=np.int64)
        inverse[self.index.reshape(-1)] = np.arange(self.n) % int(prod(self.grid))
        return np.stack(np.unravel_index(inverse[np.asarray(q)], self.grid), axis=-1)

    def describe(self, p: int) -> str:
        return str(tuple(int(v) for v in np.unravel_index(int(p), self.shape))) if len(self.shape) > 1 else str(int(p))


def layout_of(input_type: str, shape: Sequence[int]) -> Layout:
    shape = tuple(int(s) for s in shape)
    n = int(prod(shape))
    if len(shape) == 1:
        return Layout(input_type, shape, shape, 1, np.arange(n).reshape(1, n))
    if len(shape) == 3:
        return Layout(input_type, shape, shape[1:], shape[0], np.arange(n).reshape(shape))
    if len(shape) == 4:  # video [T, C, H, W]: channels are sub-positions of (t, h, w)
        return Layout(input_type, shape, (shape[0],) + shape[2:], shape[1],
                      np.arange(n).reshape(shape).transpose(1, 0, 2, 3).copy())
    raise ValueError(f"no autoregressive layout for shape {list(shape)}")


def pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=n, bitorder="little").astype(bool)


def members(bits: np.ndarray, n: int) -> np.ndarray:
    """The positions in one packed set."""
    return np.flatnonzero(unpack(bits, n))


@dataclass(frozen=True, eq=False)
class DepMaps:
    """The dependency sets of every stream after a layer; ``main`` feeds the next layer and the output."""

    layout: Layout
    streams: Mapping[str, np.ndarray]

    @classmethod
    def identity(cls, layout: Layout) -> DepMaps:
        """Each position reads itself: built packed (``N * ceil(N / 8)`` bytes, never an ``[N, N]`` bool array)."""
        index = layout.index
        packed = np.zeros(index.shape + ((layout.n + 7) // 8,), dtype=np.uint8)
        np.put_along_axis(packed, (index // 8)[..., None], (1 << (index % 8)).astype(np.uint8)[..., None], axis=-1)
        return cls(layout, {"main": packed})

    @property
    def main(self) -> np.ndarray:
        return self.streams["main"]

    @overload
    def get(self, name: str) -> np.ndarray | None: ...
    @overload
    def get(self, name: str, default: np.ndarray) -> np.ndarray: ...
    def get(self, name: str, default: np.ndarray | None = None) -> np.ndarray | None:
        return self.streams.get(name, default)

    def only(self, main: np.ndarray, **others: np.ndarray) -> DepMaps:
        """New maps holding ``main`` and the named streams (every other stream ends here)."""
        return DepMaps(self.layout, {"main": main, **others})


@dataclass(frozen=True)
class DepContext:
    """What a layer's ``dependencies`` rule sees."""

    layout: Layout
    position: int  # the layer's 0-based position: 0 reads the model's input
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    config: int = 0  # which configuration (e.g. MADE mask) is analysed

    @property
    def first(self) -> bool:
        return self.position == 0


# ----------------------------------------------------------------------------- operations
def read(a: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """``out[g, s] = a[g, s + offset]``, empty outside the grid (zero padding)."""
    out = np.zeros_like(a)
    src, dst = [slice(None)], [slice(None)]
    for d, size in zip(offset, a.shape[1:-1]):
        if abs(d) >= size:
            return out
        src.append(slice(max(d, 0), size + min(d, 0)))
        dst.append(slice(max(-d, 0), size - max(d, 0)))
    out[tuple(dst)] = a[tuple(src)]
    return out


def any_group(a: np.ndarray) -> np.ndarray:
    """The union over groups, ``[1, *grid, NB]``."""
    return np.bitwise_or.reduce(a, axis=0, keepdims=True)


def mix(a: np.ndarray, allowed: np.ndarray | None, groups: int | None = None) -> np.ndarray:
    """``out[go] = OR over gi with allowed[go, gi] of a[gi]``; ``None``: every group reads every group."""
    if allowed is None:
        u = any_group(a)
        return np.repeat(u, groups or a.shape[0], axis=0) if (groups or a.shape[0]) != 1 else u
    allowed = np.asarray(allowed, dtype=bool)
    out = np.zeros((allowed.shape[0],) + a.shape[1:], dtype=np.uint8)
    for go in range(allowed.shape[0]):
        sel = np.flatnonzero(allowed[go])
        if len(sel):
            out[go] = np.bitwise_or.reduce(a[sel], axis=0)
    return out


def conv(a: np.ndarray, taps: Sequence[tuple[Sequence[int], np.ndarray | None]], groups: int = 1) -> np.ndarray:
    """A convolution's dependency rule: output group go at s reads ``a[gi, s + offset]`` for each tap
    ``(offset, allowed)`` with ``allowed[go, gi]`` (``None``: all groups). Returns ``[groups, *grid, NB]``."""
    full = [off for off, allowed in taps if allowed is None]
    out = np.zeros((groups,) + a.shape[1:], dtype=np.uint8)
    if full:
        u = any_group(a)
        acc = np.zeros_like(u)
        for off in full:
            acc |= read(u, off)
        out |= acc
    for off, allowed in taps:
        if allowed is not None:
            out |= mix(read(a, off), allowed)
    return out


def connect(a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A dense pattern over a 1-d grid: ``out[g, s] = OR over t with matrix[s, t] of a[g, t]`` (MADE, attention)."""
    m = np.asarray(matrix, dtype=np.float32)
    return np.stack([pack((m @ np.unpackbits(a[g], axis=-1, bitorder="little").astype(np.float32)) > 0)
                     for g in range(a.shape[0])])


def union(*arrays: np.ndarray) -> np.ndarray:
    """Elementwise union (broadcasting a single group over several)."""
    out = arrays[0]
    for a in arrays[1:]:
        out = out | a
    return out


def accumulate(a: np.ndarray, axis: int, reverse: bool = False) -> np.ndarray:
    """Running union along grid ``axis`` (0-based): position s reads every position before it (after, if reverse)."""
    ax = axis + 1
    if reverse:
        a = np.flip(a, axis=ax)
    out = np.bitwise_or.accumulate(a, axis=ax)
    return np.flip(out, axis=ax).copy() if reverse else out


def group_allowed(groups: int, strict: bool) -> np.ndarray:
    """Colour-channel masks: group go reads groups gi < go (``strict``, mask A) or <= go (mask B)."""
    g = np.arange(groups)
    return (g[None, :] < g[:, None]) if strict else (g[None, :] <= g[:, None])
