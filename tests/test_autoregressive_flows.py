"""Autoregressive flows: MAF, IAF, NAF (dsf), UMNN, SOS and the autoregressive splines.

Every transformer, in both directions, with random orders and widths (float64, parameters
perturbed first): round trip, log-det against the brute-force Jacobian, Jacobian zeros
where the declared dependency says, triangular in the declared order, monotone scalar
transformers, gradients to every parameter, parameter counts, reports, the pass count
(depth of the dependency DAG), and the six acceptance specs end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ACCEPTANCE, SPECS
from hypothesis import given
from hypothesis import strategies as st

import flowdsl
from flowdsl.layers.nets import MLP
from flowdsl.runtime.monotone import DSF, SOS, UMNN, solve_increasing
from flowdsl.runtime.nets import build_net
from flowdsl.runtime.splines import CubicSpline, RQSpline
from flowdsl.runtime.transformers import Affine
from flowdsl.testing import brute_force_logdet, check_sparsity, per_example_jacobian, perturb_parameters

CALLS = {
    "affine": "affine(net=made([{h}]){args})",
    "dsf": "dsf(net=made([{h}]), hidden=4{args})",
    "umnn": "umnn(net=made([{h}]), integrand=mlp([8]), steps=24, embedding=3{args})",
    "sos": "sos(net=made([{h}]), polynomials=2, degree=2{args})",
    "rq_spline": "rq_spline(net=made([{h}]), bins=4, bound=2{args})",
    "cubic_spline": "cubic_spline(net=made([{h}]), bins=4, bound=2{args})",
}
ANALYTIC = {"affine", "rq_spline"}
SPEC_NAMES = ["maf", "iaf", "naf", "umnn", "sos", "nsf"]


def _layer(kind, n, hidden=16, order=None, direction="forward"):
    args = (f", order={order}" if order else "") + (", direction=inverse" if direction == "inverse" else "")
    call = "autoregressive " + CALLS[kind].format(h=hidden, args=args)
    flow = flowdsl.compile_source(f"flow f {{\n    input x: vector[{n}]\n    {call}\n}}\n")
    node = flow.ir.layers[0]
    return flow, flow.layers[0], node


@st.composite
def setups(draw, kinds=tuple(CALLS)):
    n = draw(st.integers(1, 5))
    order = draw(st.sampled_from(["natural", "reverse", "random", "list"]))
    if order == "random":
        order = f"random(seed={draw(st.integers(0, 999))})"
    elif order == "list":
        order = "[" + ", ".join(map(str, draw(st.permutations(range(n))))) + "]"
    return dict(kind=draw(st.sampled_from(kinds)), n=n, order=order,
                direction=draw(st.sampled_from(["forward", "inverse"])),
                hidden=draw(st.sampled_from([1, 2, 8])), seed=draw(st.integers(0, 2**16)))


@given(setups())
def test_roundtrip_logdet_and_declared_sparsity(float64, setup):
    flow, layer, node = _layer(setup["kind"], setup["n"], setup["hidden"], setup["order"], setup["direction"])
    perturb_parameters(layer, 0.2, seed=setup["seed"])
    x = torch.randn(3, setup["n"], generator=torch.Generator().manual_seed(setup["seed"]))
    y, ld = layer(x)
    x2, ld2 = layer.inverse(y)
    tol = 1e-8 if setup["kind"] in ANALYTIC else 1e-6
    assert (x2 - x).abs().max() <= tol
    assert (ld + ld2).abs().max() <= 1e-6
    assert (brute_force_logdet(layer, x) - ld).abs().max() <= 1e-6
    allowed = node.dependency.matrix()
    check_sparsity(layer, x, allowed)
    # the pattern is triangular in the declared order, with a nonzero diagonal
    rank = np.argsort(np.asarray(node.meta["perm"]))
    assert not (allowed & (rank[None, :] > rank[:, None])).any()
    assert (per_example_jacobian(layer, x).diagonal(dim1=1, dim2=2) > 0).all()
    # inverse passes: the depth of the DAG (fewer than D when a narrow made drops dependencies)
    assert layer.generations == node.meta["generations"]
    assert node.meta["inverse_passes"] == len(node.meta["generations"]) <= setup["n"]


def test_full_made_is_strictly_triangular_in_order(float64):
    flow, layer, node = _layer("affine", 5, 16, "[3, 1, 4, 0, 2]")
    dep = node.dependency
    assert dep.kind == "autoregressive" and node.meta["inverse_passes"] == 5
    order = [3, 1, 4, 0, 2]
    expected = np.zeros((5, 5), bool)
    for a, i in enumerate(order):
        expected[i, order[: a + 1]] = True
    assert (dep.matrix() == expected).all()
    perturb_parameters(layer, 0.3, seed=4)
    x = torch.randn(4, 5)
    seen = (per_example_jacobian(layer, x) != 0).any(0).numpy()
    assert (seen == expected).all()  # zeros exactly where declared, and only there


def test_narrow_made_inverts_in_fewer_passes(float64):
    flow, layer, node = _layer("rq_spline", 4, hidden=1)
    assert node.meta["generations"] == ((0,), (1, 2, 3)) and node.meta["inverse_passes"] == 2
    assert node.report.endswith("density in one pass, sampling in 2 passes")
    perturb_parameters(layer, 0.3, seed=1)
    x = torch.randn(5, 4)
    assert (layer.inverse(layer(x)[0])[0] - x).abs().max() <= 1e-8


def _transformers(seed):
    torch.manual_seed(seed)
    integrand = build_net(MLP(hidden=(8,), activation="silu"), (4,), (1,), 0).double()
    perturb_parameters(integrand, 0.5, seed)
    return {"affine": Affine(3.0), "dsf": DSF(4), "umnn": UMNN(integrand, 32, 3).double(), "sos": SOS(3, 2),
            "rq_spline": RQSpline(5, 2.0), "cubic_spline": CubicSpline(5, 2.0)}


@given(st.integers(0, 2**16), st.sampled_from([0.3, 1.0, 3.0]))
def test_every_scalar_transformer_is_monotone_and_inverts(float64, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    for name, t in _transformers(seed).items():
        p = scale * torch.randn(t.params_per_dim, generator=gen)
        x = torch.linspace(-6, 6, 1201)
        y, ld = t(x, p.expand(len(x), -1))
        assert torch.isfinite(y).all() and torch.isfinite(ld).all(), name
        assert (y[1:] > y[:-1]).all(), name
        pts = x[::100]
        x2, ld2 = t.inverse(y[::100], p.expand(len(pts), -1))
        tol = 1e-8 if name in ANALYTIC else 1e-6
        assert ((x2 - pts).abs() <= tol * (1 + pts.abs())).all(), (name, (x2 - pts).abs().max())
        assert torch.allclose(ld2, -ld[::100], atol=1e-6), name


@given(st.integers(0, 2**16))
def test_scalar_logdet_is_the_derivative(float64, seed):
    gen = torch.Generator().manual_seed(seed)
    for name, t in _transformers(seed).items():
        p = torch.randn(7, t.params_per_dim, generator=gen)
        # |x| <= 6: beyond, UMNN's 32-step quadrature error of these wiggly integrands passes 1e-6
        x = (3 * torch.randn(7, generator=gen)).clamp(-6, 6).requires_grad_()
        y, ld = t(x, p)
        (dydx,) = torch.autograd.grad(y.sum(), x)
        assert torch.allclose(torch.log(dydx), ld, atol=1e-6, rtol=0), name


def test_solver_brackets_and_converges(float64):
    target = torch.tensor([-1e4, -3.0, 0.0, 2.5, 1e4])

    def cubic(x, idx):
        return x**3 + x, 3 * x**2 + 1

    x = solve_increasing(cubic, target)
    assert torch.allclose(x**3 + x, target, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_gradients_reach_every_parameter(float64, kind, direction):
    flow, layer, node = _layer(kind, 3, 8, "reverse", direction)
    perturb_parameters(layer, 0.2, seed=3)
    x = torch.randn(6, 3, requires_grad=True)
    for fn in (layer, layer.inverse):
        layer.zero_grad()
        y, ld = fn(x)
        (y.square().sum() + ld.sum()).backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", list(CALLS))
def test_declared_param_count_is_module_numel(kind):
    for n, order in ((1, None), (4, "random(seed=3)")):
        flow, layer, node = _layer(kind, n, 8, order)
        assert node.params == sum(p.numel() for p in layer.parameters())


def test_reports_say_order_passes_and_one_pass_direction():
    for name, text in (("maf", "affine transformer; order natural; density in one pass, sampling in 6 passes"),
                       ("iaf", "affine transformer; order natural; sampling in one pass, density in 6 passes"),
                       ("naf", "dsf transformer; order natural; density in one pass, sampling in 4 passes "
                               "(inverse by bracketed Newton to 8 eps)")):
        model = flowdsl.analyze_file(_spec(name)).model()
        reports = [node.report for node in model.layers]
        assert reports[0] == text
    model = flowdsl.analyze_source("flow f {\n input x: vector[3]\n autoregressive affine(order=reverse)\n}\n").model()
    meta = model.layers[0].meta
    assert (meta["order"], meta["inverse_passes"], meta["one_pass"]) == ("reverse", 3, "density")


def _spec(name):
    shared = ACCEPTANCE / f"{name}.flow"
    return shared if shared.is_file() else SPECS / f"{name}.flow"


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_acceptance_spec_is_bundled_unchanged_and_counts_parameters(name):
    assert (SPECS / f"{name}.flow").read_text() == _spec(name).read_text()
    flow = flowdsl.compile_file(_spec(name))
    assert flow.ir.params == sum(p.numel() for p in flow.parameters())
    for node, layer in zip(flow.ir.layers, flow.layers):
        assert node.params == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_acceptance_spec_roundtrip_and_logdet(float64, name):
    flow = flowdsl.compile_file(_spec(name))
    perturb_parameters(flow, 0.05, seed=7)
    flow.eval()
    x = torch.randn(3, *flow.input_shape, generator=torch.Generator().manual_seed(1))
    z, ld = flow(x)
    x2, ld2 = flow.inverse_and_logdet(z)
    assert (x2 - x).abs().max() <= (1e-8 if name in ("maf", "iaf") else 1e-6)
    assert (ld + ld2).abs().max() <= 1e-6
    assert (brute_force_logdet(flow, x) - ld).abs().max() <= 1e-6


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_acceptance_spec_sample_logprob_inverse_cycle(name):
    torch.manual_seed(0)
    flow = flowdsl.compile_file(_spec(name))
    perturb_parameters(flow, 0.05, seed=11)
    flow.eval()
    with torch.no_grad():
        x = flow.sample(10_000)
        logp = flow.log_prob(x)
        z, _ = flow(x)
        back = flow.inverse(z)
    assert x.shape == (10_000, *flow.input_shape)
    assert torch.isfinite(x).all() and torch.isfinite(logp).all() and torch.isfinite(z).all()
    assert torch.isfinite(back).all()
    assert ((back - x).abs() <= 1e-3 * (1 + x.abs())).all()


@pytest.mark.parametrize("kind", ["affine", "umnn", "rq_spline"])
def test_conditional_made_reads_the_label(float64, kind):
    call = "autoregressive " + CALLS[kind].format(h=8, args="")
    text = f"flow c {{\n    input x: vector[3]\n    condition y: label[2]\n    {call}\n}}\n"
    assert flowdsl.analyze_source(text).diagnostics == []  # no "condition declared but unused" warning
    flow = flowdsl.compile_source(text)
    perturb_parameters(flow, 0.2, seed=5)
    x = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 0, 1])
    z, ld = flow(x, labels)
    x2, ld2 = flow.inverse_and_logdet(z, labels)
    assert (x2 - x).abs().max() <= (1e-8 if kind in ANALYTIC else 1e-6) and (ld + ld2).abs().max() <= 1e-6
    assert not torch.allclose(flow(x, 1 - labels)[0], z)
