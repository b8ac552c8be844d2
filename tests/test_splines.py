"""Spline transformers and spline couplings: rational-quadratic (NSF) and monotone cubic.

Behaviour at and beyond the bounds and exactly at the knots (finite values, log-dets and
gradients; identity or linear tails), extreme parameters (no discriminant failure), round
trips, log-dets against autograd, couplings over every mask kind (sparsity as declared,
parameter counts), and golden diagnostics for bins < 1 and bound <= 0.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.splines import CubicSpline, RQSpline, knots
from flowdsl.testing import brute_force_logdet, check_sparsity, perturb_parameters

SPLINES = {"rq": RQSpline, "cubic": CubicSpline}


def _edges(spline, p):
    k = spline.bins
    return knots(p[..., :k], spline.bound), knots(p[..., k : 2 * k], spline.bound)


def _special_points(bound):
    eps = 1e-12
    return torch.tensor([-1e6, -bound - 1, -bound - eps, -bound, -bound + eps, 0.0,
                         bound - eps, bound, bound + eps, bound + 1, 1e6])


@given(st.sampled_from(list(SPLINES)), st.integers(1, 9), st.sampled_from([0.5, 3.0]),
       st.sampled_from([0.5, 3.0, 20.0]), st.integers(0, 2**16))
def test_bounds_knots_and_extremes_stay_finite(float64, kind, bins, bound, scale, seed):
    s = SPLINES[kind](bins, bound)
    gen = torch.Generator().manual_seed(seed)
    p = scale * torch.randn(s.params_per_dim, generator=gen)
    xs, ys = _edges(s, p)
    x = torch.cat([_special_points(bound), xs, bound * (2 * torch.rand(50, generator=gen) - 1)])
    x.requires_grad_()
    pp = p.expand(len(x), -1).clone().requires_grad_()
    y, ld = s(x, pp)
    (gx, gp) = torch.autograd.grad(y.sum() + ld.sum(), (x, pp))
    for t in (y, ld, gx, gp):
        assert torch.isfinite(t).all()
    y, ld = y.detach(), ld.detach()
    order = torch.argsort(x.detach())
    assert (y[order][1:] >= y[order][:-1]).all()
    # the knots map to the knots
    assert torch.allclose(y[-len(xs) - 50 : -50], ys, atol=1e-12, rtol=0)
    # inverse: finite everywhere (also exactly at the y-knots), and forward(inverse(y)) == y
    yq = torch.cat([y, ys]).requires_grad_()
    back, ld_inv = s.inverse(yq, p.expand(len(yq), -1))
    (gy,) = torch.autograd.grad(back.sum() + ld_inv.sum(), yq)
    assert torch.isfinite(back).all() and torch.isfinite(ld_inv).all() and torch.isfinite(gy).all()
    again, _ = s(back.detach(), p.expand(len(yq), -1))
    assert ((again - yq.detach()).abs() <= 1e-9 * (1 + yq.detach().abs())).all()


def test_rq_tails_are_identity_and_cubic_tails_linear(float64):
    gen = torch.Generator().manual_seed(0)
    for kind in SPLINES:
        s = SPLINES[kind](6, 2.0)
        p = torch.randn(s.params_per_dim, generator=gen)
        out = torch.tensor([-1e3, -2.5, 2.5, 1e3])
        y, ld = s(out, p.expand(4, -1))
        if kind == "rq":
            assert torch.equal(y, out) and torch.equal(ld, torch.zeros(4))
        else:
            slopes = torch.exp(ld)
            assert torch.allclose(y, torch.tensor([-2.0, -2.0, 2.0, 2.0]) + slopes * (out - out.sign() * 2), atol=1e-9)
        # continuous value and slope across the bound
        for b in (-2.0, 2.0):
            pts = torch.tensor([b - 1e-9, b + 1e-9])
            v, l = s(pts, p.expand(2, -1))
            assert (v[1] - v[0]).abs() < 1e-7 and (l[1] - l[0]).abs() < 1e-6


@given(st.sampled_from(list(SPLINES)), st.integers(1, 8), st.integers(0, 2**16))
def test_roundtrip_and_logdet_against_autograd(float64, kind, bins, seed):
    s = SPLINES[kind](bins, 3.0)
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(40, s.params_per_dim, generator=gen)
    x = (4 * torch.randn(40, generator=gen)).requires_grad_()
    y, ld = s(x, p)
    (dydx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(torch.log(dydx), ld, atol=1e-9, rtol=0)
    back, ld_inv = s.inverse(y.detach(), p)
    assert (back - x.detach()).abs().max() <= (1e-8 if kind == "rq" else 1e-6)
    assert torch.allclose(ld_inv, -ld.detach(), atol=1e-8)


def test_zero_parameters_give_the_identity(float64):
    for cls in SPLINES.values():
        s = cls(5, 3.0)
        x = torch.linspace(-5, 5, 41)
        y, ld = s(x, torch.zeros(41, s.params_per_dim))
        assert torch.allclose(y, x, atol=1e-12) and ld.abs().max() < 1e-12


COUPLINGS = [
    ("vector[5]", "half"), ("vector[4]", "[1, 0, 1, 0]"), ("image[2, 4, 4]", "channel(0)"),
    ("image[1, 4, 4]", "checkerboard(1)"),
]


@pytest.mark.parametrize("kind", ["rq_spline", "cubic_spline"])
@pytest.mark.parametrize("shape,mask", COUPLINGS)
def test_spline_couplings_over_every_mask(float64, kind, shape, mask):
    text = f"flow f {{\n    input x: {shape}\n    coupling {kind}(bins=4, bound=2, mask={mask}, net=resnet(1, 8))\n}}\n"
    flow = flowdsl.compile_source(text)
    layer = flow.layers[0]
    node = flow.ir.layers[0]
    assert node.params == sum(p.numel() for p in layer.parameters())
    perturb_parameters(layer, 0.3, seed=2)
    x = 1.5 * torch.randn(2, *flow.input_shape, generator=torch.Generator().manual_seed(3))
    y, ld = layer(x)
    back, ld_inv = layer.inverse(y)
    assert (back - x).abs().max() <= (1e-8 if kind == "rq_spline" else 1e-6)
    assert (ld + ld_inv).abs().max() <= 1e-8
    assert (brute_force_logdet(layer, x) - ld).abs().max() <= 1e-6
    check_sparsity(layer, x, node.dependency.matrix())
    kept = node.dependency.data.reshape(-1)
    assert torch.equal(y.reshape(2, -1)[:, torch.as_tensor(kept)], x.reshape(2, -1)[:, torch.as_tensor(kept)])
    assert not torch.equal(y, x)
    for fn in (layer, layer.inverse):  # gradients reach every parameter, both ways
        layer.zero_grad()
        out, out_ld = fn(x)
        (out.square().sum() + out_ld.sum()).backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_spline_coupling_reports():
    model = flowdsl.analyze_file(flowdsl_spec("nsf")).model()
    reports = [node.report for node in model.layers]
    assert reports[0] == "rational-quadratic spline, 8 bins on [-3, 3], identity tails; analytic inverse"
    assert reports[2] == "rq_spline transformer; order natural; density in one pass, sampling in 6 passes"
    assert reports[4] == ("monotone cubic spline, 8 bins on [-3, 3], linear tails; "
                          "inverse by bracketed Newton in the bin to 8 eps")


def flowdsl_spec(name):
    from conftest import ACCEPTANCE, SPECS

    shared = ACCEPTANCE / f"{name}.flow"
    return shared if shared.is_file() else SPECS / f"{name}.flow"


def _diags(text):
    return [(str(d.pos), d.severity, d.message) for d in flowdsl.analyze_source(text, "s.flow").diagnostics]


def test_golden_bins_below_one():
    text = "flow f {\n    input x: vector[4]\n    coupling rq_spline(bins=0, mask=half)\n}\n"
    assert _diags(text) == [("s.flow:3:24", "error", "argument 'bins' of coupling rq_spline must be >= 1 (got 0)")]
    text = "flow f {\n    input x: vector[4]\n    autoregressive cubic_spline(net=made([8]), bins=-2)\n}\n"
    assert _diags(text) == [("s.flow:3:48", "error",
                             "argument 'bins' of autoregressive cubic_spline must be >= 1 (got -2)")]


def test_golden_bound_not_positive():
    text = "flow f {\n    input x: vector[4]\n    autoregressive rq_spline(bins=8, bound=0)\n}\n"
    assert _diags(text) == [("s.flow:3:38", "error",
                             "argument 'bound' of autoregressive rq_spline must be > 0 (got 0)")]
    text = "flow f {\n    input x: vector[4]\n    coupling cubic_spline(bound=-1.5)\n}\n"
    assert _diags(text) == [("s.flow:3:27", "error",
                             "argument 'bound' of coupling cubic_spline must be > 0 (got -1.5)")]
