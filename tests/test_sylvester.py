"""Sylvester flows: orthonormal Q, exact log-det, back-substitution inverse, rank diagnostics, the acceptance spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.freeform import Sylvester, bjorck_orthonormal
from flowdsl.testing import brute_force_logdet, check_sparsity, per_example_jacobian, perturb_parameters

ACCEPTANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "acceptance"
SPEC = ACCEPTANCE / "sylvester.flow" if (ACCEPTANCE / "sylvester.flow").exists() else \
    Path(__file__).parent.parent / "specs" / "sylvester.flow"


pytestmark = pytest.mark.usefixtures("float64")  # one thread: set for the whole suite in conftest


def assert_bijection(module, x, roundtrip_tol=1e-6, logdet_tol=1e-6):
    y, logdet = module(x)
    inverse = getattr(module, "inverse_and_logdet", None) or module.inverse
    x_back, inv_logdet = inverse(y)
    assert (x_back - x).abs().max().item() <= roundtrip_tol
    assert (brute_force_logdet(module, x) - logdet).abs().max().item() <= logdet_tol
    assert (inv_logdet + logdet).abs().max().item() <= logdet_tol


def one_layer(d: int, text: str):
    return flowdsl.compile_source(f"flow f {{\n  input x: vector[{d}]\n  {text}\n}}\n")


@st.composite
def configurations(draw):
    d = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["orthogonal", "householder", "triangular"]))
    rank = draw(st.integers(1, d))
    order = draw(st.sampled_from(["natural", "reverse"])) if kind == "triangular" else "alternate"
    return d, kind, rank, order


@settings(max_examples=20, deadline=None)
@given(configurations(), st.integers(0, 10_000), st.floats(0.1, 3.0))
def test_roundtrip_and_exact_logdet(config, seed, scale):
    d, kind, rank, order = config
    flow = one_layer(d, f"sylvester(kind={kind}, rank={rank}, order={order})")
    perturb_parameters(flow, scale, seed=seed)
    x = 2 * torch.randn(4, d, generator=torch.Generator().manual_seed(seed))
    assert_bijection(flow, x)
    layer = flow.layers[0]
    r, rt = layer.triangles()
    assert ((torch.diagonal(r) * torch.diagonal(rt)).abs() < 1).all()  # the invertibility condition
    q = layer.q()
    if q is not None:
        assert torch.allclose(q.T @ q, torch.eye(rank), atol=1e-11)


def test_bjorck_orthonormalises_any_full_rank_matrix():
    gen = torch.Generator().manual_seed(0)
    for d, m, spread in [(5, 3, 1.0), (8, 8, 1e3), (4, 1, 1e-4)]:
        v = torch.randn(d, m, generator=gen) @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(spread)), m))
        q = bjorck_orthonormal(v)
        assert torch.allclose(q.T @ q, torch.eye(m), atol=1e-12)


def test_householder_q_is_product_of_reflections():
    layer = Sylvester(4, 2, "householder")
    perturb_parameters(layer, 1.0, seed=0)
    full = torch.eye(4)
    for v in layer.v:
        full = full @ (torch.eye(4) - 2 * torch.outer(v, v) / (v @ v))
    assert torch.allclose(layer.q(), full[:, :2], atol=1e-12)


def test_triangular_declares_its_jacobian_pattern():
    for rank, order in [(5, "natural"), (5, "reverse"), (3, "reverse")]:
        flow = one_layer(5, f"sylvester(kind=triangular, rank={rank}, order={order})")
        perturb_parameters(flow, 1.0, seed=1)
        allowed = flow.ir.layers[0].dependency.matrix()
        layer = flow.layers[0]
        check_sparsity(layer, torch.randn(6, 5), allowed)
        assert allowed.sum() < 25  # not dense: a real constraint was checked


def test_alternate_order_follows_the_layer_position():
    flow = one_layer(3, "sylvester(kind=triangular)\n  sylvester(kind=triangular)")
    assert flow.layers[0].coords.tolist() == [0, 1, 2] and flow.layers[1].coords.tolist() == [2, 1, 0]


def test_inverse_gradient_is_the_inverse_jacobian():
    layer = Sylvester(4, 3, "orthogonal")
    perturb_parameters(layer, 1.0, seed=2)
    x = torch.randn(2, 4)
    y, _ = layer(x)
    j_fwd = per_example_jacobian(layer, x)
    j_inv = per_example_jacobian(lambda v: layer.inverse(v), y)
    assert torch.allclose(j_inv @ j_fwd, torch.eye(4).expand(2, 4, 4), atol=1e-8)


def _diagnostics(text):
    a = flowdsl.analyze_source(text, "syl.flow")
    return [(d.pos.file, d.pos.line, d.pos.column, d.severity, d.message) for d in a.diagnostics]


def test_golden_rank_above_dimension():
    text = "flow f {\n  input x: vector[3]\n  sylvester(kind=orthogonal, rank=4)\n}\n"
    assert _diagnostics(text) == [
        ("syl.flow", 3, 30, "error",
         "sylvester rank 4 exceeds the dimension 3 of its input vector[3]: A = QR has rank at most 3"),
    ]


def test_golden_order_needs_triangular_and_bad_kind():
    text = "flow f {\n  input x: vector[3]\n  sylvester(householder, order=reverse)\n  sylvester(kind=diagonal)\n}\n"
    assert _diagnostics(text) == [
        ("syl.flow", 3, 26, "error",
         "argument 'order' of sylvester applies to kind=triangular only (this is kind=householder)"),
        ("syl.flow", 4, 13, "error",
         "argument 'kind' of sylvester must be one of 'orthogonal', 'householder' or 'triangular' (got \"diagonal\")"),
    ]


def test_acceptance_spec_compiles_and_is_exact():
    flow = flowdsl.compile_file(SPEC)
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params
    for node, layer in zip(flow.ir.layers, flow.layers):
        assert node.params == sum(p.numel() for p in layer.parameters())
        assert node.logdet == "exact" and "back-substitution" in node.report
    perturb_parameters(flow, 1.0, seed=0)
    x = torch.randn(5, 8)
    y, logdet = flow(x)
    assert (flow.inverse(y) - x).abs().max() <= 1e-6
    assert (brute_force_logdet(flow, x) - logdet).abs().max() <= 1e-6
    assert torch.isfinite(flow.log_prob(x)).all()
    assert flow.sample(4).shape == (4, 8)


def test_identity_at_initialisation():
    flow = flowdsl.compile_file(SPEC)
    x = torch.randn(3, 8)
    y, logdet = flow(x)
    assert torch.allclose(y, x) and torch.allclose(logdet, torch.zeros(3))


def test_coverage_counts_the_coordinates_a_low_rank_triangular_layer_moves():
    one = "flow f {\n  input x: vector[4]\n  sylvester(kind=triangular, rank=2)\n}\n"
    (warning,) = _diagnostics(one)
    assert warning[3] == "warning" and "dimensions 2, 3 (2 of 4)" in warning[4]
    both = ("flow f {\n  input x: vector[4]\n  sylvester(kind=triangular, rank=2)\n"
            "  sylvester(kind=triangular, rank=2)\n}\n")
    assert _diagnostics(both) == []
