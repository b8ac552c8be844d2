"""MADE: the torch-free mask math (flowdsl.layers.made_masks), the made net spec, the torch MADE, golden diagnostics.

The causality proof (mask product strictly triangular in the order), the lost-dependency
warning, the pass count (depth of the dependency DAG), and the runtime's Jacobian zeros
against the connectivity the checker computed; the one torch MADE serves the conditioner net and
the autoregressive made layer (K mask sets), and loads the AR layer's old ``linears.`` keys.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowdsl
from flowdsl.layers import made_masks as made
from flowdsl.layers.made_net import MADESpec
from flowdsl.layers.structural import RandomOrder as PermuteRandom
from flowdsl.runtime.made import MADE, build_made
from flowdsl.testing import per_example_jacobian


@st.composite
def made_setups(draw, max_dim=7):
    n = draw(st.integers(1, max_dim))
    kind = draw(st.sampled_from(["natural", "reverse", "random", "list"]))
    if kind == "random":
        order = ("random", draw(st.integers(0, 2**31)))
    elif kind == "list":
        order = tuple(draw(st.permutations(range(n))))
    else:
        order = kind
    hidden = tuple(draw(st.lists(st.integers(1, 10), min_size=0, max_size=3)))
    return n, order, hidden, draw(st.integers(1, 3)), draw(st.integers(0, 2))


def _depth(conn):
    """Longest chain of the dependency DAG, by dynamic programming in the topological order."""
    n = conn.shape[0]
    level = np.zeros(n, dtype=int)
    for _ in range(n):
        for i in range(n):
            deps = np.flatnonzero(conn[i])
            level[i] = 1 + max((level[j] for j in deps), default=-1)
    return int(level.max()) + 1


@given(made_setups())
def test_mask_product_is_strictly_triangular_in_the_order(setup):
    n, order, hidden, k, context = setup
    perm = made.permutation(order, n)
    s = made.analyze(perm, hidden, k, context)
    rank = np.argsort(perm)
    assert s.violations == ()
    assert not (s.connectivity & (rank[None, :] >= rank[:, None])).any()
    # shapes: first layer reads n + context columns, last writes k blocks of n
    assert s.masks[0].shape[1] == n + context and s.masks[-1].shape[0] == k * n
    # lost dependencies are exactly the earlier inputs the product misses
    missing = {(i, j) for i in range(n) for j in range(n) if rank[j] < rank[i] and not s.connectivity[i, j]}
    assert {(i, j) for i, js in s.lost.items() for j in js} == missing
    if all(h >= n - 1 for h in hidden):
        assert s.complete and s.passes == n
    # each generation reads only earlier generations; the count is the DAG's depth
    seen: set[int] = set()
    for gen in s.generations:
        for i in gen:
            assert set(np.flatnonzero(s.connectivity[i])) <= seen
        seen |= set(gen)
    assert seen == set(range(n)) and s.passes == _depth(s.connectivity)


def test_violations_are_reported_for_a_broken_mask():
    perm = made.permutation("natural", 3)
    masks = [m.copy() for m in made.made_masks(perm, (4,))]
    masks[-1][0, :] = True  # dim 0's output reads every hidden unit: it now sees dims 0 and 1
    conn = made.connectivity(masks, 3)
    assert made.violations(conn, perm) == ((0, 0), (0, 1))
    with pytest.raises(ValueError, match="cycle"):
        made.generations(conn | conn.T)


def test_orders():
    assert made.permutation(("random", 5), 6).tolist() == PermuteRandom(seed=5).indices(6).tolist()
    assert made.input_degrees(np.array([2, 0, 1])).tolist() == [2, 3, 1]
    for bad in ([0, 0, 1], [0, 1], [0, 1, 3], [True, False, 2]):
        with pytest.raises(ValueError, match="is not a permutation of 0..2"):
            made.permutation(bad, 3)
    with pytest.raises(ValueError, match="unknown order"):
        made.permutation("sideways", 3)


def test_transitive_closure():
    conn = np.zeros((4, 4), bool)
    conn[1, 0] = conn[2, 1] = conn[3, 2] = True
    closed = made.transitive_closure(conn)
    assert closed.astype(int).tolist() == np.tril(np.ones((4, 4), int)).tolist()


@given(made_setups(max_dim=5), st.integers(0, 1000))
def test_runtime_jacobian_zeros_match_the_connectivity(setup, seed):
    n, order, hidden, k, context = setup
    perm = made.permutation(order, n)
    s = made.analyze(perm, hidden, k, context)
    torch.manual_seed(seed)
    net = MADE(perm, hidden, k, context, act="tanh").double()
    for p in net.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, n, dtype=torch.float64)
    ctx = torch.eye(context, dtype=torch.float64)[torch.arange(3) % context] if context else None
    jac = per_example_jacobian(lambda v, c=None: net.params(v, c).transpose(1, 2).reshape(v.shape[0], -1), x, ctx)
    nonzero = (jac != 0).any(0).reshape(k, n, n).any(0).numpy()
    assert not (nonzero & ~s.connectivity).any()  # zeros exactly where the masks say
    assert (nonzero == s.connectivity).all()  # and (generic weights, tanh) every allowed path is used


@given(made_setups())
def test_param_count_equals_module_numel(setup):
    n, order, hidden, k, context = setup
    spec = MADESpec(hidden=hidden) if hidden else MADESpec(hidden=())
    net = build_made(spec, (n,), (k * n,), context)
    assert spec.param_count((n,), (k * n,), context) == sum(p.numel() for p in net.parameters())
    assert net(torch.zeros(2, n), torch.zeros(2, context) if context else None).shape == (2, k * n)


def _diags(text):
    return [(str(d.pos), d.severity, d.message) for d in flowdsl.analyze_source(text, "m.flow").diagnostics]


NARROW = """flow f {
    input x: vector[5]
    autoregressive affine(net=made([3, 64]))
}
"""


def test_golden_narrow_hidden_layer_warning():
    assert _diags(NARROW) == [(
        "m.flow:3:27", "warning",
        "made hidden layer too narrow: hidden layer 1 has 3 units, fewer than the 4 needed to carry every "
        "dependency of 5 inputs; conditionals that lose inputs: dim 4 misses dim 3",
    )]
    node = flowdsl.analyze_source(NARROW, "m.flow").model().layers[0]
    assert node.meta["connectivity_complete"] is False
    # the declared pattern is explicit and leaves out the lost pair (4, 3)
    assert node.dependency.kind == "explicit" and not node.dependency.matrix()[4, 3]


def test_golden_order_not_a_permutation():
    text = ("flow f {\n    input x: vector[3]\n"
            "    autoregressive affine(net=made([8]), order=[0, 2, 2])\n}\n")
    assert _diags(text) == [("m.flow:3:42", "error", "order [0, 2, 2] is not a permutation of 0..2")]
    inner = "flow f {\n    input x: vector[3]\n    autoregressive affine(net=made([8], order=[1, 0]))\n}\n"
    assert _diags(inner) == [("m.flow:3:27", "error", "order [1, 0] is not a permutation of 0..2")]


def test_golden_order_given_twice_and_unmasked_net():
    text = ("flow f {\n    input x: vector[3]\n"
            "    autoregressive affine(net=made([8], order=reverse), order=natural)\n}\n")
    assert _diags(text) == [("m.flow:3:57", "error",
                             "order given twice: the layer says natural, its made net says reverse")]
    text = "flow f {\n    input x: vector[3]\n    autoregressive dsf(net=mlp([8]))\n}\n"
    assert _diags(text) == [("m.flow:3:24", "error",
                             "autoregressive dsf needs a masked conditioner, net=made([...]); net mlp would let "
                             "each dimension read itself and later dimensions")]


def test_made_net_order_is_used_when_the_layer_gives_none():
    text = "flow f {\n    input x: vector[3]\n    autoregressive affine(net=made([8], order=reverse))\n}\n"
    node = flowdsl.analyze_source(text, "m.flow").model().layers[0]
    assert node.meta["perm"] == (2, 1, 0) and node.meta["order"] == "reverse"
    assert node.dependency.matrix().astype(int).tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]


# ----------------------------------------------------------------------------- one MADE module for both uses
AR_MADE = "autoregressive m {\n input x: vector[5] levels 3\n made([7, 6], masks=3, order=agnostic(seed=2))\n}\n"


def test_the_ar_made_layer_is_the_conditioner_nets_module():
    from flowdsl.runtime.ar_basic import MadeLayer

    m = flowdsl.compile_source(AR_MADE, filename="m.ar")
    layer = m.layers[0]
    assert isinstance(layer, MadeLayer) and isinstance(layer, MADE)
    maf = flowdsl.compile_source("flow f {\n input x: vector[3]\n autoregressive affine(net=made([8]))\n}\n")
    assert isinstance(maf.layers[0].made, MADE)
    assert [tuple(lin.masks.shape) for lin in layer.layers] == [(3, 7, 15), (3, 6, 7), (3, 15, 6)]


def test_ar_made_masks_follow_the_selected_configuration():
    m = flowdsl.compile_source(AR_MADE, filename="m.ar").double()
    layer = m.layers[0]
    from flowdsl.layers.ar_basic import made_layer_masks

    _, per_mask = made_layer_masks(m.ir.layers[0].layer, 5, 3, 3)  # D=5, F=3 levels, P=3 (categorical)
    for k in range(3):
        m.mask_index = k
        m.conditionals(torch.zeros(1, 5, dtype=torch.long))
        assert layer.active == k
        for lin, want in zip(layer.layers, per_mask[k][0]):
            np.testing.assert_array_equal(lin.mask.numpy().astype(bool), want)


def test_a_state_dict_with_the_old_linears_keys_loads():
    torch.manual_seed(0)
    old = flowdsl.compile_source(AR_MADE, filename="m.ar").double().eval()
    state = {k.replace("layers.0.layers.", "layers.0.linears."): v for k, v in old.state_dict().items()}
    assert any(".linears." in k for k in state)
    torch.manual_seed(1)
    new = flowdsl.compile_source(AR_MADE, filename="m.ar").double().eval()
    x = torch.tensor([[0, 1, 2, 1, 0]])
    assert not torch.allclose(new.log_prob(x), old.log_prob(x))
    new.load_state_dict(state)  # strict: every key maps
    assert torch.equal(new.log_prob(x), old.log_prob(x))
