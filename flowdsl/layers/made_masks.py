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

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx
import numpy as np

from flowdsl.layers.orders import OrderKey, permutation

__all__ = [
    "Order", "permutation", "input_degrees", "hidden_degrees", "mask_sets", "made_masks", "connectivity",
    "violations", "lost_dependencies", "generations", "transitive_closure", "MadeStructure", "analyze",
]

#: the key of an order (see :mod:`flowdsl.layers.orders`, where :func:`permutation` lives)
Order = OrderKey


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


def _drawn_degrees(rng: np.random.RandomState, width: int, prev: np.ndarray, n: int) -> np.ndarray:
    """Degrees ``lo..n-1`` (``lo``: the previous layer's lowest) drawn at random, as evenly as ``width`` allows."""
    lo, hi = int(prev.min()), n - 1
    if hi < lo:  # a single position: hidden units can feed no output
        return np.full(width, n)
    base = np.arange(lo, hi + 1)
    return rng.choice(base, width, replace=False) if width < len(base) else rng.permutation(np.resize(base, width))


@lru_cache(maxsize=256)
def _mask_sets_cached(orders: tuple[tuple[int, ...], ...], hidden: tuple[int, ...], features: int, params: int,
                      context: int, params_major: bool, draw_seed: int | None):
    out = []
    for k, perm in enumerate(orders):
        n = len(perm)
        d_in = input_degrees(np.array(perm, dtype=np.int64))
        rng = None if draw_seed is None else np.random.RandomState([draw_seed % 2**32, k, 2])  # any seed >= 0
        # input unit j * F + f has position j's degree; condition columns: degree 0
        prev = np.concatenate([np.repeat(d_in, features), np.zeros(context, dtype=np.int64)])
        lowest = d_in  # the degrees a drawn layer starts from: the inputs' (not the condition's 0)
        masks = []
        for width in hidden:
            d_h = hidden_degrees(width, n) if rng is None else _drawn_degrees(rng, width, lowest, n)
            masks.append(d_h[:, None] >= prev[None, :])
            prev = lowest = d_h
        d_out = np.tile(d_in, params) if params_major else np.repeat(d_in, params)
        masks.append(d_out[:, None] > prev[None, :])
        for m in masks:
            m.setflags(write=False)
        out.append(tuple(masks))
    return tuple(out)


def mask_sets(orders, hidden: Sequence[int], *, features: int = 1, params: int = 1, context: int = 0,
              params_major: bool = True, draw_seed: int | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
    """The masks ``[out, in]`` of every linear layer of a MADE, one set per order in ``orders`` (K sets).

    The only MADE mask generator (read-only arrays, cached). ``features`` input units per dimension
    (position-major: unit ``j * F + f``), then ``context`` condition columns; ``params`` outputs per
    dimension, parameter-major (output ``p * D + i``) or, with ``params_major=False``, position-major
    (output ``i * P + p``). Hidden degrees cycle through ``1..D-1`` (:func:`hidden_degrees`), or, with
    ``draw_seed``, set k draws them from ``RandomState([draw_seed, k, 2])`` (connectivity-agnostic; the
    condition columns' degree 0 does not lower the draw: a unit of degree 0 would read the condition only).

    >>> [m.shape for m in mask_sets([[1, 0]], (3,), features=2, params=4)[0]]
    [(3, 4), (8, 3)]
    """
    key = tuple(tuple(int(v) for v in o) for o in np.asarray(orders).reshape(len(orders), -1))
    return _mask_sets_cached(key, tuple(int(h) for h in hidden), int(features), int(params), int(context),
                             bool(params_major), None if draw_seed is None else int(draw_seed))


def made_masks(perm, hidden: Sequence[int], params_per_dim: int = 1, context: int = 0) -> tuple[np.ndarray, ...]:
    """The masks of a MADE conditioner net: one set, cycling degrees, parameter-major outputs.

    The first mask has ``n + context`` input columns; the last has ``params_per_dim * n`` rows.
    """
    return mask_sets([perm], hidden, params=params_per_dim, context=context)[0]


def connectivity(masks: Sequence[np.ndarray], n: int, params_per_dim: int = 1, features: int = 1,
                 params_major: bool = True) -> np.ndarray:
    """``bool[n, n]``: entry (i, j) when some path of the masked net joins an input of dim j to an output of dim i.

    Boolean products through float32 BLAS (the counts are exact integers below 2**24, and never round to 0).
    """
    reach = np.asarray(masks[0], dtype=np.float32)[:, : n * features]
    for m in masks[1:]:
        reach = ((np.asarray(m, dtype=np.float32) @ reach) > 0).astype(np.float32)
    hit = np.asarray(reach > 0).reshape(-1, n, features).any(axis=2)  # [out, n]
    if params_major:
        return np.asarray(hit.reshape(params_per_dim, n, n).any(axis=0))
    return np.asarray(hit.reshape(n, params_per_dim, n).any(axis=1))


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
