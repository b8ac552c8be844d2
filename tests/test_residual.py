"""Residual flows: spectral normalisation, the Lip(g) < 1 proof, log-det estimators, fixed-point inverse."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.residual import SpectralLinear, exact_residual_logdet, hutchinson_series
from flowdsl.testing import brute_force_logdet, perturb_parameters

ACCEPTANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "acceptance"
SPEC = ACCEPTANCE / "resflow.flow" if (ACCEPTANCE / "resflow.flow").exists() else \
    Path(__file__).parent.parent / "specs" / "resflow.flow"


pytestmark = pytest.mark.usefixtures("float64")  # one thread: set for the whole suite in conftest


def residual_flow(d: int, args: str, extra: str = ""):
    return flowdsl.compile_source(f"flow f {{\n  input x: vector[{d}]\n{extra}  residual({args})\n}}\n")


def spectral_layers(module):
    return [m for m in module.modules() if isinstance(m, SpectralLinear)]


hidden_sizes = st.lists(st.integers(1, 12), min_size=0, max_size=2)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), hidden_sizes, st.floats(0.1, 0.99), st.integers(0, 10_000), st.floats(0.1, 3.0))
def test_spectral_norm_and_lipschitz_bound(d, hidden, coeff, seed, scale):
    flow = residual_flow(d, f"net=lipschitz_mlp({hidden}, coeff={coeff!r})")
    perturb_parameters(flow, scale, seed=seed)
    for m in spectral_layers(flow):
        assert torch.linalg.matrix_norm(m.normalized_weight(), 2) <= coeff + 1e-3
    layer = flow.layers[0]
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(64, d, generator=gen), torch.randn(64, d, generator=gen)
    lip = flow.ir.layers[0].meta["lipschitz"]
    assert lip == pytest.approx(coeff ** (len(hidden) + 1)) and lip < 1
    ratio = (layer.g(a) - layer.g(b)).norm(dim=1) / (a - b).norm(dim=1)
    assert (ratio <= lip * (1 + 1e-3)).all()


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 4), hidden_sizes, st.floats(0.3, 0.95), st.integers(0, 10_000),
       st.sampled_from(["exact", "power_series(terms=3)", "russian_roulette(p=0.5)"]))
def test_roundtrip_and_exact_logdet(d, hidden, coeff, seed, logdet):
    flow = residual_flow(d, f"net=lipschitz_mlp({hidden}, coeff={coeff!r}, activation=elu), logdet={logdet}")
    perturb_parameters(flow, 2.0, seed=seed)
    x = 2 * torch.randn(5, d, generator=torch.Generator().manual_seed(seed))
    with flowdsl.exact_logdet():
        z, ld = flow(x)
        x_back, inv_ld = flow.inverse_and_logdet(z)
        assert (x_back - x).abs().max() <= 1e-6
        assert (brute_force_logdet(flow, x) - ld).abs().max() <= 1e-6
        assert (inv_ld + ld).abs().max() <= 1e-6
    if logdet == "exact":  # logdet=exact needs no switch
        assert (flow(x)[1] - ld).abs().max() <= 1e-9


def _layer_at_point(d=3, coeff=0.9, seed=0, estimator="russian_roulette(p=0.5)", hidden="[16]"):
    flow = residual_flow(d, f"net=lipschitz_mlp({hidden}, coeff={coeff}), logdet={estimator}")
    perturb_parameters(flow, 1.0, seed=seed)
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(seed))
    with flowdsl.exact_logdet():
        exact = flow(x)[1].item()
    return flow, x, exact


@pytest.mark.parametrize("estimator", ["russian_roulette(p=0.5)", "russian_roulette(p=0.3, exact_terms=0)"])
def test_russian_roulette_is_unbiased(estimator):
    flow, x, exact = _layer_at_point(estimator=estimator)
    torch.manual_seed(0)
    with torch.no_grad():
        estimates = flow(x.expand(20_000, -1))[1]
    mean, se = estimates.mean().item(), estimates.std().item() / math.sqrt(estimates.numel())
    assert abs(mean - exact) <= 3 * se
    assert estimates.std() > 0  # it really is a random estimate


def test_power_series_converges_to_the_exact_logdet():
    flow, x, exact = _layer_at_point(d=3, coeff=0.7)
    layer, d = flow.layers[0], 3
    lip = flow.ir.layers[0].meta["lipschitz"]
    errors = []
    for terms in (1, 2, 4, 8, 16, 32):
        xs = x.expand(d, -1).clone().requires_grad_(True)
        gx = layer.g(xs)
        # basis probes summed over the batch give the exact traces: the truncated series itself
        series = hutchinson_series(gx, xs, torch.ones(terms, d), create_graph=False, v=torch.eye(d)).sum().item()
        errors.append(abs(series - exact))
        assert errors[-1] <= d * lip ** (terms + 1) / ((terms + 1) * (1 - lip)) + 1e-12  # the truncation bound
    assert errors[-1] < 1e-8 and errors[-1] < errors[0]


def test_neumann_gradient_is_the_logdet_gradient():
    flow, x, _ = _layer_at_point(d=3, coeff=0.7)
    layer, d = flow.layers[0], 3
    params = [p for p in layer.parameters()]
    xs = x.expand(d, -1).clone().requires_grad_(True)
    series = hutchinson_series(layer.g(xs), xs, torch.ones(40, d), create_graph=True, v=torch.eye(d)).sum()
    grads = torch.autograd.grad(series, params, allow_unused=True)
    xe = x.clone().requires_grad_(True)
    exact = exact_residual_logdet(layer.g(xe), xe, create_graph=True).sum()
    exact_grads = torch.autograd.grad(exact, params, allow_unused=True)
    for g, e in zip(grads, exact_grads):
        if e is not None:
            assert torch.allclose(g, e, atol=1e-8)


def test_russian_roulette_gradient_matches_on_average():
    flow, x, _ = _layer_at_point()
    layer = flow.layers[0]
    params = [p for name, p in layer.named_parameters() if not name.endswith(".2.bias")]  # J ignores the last bias
    torch.manual_seed(1)
    estimate = layer(x.expand(20_000, -1))[1].mean()
    grads = torch.cat([g.flatten() for g in torch.autograd.grad(estimate, params)])
    with flowdsl.exact_logdet():
        exact = layer(x)[1].sum()
    exact_grads = torch.cat([g.flatten() for g in torch.autograd.grad(exact, params)])
    assert (grads - exact_grads).norm() <= 0.05 * exact_grads.norm()


def _diagnostics(text):
    a = flowdsl.analyze_source(text, "res.flow")
    return [(d.pos.file, d.pos.line, d.pos.column, d.severity, d.message) for d in a.diagnostics]


def test_golden_lipschitz_diagnostics():
    text = ("flow f {\n  input x: vector[4]\n"
            "  residual(net=lipschitz_mlp([16], coeff=1.0))\n"
            "  residual(net=lipschitz_mlp([16], 0.9, activation=swish))\n"
            "  residual(net=mlp([16]), logdet=exact)\n"
            "  residual(lipschitz_mlp([16], 2), logdet=russian_roulette(p=0.5))\n"
            "}\n")
    assert _diagnostics(text) == [
        ("res.flow", 3, 36, "error", "residual needs Lip(g) < 1, but lipschitz_mlp has coeff=1: each linear map is "
                                     "normalised to spectral norm <= coeff, so coeff must be < 1"),
        ("res.flow", 4, 41, "error", "residual needs Lip(g) < 1, but activation swish of lipschitz_mlp is not "
                                     "1-Lipschitz (its slope reaches 1.0998)"),
        ("res.flow", 5, 16, "error", "residual needs Lip(g) < 1, but mlp declares no Lipschitz bound"),
        ("res.flow", 6, 32, "error", "residual needs Lip(g) < 1, but lipschitz_mlp has coeff=2: each linear map is "
                                     "normalised to spectral norm <= coeff, so coeff must be < 1"),
    ]


def test_accepted_activations_and_estimator_kinds():
    for act in ("lipswish", "elu", "tanh", "relu"):
        spec = f"flow f {{\n  input x: vector[2]\n  residual(net=lipschitz_mlp([4], activation={act}))\n}}\n"
        assert _diagnostics(spec) == []
    kinds = {"exact": "exact", "power_series(terms=4)": "estimated, biased",
             "russian_roulette(p=0.5)": "estimated, unbiased"}
    for estimator, kind in kinds.items():
        a = flowdsl.analyze_source(f"flow f {{\n  input x: vector[2]\n  residual(logdet={estimator})\n}}\n", "k.flow")
        node = a.models["f"].layers[0]
        assert node.logdet == kind and "Lip(g) <=" in node.report


def test_acceptance_spec_compiles_and_is_exact():
    flow = flowdsl.compile_file(SPEC)
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params
    for node, layer in zip(flow.ir.layers, flow.layers):
        assert node.params == sum(p.numel() for p in layer.parameters())
    assert [node.logdet for node in flow.ir.layers] == ["estimated, biased", "estimated, unbiased", "exact"]
    perturb_parameters(flow, 1.0, seed=0)
    x = torch.randn(6, 4)
    with flowdsl.exact_logdet():  # in training mode: actnorm initialises, power iterations run on every call
        z, ld = flow(x)
        assert (flow.inverse(z) - x).abs().max() <= 1e-6
        assert (brute_force_logdet(flow, x) - ld).abs().max() <= 1e-6
    flow.eval()
    assert (flow.inverse(flow(x)[0]) - x).abs().max() <= 1e-6
    assert torch.isfinite(flow.log_prob(x)).all()
    assert flow.sample(5).shape == (5, 4)


def test_training_step_and_identity_at_initialisation():
    flow = residual_flow(3, "net=lipschitz_mlp([8, 8], coeff=0.9), logdet=russian_roulette(p=0.5)")
    x = torch.randn(16, 3)
    z, ld = flow(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(16))  # zero last layer: the identity, no NaN
    perturb_parameters(flow, 0.5, seed=0)
    loss = -flow.log_prob(x).mean()
    loss.backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_conditional_residual_roundtrip():
    flow = residual_flow(2, "net=lipschitz_mlp([8], coeff=0.8), logdet=exact", extra="  condition y: label[3]\n")
    perturb_parameters(flow, 1.0, seed=0)
    x, labels = torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    z, ld = flow(x, labels)
    assert (flow.inverse(z, labels) - x).abs().max() <= 1e-6
    assert not torch.allclose(z, flow(x, (labels + 1) % 3)[0])  # the condition is read


def test_a_roulette_probability_that_would_explode_the_series_is_refused():
    # E[terms] = exact_terms + (1 - p) / p: p = 5e-324 would ask for ~1e323 terms (found by the fuzz)
    diags = flowdsl.check_source("flow f {\n  input x: vector[2]\n  residual(logdet=russian_roulette(p=5e-324))\n}\n",
                                 "r.flow")
    assert [(d.severity, d.pos.line, d.pos.column) for d in diags] == [("error", 3, 36)]
    assert diags[0].message == "argument 'p' of russian_roulette must be >= 0.001 (got 5e-324)"
