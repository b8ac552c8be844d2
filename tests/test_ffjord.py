"""FFJORD: ODE round trip, the integrated trace against the brute-force Jacobian, Hutchinson unbiasedness."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.testing import brute_force_logdet, perturb_parameters

ACCEPTANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "acceptance"
SPEC = ACCEPTANCE / "ffjord.flow" if (ACCEPTANCE / "ffjord.flow").exists() else \
    Path(__file__).parent.parent / "specs" / "ffjord.flow"


pytestmark = pytest.mark.usefixtures("float64")  # one thread: set for the whole suite in conftest


def ode_flow(d: int, args: str, extra: str = ""):
    return flowdsl.compile_source(f"flow f {{\n  input x: vector[{d}]\n{extra}  continuous({args})\n}}\n")


def assert_bijection(flow, x, context=None, roundtrip_tol=1e-6, logdet_tol=1e-6):
    z, logdet = flow(x, context)
    x_back, inv_logdet = flow.inverse_and_logdet(z, context)
    assert (x_back - x).abs().max() <= roundtrip_tol
    assert (brute_force_logdet(flow, x, context) - logdet).abs().max() <= logdet_tol
    assert (inv_logdet + logdet).abs().max() <= logdet_tol


@settings(max_examples=4, deadline=None)
@given(st.integers(1, 3), st.integers(0, 10_000), st.sampled_from(["tanh", "softplus"]))
def test_dopri5_roundtrip_and_exact_trace(d, seed, act):
    flow = ode_flow(d, f"net=mlp([8], activation={act}), solver=dopri5, trace=exact, time=0.5")
    perturb_parameters(flow, 0.5, seed=seed)
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(seed))
    assert_bijection(flow, x)


def test_exact_logdet_switch_makes_hutchinson_exact():
    flow = ode_flow(2, "net=mlp([8]), trace=hutchinson")
    perturb_parameters(flow, 0.5, seed=1)
    x = torch.randn(3, 2)
    with flowdsl.exact_logdet():
        assert_bijection(flow, x)


def test_hutchinson_trace_is_unbiased():
    flow = ode_flow(2, "net=mlp([8]), solver=rk4, steps=4, trace=hutchinson")
    perturb_parameters(flow, 1.0, seed=2)
    x = torch.randn(1, 2)
    with flowdsl.exact_logdet():
        exact = flow(x)[1].item()  # the same rk4 grid: the estimate differs only by the trace probes
    torch.manual_seed(0)
    with torch.no_grad():
        estimates = flow(x.expand(4000, -1))[1]
    mean, se = estimates.mean().item(), estimates.std().item() / math.sqrt(estimates.numel())
    assert estimates.std() > 0 and abs(mean - exact) <= 3 * se


@pytest.mark.parametrize("solver, steps, tol", [("rk4", 16, 1e-6), ("euler", 64, 5e-2)])
def test_fixed_grid_solvers(solver, steps, tol):
    flow = ode_flow(2, f"net=mlp([8]), solver={solver}, steps={steps}, trace=exact")
    perturb_parameters(flow, 0.5, seed=3)
    x = torch.randn(3, 2)
    z, logdet = flow(x)
    stated = flow.ir.layers[0].info.roundtrip_tol  # the accuracy the layer states for its grid
    error = (flow.inverse(z) - x).abs().max()
    assert error <= tol and error <= stated  # backwards on the same grid: the method's accuracy
    assert (brute_force_logdet(flow, x) - logdet).abs().max() <= min(10 * tol, stated)


def test_dynamics_read_time_and_condition():
    flow = ode_flow(2, "net=mlp([8]), trace=exact", extra="  condition y: label[2]\n")
    node = flow.ir.layers[0]
    assert node.meta["net_in"] == (3,)  # (z, t); the one-hot condition is appended by the net
    assert node.params == (3 + 2 + 1) * 8 + 9 * 2 == sum(p.numel() for p in flow.parameters())
    perturb_parameters(flow, 0.5, seed=4)
    x, labels = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    assert_bijection(flow, x, labels)
    assert not torch.allclose(flow(x, labels)[0], flow(x, 1 - labels)[0])
    layer = flow.layers[0]
    inputs = torch.cat([x, torch.zeros(4, 1)], 1), torch.cat([x, torch.ones(4, 1)], 1)
    one_hot = torch.nn.functional.one_hot(labels, 2).double()
    assert not torch.allclose(layer.net(inputs[0], one_hot), layer.net(inputs[1], one_hot))


def _diagnostics(text):
    a = flowdsl.analyze_source(text, "ode.flow")
    return [(d.pos.file, d.pos.line, d.pos.column, d.severity, d.message) for d in a.diagnostics]


def test_golden_solver_diagnostics():
    text = ("flow f {\n  input x: vector[2]\n"
            "  continuous(net=mlp([8]), solver=rk45)\n"
            "  continuous(solver=dopri5, steps=10)\n"
            "  continuous(solver=euler, rtol=1e-3)\n"
            "}\n")
    assert _diagnostics(text) == [
        ("ode.flow", 3, 28, "error", "argument 'solver' of continuous must be one of 'dopri5', 'rk4' or 'euler' "
                                     "(got \"rk45\")"),
        ("ode.flow", 4, 29, "error", "argument 'steps' applies to the fixed-grid solvers rk4 and euler; dopri5 "
                                     "chooses its own steps"),
        ("ode.flow", 5, 28, "error", "argument 'rtol' applies to the adaptive solver dopri5; euler takes a fixed "
                                     "number of steps"),
    ]


def test_relu_dynamics_warn_and_default_is_smooth():
    text = "flow f {\n  input x: vector[2]\n  continuous(net=mlp([8], activation=relu))\n}\n"
    assert _diagnostics(text) == [
        ("ode.flow", 3, 14, "warning", "relu dynamics have a discontinuous Jacobian: the solver slows down at every "
                                      "kink and the trace jumps; a smooth activation (tanh, softplus) suits ODEs"),
    ]
    a = flowdsl.analyze_source("flow f {\n  input x: vector[2]\n  continuous(net=mlp([8]))\n}\n", "ode.flow")
    assert a.diagnostics == [] and a.models["f"].layers[0].meta["net"].activation == "tanh"


def test_acceptance_spec_compiles_and_is_exact():
    flow = flowdsl.compile_file(SPEC)
    node = flow.ir.layers[0]
    assert node.logdet == "estimated, unbiased" and "dopri5" in node.report
    assert node.params == flow.ir.params == sum(p.numel() for p in flow.parameters())
    perturb_parameters(flow, 0.3, seed=0)
    x = torch.randn(3, 2)
    with flowdsl.exact_logdet():
        assert_bijection(flow, x)
    assert torch.isfinite(flow.log_prob(x)).all()
    assert flow.sample(3).shape == (3, 2)


def test_training_gradient_through_the_solver():
    flow = ode_flow(2, "net=mlp([8]), solver=rk4, steps=4")
    perturb_parameters(flow, 0.5, seed=5)
    loss = -flow.log_prob(torch.randn(8, 2)).mean()
    loss.backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
