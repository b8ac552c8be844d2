"""The foundation's flow specs through the public API: nice, realnvp, glow and the bundled ones.

Round trip and log-det against the brute-force Jacobian (float64), multi-scale latents
re-assembled into the input's shape, discrete likelihoods, sampling, checkpoints.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ACCEPTANCE, SPECS

import flowdsl
from flowdsl.testing import brute_force_logdet, check_bijection, perturb_parameters

FOUNDATION = ["nice.flow", "realnvp.flow", "glow.flow"]


def _spec_path(name):
    shared = ACCEPTANCE / name
    return shared if shared.is_file() else SPECS / name


@pytest.mark.parametrize("name", FOUNDATION)
def test_bundled_copy_is_unchanged(name):
    if not (ACCEPTANCE / name).is_file():
        pytest.skip("the shared acceptance folder is not beside this checkout")
    assert (SPECS / name).read_text() == (ACCEPTANCE / name).read_text()


def _data(flow, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if flow.levels:
        # continuous values inside [0, levels), away from the edges where logit is steep
        return (0.1 + 0.8 * torch.rand((n, *flow.input_shape), generator=gen)) * flow.levels
    return torch.randn((n, *flow.input_shape), generator=gen)


@pytest.mark.parametrize("name", FOUNDATION)
def test_spec_round_trip_and_logdet(float64, name):
    flow = flowdsl.compile_file(_spec_path(name))
    flow(_data(flow, 32, seed=5))  # the first training batch initialises actnorm, as in real use
    perturb_parameters(flow, scale=0.02, seed=1)
    flow.eval()
    x = _data(flow, 2 if name != "glow.flow" else 1)
    z, logdet = flow(x)
    assert z.shape == x.shape
    assert (flow.inverse(z) - x).abs().max() <= 1e-8 * max(1.0, x.abs().max().item())
    brute = brute_force_logdet(flow, x)
    assert torch.allclose(brute, logdet, atol=1e-6, rtol=0), (brute, logdet)


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.flow")), ids=lambda p: p.name)
def test_every_bundled_flow_spec_compiles_and_inverts(float64, path):
    names = flowdsl.model_names(path)
    for name in names:
        flow = flowdsl.compile_file(path, model=name)
        ctx = torch.tensor([0, 1, 2]) if flow.context_shape is not None else None
        if flow.levels is None and math.prod(flow.input_shape) <= 64:
            perturb_parameters(flow, scale=0.05, seed=2)
            flow.eval()
            check_bijection(flow, _data(flow, 3), ctx, roundtrip_tol=1e-6, logdet_tol=1e-6)
        flow.eval()
        x = _data(flow, 3)
        assert torch.allclose(flow.inverse(flow(x, ctx)[0], ctx), x, atol=1e-6)


def test_multiscale_latent_layout_keeps_every_factored_part(float64):
    flow = flowdsl.compile_file(_spec_path("realnvp.flow")).eval()
    perturb_parameters(flow, 0.02)
    x = _data(flow, 2)
    z, _ = flow(x)
    final, factors = flow._disassemble(z)
    assert [tuple(f.shape[1:]) for f in factors] == [(2, 4, 4)]
    assert tuple(final.shape[1:]) == (2, 4, 4)
    assert flow.ir.latents == [(7, (2, 4, 4))]


def test_discrete_log_prob_and_sampling():
    flow = flowdsl.compile_file(_spec_path("realnvp.flow"))
    x = torch.randint(0, 17, (4, 1, 8, 8))
    lp = flow.log_prob(x)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    bpd = flow.bits_per_dim(x)
    assert torch.allclose(bpd, -flow.log_prob(x) / (64 * math.log(2)), atol=0.5)  # noise differs per call
    s = flow.sample(3)
    assert s.dtype == torch.long and s.shape == (3, 1, 8, 8) and s.min() >= 0 and s.max() <= 16


def test_uniform_dequantization_normalises_on_a_tiny_discrete_flow(float64):
    """Summed over every configuration, exp(E_u log p(x + u)) <= 1, and = 1 for a flow that is uniform."""
    spec = "flow f {\n input x: vector[2] levels 3\n logit(alpha=0.0)\n}\nflow g {\n input x: vector[2] levels 3\n}\n"
    # logit(0) followed by a logistic base is exactly uniform on [0, 3)^2 / 9: every cell has mass 1/9
    flow = flowdsl.compile_source(spec.replace("logit(alpha=0.0)", "logit(alpha=0.0)\n base logistic"), model="f")
    cells = torch.cartesian_prod(torch.arange(3), torch.arange(3))
    total = flow.log_prob(cells).exp().sum()
    assert abs(total.item() - 1.0) < 1e-9


def test_nice_uses_logistic_base_and_zero_coupling_logdet(float64):
    flow = perturb_parameters(flowdsl.compile_file(_spec_path("nice.flow")), 0.1)
    kinds = [node.logdet for node in flow.ir.layers]
    assert kinds.count("zero") == 4 and kinds[-1] == "exact"
    x = torch.randn(3, 8)
    _, ld = flow.layers[0](x)
    assert torch.equal(ld, torch.zeros(3))
    assert type(flow.base).__name__ == "Logistic"


def test_checkpoint_round_trip(tmp_path):
    flow = flowdsl.compile_file(_spec_path("glow.flow"))
    perturb_parameters(flow, 0.01)
    path = tmp_path / "glow.pt"
    from flowdsl.checkpoint import save_checkpoint

    save_checkpoint(flow, path)
    again = flowdsl.load(path)
    for a, b in zip(flow.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.rand(2, 3, 16, 16) * 256
    flow.eval(), again.eval()
    assert torch.equal(flow(x)[0], again(x)[0])
