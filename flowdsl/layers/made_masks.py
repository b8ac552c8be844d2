"""MADE connectivity math (Germain et al. 2015), torch-free: orders, degrees, masks, causality.

A MADE is an MLP whose weight matrices are multiplied by fixed 0/1 masks so that output
``i`` reads only inputs that come before ``i`` in a chosen generation *order*. Everything
here is numpy (plus networkx for the pass count), so the checker can prove the property
before any torch module exists, and the runtime builds its buffers from the same masks.

Conventions (used throughout flowdsl):

- an order is a permutation ``perm``: ``perm[k]`` is the dimension generated k-th;
  ``rank[j]`` is the position of dimension ``j`` in it, its *degree* is ``rank[j] + 1``;
- masks are boolean ``[out, in]`` arrays, like ``torch.nn.Linear.weight``; the first layer's
  extra input columns (a condition) have degree 0 and are visible to every hidden unit;
- hidden unit degrees cycle through ``1 .. D-1``: unit ``u`` of a hidden layer may read inputs
  of degree <= its own (``>=`` mask), output copies of dim ``i`` read hidden units of degree
  < ``i``'s (``>`` mask); several parameters per dimension are ``params_per_dim`` blocks of
  ``D`` outputs (parameter-major: output ``p * D + i`` is parameter ``p`` of dimension ``i``);
- ``connectivity[i, j]``: some path joins input ``j`` to an output of dimension ``i`` (the
  boolean product of the masks). Causality holds iff it is strictly triangular in the order.

Example:
    >>> s = analyze(permutation("reverse", 3), hidden=(4,), params_per_dim=2)
    >>> s.rank.tolist(), [m.shape for m in s.masks]
    ([2, 1, 0], [(4, 3), (6, 4)])
    >>> s.connectivity.astype(int).tolist()     # dim 2 first, then 1, then 0
    [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    >>> s.violations, s.lost, s.generations
    ((), {}, ((2,), (1,), (0,)))
    >>> narrow = analyze(permutation("natural", 4), hidden=(1,))
    >>> narrow.lost                              # dims 2 and 3 cannot see dim 1
    {2: (1,), 3: (1, 2)}
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence, Union

import networkx as nx
import numpy as np

__all__ = [
    "Order", "permutation", "input_degrees", "hidden_degrees", "made_masks", "connectivity",
    "violations", "lost_dependencies", "generations", "transitive_closure", "MadeStructure", "analyze",
]

#: "natural", "reverse", ("random", seed) or an explicit sequence of dimensions
Order = Union[str, tuple, Sequence[int]]


def permutation(order: Order, n: int) -> np.ndarray:
    """The generation order as a permutation of ``0..n-1`` (``perm[k]``: the dim generated k-th).

    ``("random", seed)`` draws ``numpy.random.RandomState(seed).permutation(n)``, the same
    permutation as ``permute(random(seed=...))``. Raises ``ValueError`` for anything that is
    not a permutation of ``0..n-1``.

    >>> permutation("reverse", 3).tolist(), permutation(("random", 0), 3).tolist()
    ([2, 1, 0], [2, 1, 0])
    >>> permutation([0, 0, 1], 3)
    Traceback (most recent call last):
    ...
    ValueError: order [0, 0, 1] is not a permutation of 0..2
    """
    if order == "natural":
        return np.arange(n)
    if order == "reverse":
        return np.arange(n)[::-1].copy()
    if isinstance(order, tuple) and len(order) == 2 and order[0] == "random":
        return np.random.RandomState(int(order[1]) % (2**32)).permutation(n)
    if isinstance(order, str):
        raise ValueError(f"unknown order '{order}' (natural, reverse, random(seed=N) or a list)")
    perm = list(order)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in perm) or \
            sorted(perm) != list(range(n)):
        text = "[" + ", ".join(str(v) for v in perm) + "]"
        raise ValueError(f"order {text} is not a permutation of 0..{n - 1}")
    return np.asarray(perm, dtype=np.int64)


def input_degrees(perm: np.ndarray) -> np.ndarray:
    """Degree of each input dimension: ``1 + its position in the order``."""
    return np.argsort(np.asarray(perm)) + 1


def hidden_degrees(width: int, n: int) -> np.ndarray:
    """Degrees of a hidden layer of ``width`` units for ``n`` inputs: ``1, 2, .., n-1, 1, 2, ..``.

    With ``n == 1`` every unit has degree 0 (it sees only the condition, if any). A layer
    narrower than ``n - 1`` lacks the degrees above its width.

    >>> hidden_degrees(5, 4).tolist(), hidden_degrees(2, 1).tolist()
    ([1, 2, 3, 1, 2], [0, 0])
    """
    if n <= 1:
        return np.zeros(width, dtype=np.int64)
    return np.arange(width, dtype=np.int64) % (n - 1) + 1


@lru_cache(maxsize=256)
def _masks_cached(perm: tuple[int, ...], hidden: tuple[int, ...], params_per_dim: int, context: int):
    n = len(perm)
    d_in = input_degrees(np.array(perm, dtype=np.int64))
    prev = np.concatenate([d_in, np.zeros(context, dtype=np.int64)])  # condition columns: degree 0
    masks = []
    for width in hidden:
        d_h = hidden_degrees(width, n)
        masks.append(d_h[:, None] >= prev[None, :])
        prev = d_h
    d_out = np.tile(d_in, params_per_dim)
    masks.append(d_out[:, None] > prev[None, :])
    for m in masks:
        m.setflags(write=False)
    return tuple(masks)


def made_masks(perm, hidden: Sequence[int], params_per_dim: int = 1, context: int = 0) -> tuple[np.ndarray, ...]:
    """The boolean masks ``[out, in]`` of every linear layer of a MADE (read-only, cached).

    The first mask has ``n + context`` input columns; the last has ``params_per_dim * n`` rows.
    """
    return _masks_cached(tuple(int(v) for v in perm), tuple(int(h) for h in hidden), int(params_per_dim), int(context))


def connectivity(masks: Sequence[np.ndarray], n: int, params_per_dim: int = 1) -> np.ndarray:
    """``bool[n, n]``: entry (i, j) when some path of the masked net joins input j to an output of dim i."""
    reach = np.asarray(masks[0], dtype=np.int64)[:, :n]
    for m in masks[1:]:
        reach = (np.asarray(m, dtype=np.int64) @ reach > 0).astype(np.int64)
    return reach.reshape(params_per_dim, n, n).any(axis=0)


def violations(conn: np.ndarray, perm) -> tuple[tuple[int, int], ...]:
    """Pairs (i, j) where output dim i reads input j although j does not come before i."""
    rank = np.argsort(np.asarray(perm))
    bad = conn & (rank[None, :] >= rank[:, None])
    return tuple((int(i), int(j)) for i, j in np.argwhere(bad))


def lost_dependencies(conn: np.ndarray, perm) -> dict[int, tuple[int, ...]]:
    """For each dim whose conditional misses an earlier input: the earlier inputs it cannot read."""
    rank = np.argsort(np.asarray(perm))
    missing = ~conn & (rank[None, :] < rank[:, None])
    return {int(i): tuple(int(j) for j in sorted(np.flatnonzero(missing[i]), key=lambda j: rank[j]))
            for i in sorted(np.flatnonzero(missing.any(axis=1)), key=lambda i: rank[i])}


def generations(conn: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """The dims grouped by the pass of a sequential inverse that can compute them.

    Group g holds the dims whose inputs all lie in groups before g (networkx's topological
    generations of the graph ``j -> i`` for every ``conn[i, j]``); an autoregressive inverse
    needs ``len(generations(conn))`` passes, the depth of that DAG (D for a full MADE).
    Raises ``ValueError`` naming a cycle if ``conn`` is not acyclic.
    """
    n = conn.shape[0]
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from((int(j), int(i)) for i, j in np.argwhere(conn) if i != j)
    try:
        return tuple(tuple(sorted(int(v) for v in gen)) for gen in nx.topological_generations(g))
    except nx.NetworkXUnfeasible:
        cycle = " -> ".join(str(u) for u, _ in nx.find_cycle(g))
        raise ValueError(f"the dependency graph has a cycle ({cycle}): no sequential inverse exists") from None


def transitive_closure(matrix: np.ndarray) -> np.ndarray:
    """Reflexive-transitive closure of a boolean ``[n, n]`` relation (repeated squaring)."""
    reach = np.asarray(matrix, dtype=bool) | np.eye(matrix.shape[0], dtype=bool)
    while True:
        nxt = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
        if (nxt == reach).all():
            return reach
        reach = nxt


@dataclass(frozen=True, eq=False)
class MadeStructure:
    """Everything the checker and the runtime need about one MADE (see :func:`analyze`)."""

    perm: np.ndarray
    rank: np.ndarray
    masks: tuple[np.ndarray, ...]
    connectivity: np.ndarray
    violations: tuple[tuple[int, int], ...]
    lost: dict[int, tuple[int, ...]]
    generations: tuple[tuple[int, ...], ...]

    @property
    def complete(self) -> bool:
        """Whether every conditional reads every earlier dimension (the full triangle)."""
        return not self.lost

    @property
    def passes(self) -> int:
        """Sequential passes of the inverse direction: the depth of the dependency DAG."""
        return len(self.generations)


def analyze(perm, hidden: Sequence[int], params_per_dim: int = 1, context: int = 0) -> MadeStructure:
    """Masks, connectivity, causality violations, lost dependencies and passes of a MADE."""
    perm = np.asarray(perm, dtype=np.int64)
    n = len(perm)
    masks = made_masks(perm, hidden, params_per_dim, context)
    conn = connectivity(masks, n, params_per_dim)
    bad = violations(conn, perm)
    gens = generations(conn) if not bad else ()
    return MadeStructure(perm, np.argsort(perm), masks, conn, bad, lost_dependencies(conn, perm), gens)
