"""Declared dependency structure of a layer: which outputs may depend on which inputs.

Positions are flattened per-example indices (row-major over the layer's shape). A
:class:`Dependency` is built once from numpy arrays at check time and materialises the
boolean Jacobian pattern ``matrix()[i, j]`` ("output i may depend on input j") only
when asked (tests, small models). It also says, for coverage, which input position
each output carries (``source``) and whether that output is actually transformed.

Example:
    >>> import numpy as np
    >>> dep = Dependency.coupling(np.array([True, True, False, False]))
    >>> dep.matrix().astype(int)
    array([[1, 0, 0, 0],
           [0, 1, 0, 0],
           [1, 1, 1, 0],
           [1, 1, 0, 1]])
    >>> dep.transformed.tolist()
    [False, False, True, True]
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Dependency", "MAX_MATRIX_SIZE"]

MAX_MATRIX_SIZE = 1 << 26  # refuse to materialise a Jacobian pattern with more entries than this

_SHARED: weakref.WeakValueDictionary[tuple[str, int], np.ndarray] = weakref.WeakValueDictionary()


def _shared(kind: str, size: int) -> np.ndarray:
    """Read-only ``arange``/``ones``/``zeros`` of a size, shared by every layer of that size while one holds it (a
    flow of many layers on a large input keeps one copy, not one per layer; nothing is kept after)."""
    array = _SHARED.get((kind, size))
    if array is None:
        if kind == "arange":
            array = np.arange(size)
        else:
            array = np.ones(size, bool) if kind == "ones" else np.zeros(size, bool)
        array.setflags(write=False)
        _SHARED[(kind, size)] = array
    return array


Kind = Literal["elementwise", "permutation", "coupling", "groups", "dense", "autoregressive", "explicit"]


@dataclass(frozen=True, eq=False)
class Dependency:
    """Allowed Jacobian pattern of a bijection on ``size`` flattened positions.

    kind:
        ``elementwise`` (diagonal), ``permutation`` (output i copies input ``source[i]``),
        ``coupling`` (``kept`` inputs copied; the others depend on themselves and every kept one),
        ``groups`` (output i depends on inputs of the same group: invertible 1x1 conv),
        ``dense`` (anything), ``autoregressive`` (output i depends on inputs of rank <= its
        rank, ``rank`` being positions in generation order), ``explicit`` (a given matrix).
    """

    kind: Kind
    size: int
    source: np.ndarray  # int[size]: the input position each output carries
    transformed: np.ndarray  # bool[size]: outputs that are a non-trivial function of the inputs
    data: np.ndarray | None = None  # kept mask, groups, ranks or matrix, by kind

    # -- constructors
    @classmethod
    def elementwise(cls, size: int) -> Dependency:
        return cls("elementwise", size, _shared("arange", size), _shared("ones", size))

    @classmethod
    def identity(cls, size: int) -> Dependency:
        return cls("permutation", size, _shared("arange", size), _shared("zeros", size))

    @classmethod
    def permutation(cls, source) -> Dependency:
        source = np.asarray(source, dtype=np.int64)
        return cls("permutation", len(source), source, _shared("zeros", len(source)))

    @classmethod
    def coupling(cls, kept) -> Dependency:
        kept = np.asarray(kept, dtype=bool).ravel()
        return cls("coupling", len(kept), _shared("arange", len(kept)), ~kept, kept)

    @classmethod
    def groups(cls, groups) -> Dependency:
        groups = np.asarray(groups, dtype=np.int64).ravel()
        return cls("groups", len(groups), _shared("arange", len(groups)), _shared("ones", len(groups)), groups)

    @classmethod
    def dense(cls, size: int) -> Dependency:
        return cls("dense", size, _shared("arange", size), _shared("ones", size))

    @classmethod
    def autoregressive(cls, rank, strict_outputs: bool = False) -> Dependency:
        """Output i depends on inputs j with ``rank[j] <= rank[i]`` (``<`` off the diagonal)."""
        rank = np.asarray(rank, dtype=np.int64).ravel()
        return cls("autoregressive", len(rank), _shared("arange", len(rank)), _shared("ones", len(rank)), rank)

    @classmethod
    def explicit(cls, matrix, transformed=None) -> Dependency:
        """A given pattern; ``transformed`` defaults to "every row that is not an identity row"."""
        matrix = np.asarray(matrix, dtype=bool)
        n = matrix.shape[0]
        if transformed is None:
            transformed = ~np.all(matrix == np.eye(n, dtype=bool), axis=1)
        return cls("explicit", n, _shared("arange", n), np.asarray(transformed, dtype=bool), matrix)

    # -- queries
    def matrix(self) -> np.ndarray:
        """The boolean pattern ``[size, size]``: entry (i, j) may be nonzero in dy_i/dx_j."""
        n = self.size
        if n * n > MAX_MATRIX_SIZE:
            raise ValueError(f"a {n}x{n} dependency matrix is too large to materialise")
        if self.kind == "elementwise":
            return np.eye(n, dtype=bool)
        if self.kind == "permutation":
            m = np.zeros((n, n), dtype=bool)
            m[np.arange(n), self.source] = True
            return m
        if self.kind == "dense":
            return np.ones((n, n), dtype=bool)
        data = self._data()
        if self.kind == "coupling":
            return np.eye(n, dtype=bool) | np.outer(~data, data)
        if self.kind == "groups":
            return data[:, None] == data[None, :]
        if self.kind == "autoregressive":
            return data[None, :] <= data[:, None]
        return data.copy()

    def _data(self) -> np.ndarray:
        """``data``, which the coupling, groups, autoregressive and explicit kinds carry."""
        if self.data is None:
            raise ValueError(f"a {self.kind} dependency needs its data array")
        return self.data

    def then(self, other: Dependency) -> Dependency:
        """The pattern of applying ``self`` and then ``other`` (boolean matrix product)."""
        a, b = self.matrix().astype(np.int64), other.matrix().astype(np.int64)
        return Dependency.explicit((b @ a) > 0)
