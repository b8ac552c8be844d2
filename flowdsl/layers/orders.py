"""Generation orders: one spec family for ``permute(...)``, the ``made([...])`` net and the ``made(...)`` model.

An order is ``natural``, ``reverse``, ``random(seed=N)``, ``agnostic(seed=N)`` (a fresh random order per
configuration: order-agnostic MADE) or an explicit list ``[2, 0, 1]``. Every order gives
:meth:`Order.permutation` (``perm[k]``: the dimension generated, or the feature moved, k-th) and
:meth:`Order.orders` (one permutation per configuration, ``[K, n]``). Three families select the
members each argument accepts, with their own names in messages (the syntax is unchanged):

- :data:`PERMUTATIONS` (``permute(order)``): reverse, random, a list;
- :data:`NET_ORDERS` (``made([...], order=...)``, and the ``order=`` of MAF/IAF): natural, reverse, random, a list;
- :data:`MODEL_ORDERS` (the ``made(...)`` model layer): natural, reverse, random, agnostic.

``random(seed=N)`` draws ``numpy.random.RandomState(N mod 2**32).permutation(n)`` everywhere;
``agnostic(seed=N)`` draws configuration k from ``RandomState([N mod 2**32, k, 1])`` (any N >= 0 in both).

Example:
    >>> permutation("reverse", 3).tolist(), permutation(("random", 0), 3).tolist()
    ([2, 1, 0], [2, 1, 0])
    >>> from flowdsl.language.values import Symbol
    >>> PERMUTATIONS.bind(Symbol("random", kwargs=(("seed", 3),))).permutation(4).tolist()
    [3, 1, 0, 2]
    >>> AgnosticOrder(seed=5).orders(4, 2).tolist()   # one order per configuration
    [[2, 1, 0, 3], [0, 2, 3, 1]]
    >>> permutation([0, 0, 1], 3)
    Traceback (most recent call last):
    ...
    ValueError: order [0, 0, 1] is not a permutation of 0..2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import numpy as np
from pydantic import BeforeValidator

from flowdsl.errors import SpecError
from flowdsl.layers.registry import Family, Seed, Spec, seed32

__all__ = [
    "OrderKey", "permutation", "Order", "Natural", "Reverse", "RandomOrder", "AgnosticOrder", "ExplicitOrder",
    "PERMUTATIONS", "NET_ORDERS", "MODEL_ORDERS", "PermutationField", "NetOrderField", "ModelOrderField",
]

#: "natural", "reverse", ("random", seed) or an explicit sequence of dimensions
OrderKey = str | tuple | Sequence[int]


def permutation(order: OrderKey, n: int) -> np.ndarray:
    """The order as a permutation of ``0..n-1``; ``ValueError`` for anything that is not one."""
    if order == "natural":
        return np.arange(n)
    if order == "reverse":
        return np.arange(n)[::-1].copy()
    if isinstance(order, tuple) and len(order) == 2 and order[0] == "random":
        return np.random.RandomState(seed32(order[1])).permutation(n)
    if isinstance(order, str):
        raise ValueError(f"unknown order '{order}' (natural, reverse, random(seed=N) or a list)")
    perm = list(order)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in perm) or \
            sorted(perm) != list(range(n)):
        text = "[" + ", ".join(str(v) for v in perm) + "]"
        raise ValueError(f"order {text} is not a permutation of 0..{n - 1}")
    return np.asarray(perm, dtype=np.int64)


class Order(Spec):
    """A generation order; :meth:`key` is the hashable form :func:`permutation` takes."""

    def key(self) -> OrderKey:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def seed_value(self) -> int:
        """The seed of a random order (0 for a fixed one): it also seeds a MADE model's hidden degrees."""
        return 0

    def permutation(self, n: int) -> np.ndarray:
        """``perm[k]``: the dimension generated k-th; SpecError(arg="order") if not a permutation."""
        try:
            return permutation(self.key(), n)
        except ValueError as err:
            raise SpecError(str(err), arg="order") from None

    def indices(self, n: int) -> np.ndarray:
        """``permute``'s name for :meth:`permutation`: the indices along the permuted axis."""
        return self.permutation(n)

    def orders(self, n: int, configurations: int = 1) -> np.ndarray:
        """``[K, n]``: the permutation of each configuration (the same one, except for ``agnostic``)."""
        return np.tile(self.permutation(n), (configurations, 1))


class Natural(Order):
    """Dimension 0 first."""

    name: ClassVar[str] = "natural"

    def key(self):
        return "natural"


class Reverse(Order):
    """The last dimension first."""

    name: ClassVar[str] = "reverse"

    def key(self):
        return "reverse"


class RandomOrder(Order):
    """A seeded random order (the same permutation in ``permute``, ``made`` nets and ``made`` models)."""

    name: ClassVar[str] = "random"
    seed: Seed = 0

    def key(self):
        return ("random", self.seed)

    @property
    def seed_value(self) -> int:
        return int(self.seed)


class AgnosticOrder(Order):
    """A fresh random input order for every configuration (order-agnostic training)."""

    name: ClassVar[str] = "agnostic"
    seed: Seed = 0

    def key(self):
        return ("agnostic", self.seed)

    @property
    def seed_value(self) -> int:
        return int(self.seed)

    def permutation(self, n: int) -> np.ndarray:
        return self.orders(n, 1)[0]

    def orders(self, n: int, configurations: int = 1) -> np.ndarray:
        return np.stack([np.random.RandomState([seed32(self.seed), k, 1]).permutation(n)
                         for k in range(configurations)])


class ExplicitOrder(Order):
    """``order=[2, 0, 1]``: dimension 2 first, then 0, then 1."""

    name: ClassVar[str] = "list"
    order: tuple[int, ...]

    def key(self):
        return tuple(self.order)

    def describe(self) -> str:
        return "[" + ", ".join(map(str, self.order)) + "]"


def _family(what: str, members) -> Family:
    family = Family(what)
    for cls in members:
        family.register(cls)
    return family


def _coercer(family: Family, lists: bool):
    """The field validator: a list is an explicit order (where ``lists``), anything else a family member."""
    def coerce(value):
        if lists and isinstance(value, tuple):
            return ExplicitOrder(order=value)
        return family.coerce(value)

    return coerce


PERMUTATIONS = _family("permutation", (Reverse, RandomOrder))
NET_ORDERS = _family("order", (Natural, Reverse, RandomOrder))
MODEL_ORDERS = _family("MADE order", (Natural, Reverse, RandomOrder, AgnosticOrder))
PermutationField = Annotated[Order, BeforeValidator(_coercer(PERMUTATIONS, lists=True))]
NetOrderField = Annotated[Order, BeforeValidator(_coercer(NET_ORDERS, lists=True))]
ModelOrderField = Annotated[Order, BeforeValidator(_coercer(MODEL_ORDERS, lists=False))]
