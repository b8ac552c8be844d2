"""Coupling chains (flowdsl/runtime/optimize_coupling_chains.py) change no output: a flow whose couplings
and permutations run as two blocks equals the same flow run layer by layer (``optimize=False``) in
float64, forward, inverse, log-dets and gradients, for random masks, permutations, transformers and
conditions; chains form where the blocks line up and nowhere else."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_optimisation_passes import assert_same_flow, pair

from flowdsl.runtime.optimize import discarding_logdets
from flowdsl.runtime.optimize_coupling_chains import CouplingChain

ROOT = Path(__file__).resolve().parent.parent
TRANSFORMERS = ["affine", "affine(clamp=1.5)", "additive", "rq_spline(bins=4, bound=3)"]


def _chains(flow):
    return [step for step in flow._plan if isinstance(step, CouplingChain)]


@st.composite
def chain_specs(draw):
    """A vector flow of couplings over index masks, with permutations between some of them."""
    d = draw(st.integers(2, 7))
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            lines.append(f"permute({draw(st.permutations(range(d)))})")
        transformer = draw(st.sampled_from(TRANSFORMERS))
        if draw(st.booleans()):
            mask = "mask=half"
        else:  # an explicit 0/1 list (1: kept), interleaved or not
            kept = draw(st.sets(st.integers(0, d - 1), min_size=1, max_size=d - 1))
            mask = f"mask={[int(i in kept) for i in range(d)]}"
        args = transformer.replace("(", f"({mask}, ", 1) if "(" in transformer else transformer + f"({mask})"
        lines.append(f"coupling {args}")
    if draw(st.booleans()):
        lines.append("permute(reverse)")
    conditional = draw(st.booleans())
    head = f" input x: vector[{d}]\n" + (" condition c: vector[2]\n" if conditional else "")
    body = "".join(f" {line}\n" for line in lines)
    return f"flow f {{\n{head}{body}}}\n", d, conditional


@settings(max_examples=40, deadline=None)
@given(case=chain_specs(), seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6))
def test_a_chained_flow_equals_the_flow_run_layer_by_layer(case, seed, batch):
    source, d, conditional = case
    plain, fast = pair(source, seed=seed % 1000)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, generator=gen, dtype=torch.float64)
    c = torch.randn(batch, 2, generator=gen, dtype=torch.float64) if conditional else None
    z0, ld0 = plain(x, c)
    z1, ld1 = fast(x, c)
    torch.testing.assert_close(z1, z0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld1, ld0, rtol=1e-12, atol=1e-12)
    x0, ild0 = plain.inverse_and_logdet(z0, c)
    x1, ild1 = fast.inverse_and_logdet(z0, c)
    torch.testing.assert_close(x1, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ild1, ild0, rtol=1e-10, atol=1e-10)
    with discarding_logdets():
        torch.testing.assert_close(fast.inverse(z0, c), x0, rtol=1e-10, atol=1e-10)
    # gradients of the training loss with respect to every parameter
    g0 = torch.autograd.grad(plain.log_prob(x, c).sum(), list(plain.parameters()), allow_unused=True)
    g1 = torch.autograd.grad(fast.log_prob(x, c).sum(), list(fast.parameters()), allow_unused=True)
    for a, b in zip(g0, g1):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_the_benchmark_realnvp_is_one_chain_with_no_gather():
    plain, fast = pair(ROOT / "benchmarks/specs/realnvp.flow")
    (chain,) = _chains(fast)
    assert chain.span == (0, 12) and len(chain.steps) == 6
    assert [kept for _, kept, _ in chain.steps] == [0, 1, 0, 1, 0, 1]  # the halves take turns
    assert chain.enter.gathers == 0 and chain.leave.gathers == 0
    assert _chains(plain) == [] and plain._plan == plain._runs
    assert_same_flow(plain, fast, torch.randn(7, 16, dtype=torch.float64))


def test_couplings_whose_parts_do_not_line_up_are_not_chained():
    src = ("flow f {\n input x: vector[6]\n coupling affine(mask=half)\n coupling affine(mask=[1, 0, 0, 1, 0, 0])\n"
           " coupling affine(mask=[0, 1, 1, 0, 1, 0])\n}\n")
    plain, fast = pair(src)
    assert _chains(fast) == []  # three different splits: nothing to carry
    assert_same_flow(plain, fast, torch.randn(5, 6, dtype=torch.float64))


def test_a_chain_stops_at_a_layer_it_cannot_carry():
    src = ("flow f {\n input x: vector[4]\n coupling affine(mask=half)\n coupling affine(mask=half)\n"
           " actnorm\n coupling additive(mask=half)\n coupling additive(mask=half)\n}\n")
    plain, fast = pair(src)
    assert [c.span for c in _chains(fast)] == [(0, 2), (3, 5)]
    assert_same_flow(plain, fast, torch.randn(5, 4, dtype=torch.float64))


def test_channel_couplings_of_an_image_chain_too():
    src = ("flow f {\n input x: image[4, 4, 4]\n coupling affine(mask=channel(0), net=conv_net(8))\n"
           " coupling affine(mask=channel(1), net=conv_net(8))\n permute([2, 3, 0, 1])\n"
           " coupling affine(mask=channel(0), net=conv_net(8))\n}\n")
    plain, fast = pair(src)
    assert [len(c.steps) for c in _chains(fast)] == [3]
    assert_same_flow(plain, fast, torch.randn(3, 4, 4, 4, dtype=torch.float64), tol=1e-10)


def test_state_dict_keys_copies_and_devices_are_unchanged():
    plain, fast = pair(ROOT / "benchmarks/specs/realnvp.flow")
    assert list(fast.state_dict()) == list(plain.state_dict())
    twin = copy.deepcopy(fast)
    (chain,) = _chains(twin)
    assert all(any(coupling is layer for layer in twin.layers) for coupling, _, _ in chain.steps)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.1)
    x = torch.randn(3, 16, dtype=torch.float64)
    assert not torch.allclose(twin(x)[1], fast(x)[1])  # the copy runs its own layers
    single = fast.float()
    assert single(x.float())[0].dtype == torch.float32


@pytest.mark.parametrize("name", ["benchmarks/specs/realnvp.flow", "benchmarks/specs/nsf_coupling.flow",
                                  "specs/nice.flow", "specs/realnvp.flow"])
def test_bundled_specs_with_chains_equal_their_layer_by_layer_run(name):
    plain, fast = pair(ROOT / name)
    assert _chains(fast)
    x = torch.randn(4, *plain.input_shape, dtype=torch.float64)
    if plain.levels is not None:
        x = x.abs() * 3
    assert_same_flow(plain, fast, x, tol=1e-10)


def test_layer_shapes_run_every_layer_whatever_the_plan():
    plain, fast = pair(ROOT / "specs/maf.flow")
    x = torch.randn(2, *plain.input_shape, dtype=torch.float64)
    assert fast.layer_shapes(x) == plain.layer_shapes(x) == [tuple(plain.input_shape)] * len(plain.layers)
