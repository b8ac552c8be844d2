"""One order family and one MADE mask generator: the masks and permutations are pinned to those of the code
before the merge (computed from commit 12fdeab), and the order errors of each argument keep their wording."""

import hashlib

import numpy as np
import pytest

from flowdsl.api import check_source
from flowdsl.language.values import Symbol
from flowdsl.layers import made_masks
from flowdsl.layers.ar_basic import made_layer_masks
from flowdsl.layers.made_net import RandomOrder as NetRandom
from flowdsl.layers.orders import MODEL_ORDERS, NET_ORDERS, PERMUTATIONS, AgnosticOrder, RandomOrder
from flowdsl.layers.registry import LAYERS
from flowdsl.layers.structural import RandomOrder as PermuteRandom


def _hash(arrays) -> str:
    d = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        d.update(repr(a.shape).encode())
        d.update(np.packbits(a.astype(bool)).tobytes())
    return d.hexdigest()[:16]


NET_MASKS = {  # (perm, hidden, params_per_dim, context) -> hash of made_masks(...)
    ((0, 1, 2, 3), (5,), 1, 0): "1f889ffd5f3b8961",
    ((2, 0, 3, 1), (6, 3), 2, 0): "31c79d4037f35488",
    ((4, 3, 2, 1, 0), (4, 8), 3, 2): "c2c9f04e0a9ac73e",
}
MODEL_MASKS = {  # (order, seed, K) -> (orders, hash of masks and connectivities); hidden (7, 5), D=5, F=2, P=3
    ("natural", None, 1): ([[0, 1, 2, 3, 4]], "8a5a6b651a6859c2"),
    ("natural", None, 3): ([[0, 1, 2, 3, 4]] * 3, "7c29f4636ee38f0a"),
    ("reverse", None, 1): ([[4, 3, 2, 1, 0]], "7bd2f7125951ce94"),
    ("reverse", None, 3): ([[4, 3, 2, 1, 0]] * 3, "7131487a35e070f0"),
    ("random", 3, 1): ([[3, 4, 1, 0, 2]], "a5b31c10d9787b10"),
    ("random", 3, 3): ([[3, 4, 1, 0, 2]] * 3, "b0221f3626bbeb85"),
    ("agnostic", 5, 1): ([[4, 1, 2, 0, 3]], "68fe557e1b6d0192"),
    ("agnostic", 5, 3): ([[4, 1, 2, 0, 3], [4, 0, 2, 3, 1], [4, 1, 3, 0, 2]], "dac285d743538433"),
    ("agnostic", None, 1): ([[0, 4, 2, 1, 3]], "4302d985def4c40f"),
    ("agnostic", None, 3): ([[0, 4, 2, 1, 3], [2, 4, 0, 1, 3], [0, 4, 1, 2, 3]], "a3f07c4a9cd64d5e"),
}
PERMUTE_RANDOM = {0: [7, 2, 1, 4, 8, 6, 3, 0, 5], 7: [2, 7, 0, 8, 5, 3, 6, 1, 4],
                  2**33 + 5: [2, 4, 8, 7, 1, 0, 5, 6, 3]}  # n = 9
NET_RANDOM = {0: [6, 2, 1, 3, 0, 5, 4], 11: [2, 5, 4, 6, 3, 0, 1]}  # n = 7


@pytest.mark.parametrize("key", list(NET_MASKS))
def test_conditioner_net_masks_are_those_of_before(key):
    assert _hash(made_masks.made_masks(*key)) == NET_MASKS[key]


@pytest.mark.parametrize("key", list(MODEL_MASKS))
def test_made_model_orders_and_masks_are_those_of_before(key):
    name, seed, k = key
    kwargs = (("seed", seed),) if seed is not None else ()
    order = Symbol(name, kwargs=kwargs)
    layer = LAYERS.bind(Symbol("made", kwargs=(("hidden", (7, 5)), ("masks", k), ("order", order))))
    orders, per_mask = made_layer_masks(layer, 5, 2, 3)
    want_orders, want_hash = MODEL_MASKS[key]
    assert np.asarray(orders).tolist() == want_orders
    assert _hash([m for masks, _ in per_mask for m in masks] + [conn for _, conn in per_mask]) == want_hash


@pytest.mark.parametrize("seed", list(PERMUTE_RANDOM))
def test_permute_random_permutation_is_that_of_before(seed):
    assert PermuteRandom(seed=seed).indices(9).tolist() == PERMUTE_RANDOM[seed]


@pytest.mark.parametrize("seed", list(NET_RANDOM))
def test_made_net_random_order_is_that_of_before(seed):
    assert NetRandom(seed=seed).permutation(7).tolist() == NET_RANDOM[seed]


def test_one_order_class_serves_permute_the_net_and_the_model():
    picks = [fam.bind(Symbol("random", kwargs=(("seed", 4),))) for fam in (PERMUTATIONS, NET_ORDERS, MODEL_ORDERS)]
    assert {type(o) for o in picks} == {RandomOrder}
    assert len({tuple(o.permutation(6).tolist()) for o in picks}) == 1
    assert PermuteRandom is RandomOrder and NetRandom is RandomOrder


def test_the_families_keep_their_members():
    assert PERMUTATIONS.names() == ["random", "reverse"]
    assert NET_ORDERS.names() == ["natural", "random", "reverse"]
    assert MODEL_ORDERS.names() == ["agnostic", "natural", "random", "reverse"]


def test_agnostic_draws_one_order_per_configuration_and_its_first_is_its_permutation():
    o = AgnosticOrder(seed=5)
    assert o.orders(5, 3).tolist() == MODEL_MASKS[("agnostic", 5, 3)][0]
    assert o.permutation(5).tolist() == o.orders(5, 3)[0].tolist()


def test_mask_sets_position_major_outputs_group_a_dimensions_parameters():
    (masks,) = made_masks.mask_sets([[1, 0]], (3,), features=2, params=2, params_major=False)
    out = masks[-1]
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out[0], out[1])  # outputs 0, 1: the two parameters of dim 0
    assert not out[2:].any()  # dim 1 is generated first: it reads nothing


ERRORS = {  # source -> (line, column, message, hint), as the checker gave them before the merge
    "flow f {\n input x: vector[3]\n permute(natural)\n}\n":
        (3, 10, "unknown permutation 'natural'", "known: random, reverse"),
    "flow f {\n input x: vector[3]\n permute([0, 0, 1])\n}\n":
        (3, 10, "order [0, 0, 1] is not a permutation of 0..2", None),
    "flow f {\n input x: vector[3]\n permute(revers)\n}\n":
        (3, 10, "unknown permutation 'revers'", "did you mean 'reverse'?"),
    "flow f {\n input x: vector[3]\n autoregressive affine(net=made([8], order=agnostic))\n}\n":
        (3, 44, "unknown order 'agnostic'", "known: natural, random, reverse"),
    "flow f {\n input x: vector[3]\n autoregressive affine(net=made([8], order=[0, 2]))\n}\n":
        (3, 24, "order [0, 2] is not a permutation of 0..2", None),
    "autoregressive m {\n input x: vector[3] levels 2\n made([8], order=[0, 1, 2])\n}\n":
        (3, 12, "argument 'order' of made: expected a MADE order (agnostic, natural, random, reverse), got [0, 1, 2]",
         None),
    "autoregressive m {\n input x: vector[3] levels 2\n made([8], order=randon)\n}\n":
        (3, 18, "unknown MADE order 'randon'", "did you mean 'random'?"),
    "autoregressive m {\n input x: vector[3] levels 2\n made([8], order=random(seed=-1))\n}\n":
        (3, 25, "argument 'seed' of random must be >= 0 (got -1)", None),
}


@pytest.mark.parametrize("src", list(ERRORS))
def test_order_errors_keep_their_wording_and_position(src):
    diags = check_source(src, "x.ar" if src.startswith("autoregressive") else "x.flow")
    assert [(d.pos.line, d.pos.column, d.message, d.hint) for d in diags if d.severity == "error"] == [ERRORS[src]]
