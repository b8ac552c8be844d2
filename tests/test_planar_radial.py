"""Planar and radial flows: invertible for any parameters, exact log-dets, the acceptance spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.freeform import Planar, Radial, solve_tanh_shift
from flowdsl.testing import brute_force_logdet, per_example_jacobian, perturb_parameters

ACCEPTANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "acceptance"
SPEC = (ACCEPTANCE / "planar.flow" if (ACCEPTANCE / "planar.flow").exists()
        else Path(__file__).parent.parent / "specs" / "planar.flow")


pytestmark = pytest.mark.usefixtures("float64")  # one thread: set for the whole suite in conftest


def assert_bijection(module, x, roundtrip_tol=1e-6, logdet_tol=1e-6):
    y, logdet = module(x)
    inverse = getattr(module, "inverse_and_logdet", None) or module.inverse
    x_back, inv_logdet = inverse(y)
    assert (x_back - x).abs().max().item() <= roundtrip_tol
    assert (brute_force_logdet(module, x) - logdet).abs().max().item() <= logdet_tol
    assert (inv_logdet + logdet).abs().max().item() <= logdet_tol
    return y


params = st.floats(-4, 4, allow_nan=False)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000), st.floats(0.1, 6.0), params)
def test_planar_invertible_for_unconstrained_parameters(d, seed, scale, bias):
    gen = torch.Generator().manual_seed(seed)
    layer = Planar(d)
    with torch.no_grad():
        layer.u.copy_(scale * torch.randn(d, generator=gen))
        layer.w.copy_(scale * torch.randn(d, generator=gen))
        layer.b.fill_(bias)
    _, s = layer.u_hat()
    assert s.item() > -1  # the reparameterisation's guarantee
    x = 3 * torch.randn(5, d, generator=gen)
    assert_bijection(layer, x)
    y = 3 * torch.randn(5, d, generator=gen)  # and forward(inverse(y)) = y: onto
    assert (layer(layer.inverse(y)[0])[0] - y).abs().max() <= 1e-8


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000), params, params)
def test_radial_invertible_for_unconstrained_parameters(d, seed, alpha_raw, beta_raw):
    gen = torch.Generator().manual_seed(seed)
    layer = Radial(d)
    with torch.no_grad():
        layer.x0.copy_(torch.randn(d, generator=gen))
        layer.alpha_raw.fill_(alpha_raw)
        layer.beta_raw.fill_(beta_raw)
    alpha, beta = layer.coefficients()
    assert alpha.item() > 0 and (beta + alpha).item() > 0
    x = 3 * torch.randn(5, d, generator=gen)
    assert_bijection(layer, x)
    y = 3 * torch.randn(5, d, generator=gen)
    assert (layer(layer.inverse(y)[0])[0] - y).abs().max() <= 1e-8


def test_root_find_is_bracketed_and_exact_even_near_the_limit():
    s = torch.tensor([-0.999999, -0.5, 0.0, 3.0, 50.0])
    c = torch.tensor([0.3, -2.0, 1.0, 100.0, -0.01])
    a = solve_tanh_shift(s, c)
    assert ((a + s * torch.tanh(a) - c).abs() <= 1e-11 * (1 + c.abs())).all()
    assert ((a - c).abs() <= s.abs() + 1e-12).all()


def test_inverse_gradient_is_the_inverse_jacobian():
    torch.manual_seed(0)
    for layer in (Planar(3), Radial(3)):
        perturb_parameters(layer, 1.0, seed=1)
        x = torch.randn(2, 3)
        y, _ = layer(x)
        j_fwd = per_example_jacobian(layer, x)
        j_inv = per_example_jacobian(lambda v, layer=layer: layer.inverse(v), y)
        assert torch.allclose(j_inv @ j_fwd, torch.eye(3).expand(2, 3, 3), atol=1e-8)


def test_identity_at_initialisation():
    x = torch.randn(4, 3)
    for layer in (Planar(3), Radial(3)):
        y, logdet = layer(x)
        assert torch.allclose(y, x) and torch.allclose(logdet, torch.zeros(4))


def test_acceptance_spec_compiles_and_is_exact():
    flow = flowdsl.compile_file(SPEC)
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params == 8 * 5 + 4 * 4
    for node, layer in zip(flow.ir.layers, flow.layers):
        assert node.params == sum(p.numel() for p in layer.parameters())
        assert node.logdet == "exact" and node.report
    perturb_parameters(flow, 1.0, seed=3)
    x = 2 * torch.randn(6, 2)
    y, _ = flow(x)
    assert (flow.inverse(y) - x).abs().max() <= 1e-6
    assert (brute_force_logdet(flow, x) - flow(x)[1]).abs().max() <= 1e-6
    assert torch.isfinite(flow.log_prob(x)).all()
    assert flow.sample(7).shape == (7, 2)


def test_images_are_flattened():
    flow = flowdsl.compile_source("flow f {\n  input x: image[1, 2, 2]\n  planar\n  radial\n}\n")
    perturb_parameters(flow, 0.5, seed=0)
    x = torch.randn(3, 1, 2, 2)
    assert_bijection(flow, x)
