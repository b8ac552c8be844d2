"""Every bundled spec (``specs/*.flow``, ``specs/*.ar``) on the device in float32 against a float64 CPU copy.

For each model the same weights (perturbed so that zero-initialised heads do work) are copied to
the device in float32 and to the CPU in float64. Flows: forward, inverse, log_prob and sample on
the device; the round trip ``inverse(forward(x))`` and the forward ``z`` and log-det against the
CPU copy, within the tolerance of the layer family (:data:`FLOW_TOLERANCES`). Autoregressive
models: log_prob and the conditionals against the CPU copy, and sampling on the device (whole
samples up to 256 positions, the first 16 steps of longer ones). Errors are relative,
``|a - b| / (1 + |b|)`` (:func:`cuda_helpers.relative`).
"""

from __future__ import annotations

import cuda_helpers
import pytest
import torch
from cuda_helpers import ar_input, bundled_models, compile_model, flow_input, is_flow, labels, relative, twin

import flowdsl
from flowdsl.runtime.ar_cache import fill
from flowdsl.testing import perturb_parameters

pytestmark = pytest.mark.cuda
device = cuda_helpers.device  # the fixture

#: family -> (round trip, against the float64 CPU copy) in float32. Measured on the CPU (float32 against
#: float64, these weights): at most 2e-6 for every family but Glow, whose 3x16x16 multi-scale stack of
#: actnorm, 1x1 convolutions and affine couplings on 256 levels loses 1.4e-3 over the round trip (z: 1.7e-4).
#: Exact inverses: couplings, autoregressive transformers, splines, Sylvester. Iterative: inverses by
#: bisection, Newton or fixed-point iteration that stop at their own tolerance. ODE: FFJORD's adaptive steps
#: differ between float32 and float64, so its error is the solver's. Round trips of discrete inputs are
#: measured on the unit scale (x / levels).
FLOW_TOLERANCES = {"exact": (1e-4, 1e-4), "iterative": (1e-3, 1e-3), "ode": (1e-2, 1e-2),
                   "glow": (5e-3, 1e-3)}
FAMILY = {"planar.flow": "iterative", "sos.flow": "iterative", "naf.flow": "iterative", "umnn.flow": "iterative",
          "resflow.flow": "iterative", "ffjord.flow": "ode", "glow.flow": "glow"}
#: autoregressive models: log_prob and conditionals are one forward pass (sums of up to 4096 log terms)
AR_TOLERANCE = 1e-4

MODELS = bundled_models()
FLOWS = [m for m in MODELS if m[0].endswith(".flow")]
ARS = [m for m in MODELS if m[0].endswith(".ar")]


def _ids(m):
    return f"{m[0]}:{m[1]}"


def _prepared(file, name):
    model = compile_model(file, name)
    if is_flow(model):
        with torch.no_grad():
            model.train()
            model(flow_input(model, 32, torch.device("cpu"), seed=5), labels(model, 32, "cpu"))  # actnorm init
    perturb_parameters(model, scale=0.05, seed=2)
    return model.eval()


@pytest.mark.parametrize("spec", FLOWS, ids=_ids)
def test_flow_on_device_matches_the_cpu(device, spec):
    file, name = spec
    model = _prepared(file, name)
    roundtrip_tol, reference_tol = FLOW_TOLERANCES[FAMILY.get(file, "exact")]
    dev, ref = twin(model, device, torch.float32), twin(model, "cpu", torch.float64)
    x = flow_input(model, 4, device)
    ctx = labels(model, 4, device)
    with torch.no_grad(), flowdsl.exact_logdet():
        z, logdet = dev(x, ctx)
        back = dev.inverse(z, ctx)
        z_ref, logdet_ref = ref(x.cpu().double(), None if ctx is None else ctx.cpu())
        assert z.device.type == device.type and z.dtype == torch.float32
        scale = model.levels or 1
        roundtrip = relative(back / scale, x / scale)
        assert roundtrip <= roundtrip_tol, (file, "round trip", roundtrip)
        assert relative(z, z_ref) <= reference_tol, (file, "z", relative(z, z_ref))
        assert relative(logdet, logdet_ref) <= reference_tol, (file, "log-det", relative(logdet, logdet_ref))
        data = x.floor().long() if model.levels else x
        lp = dev.log_prob(data, ctx)
        assert lp.shape == (4,) and torch.isfinite(lp).all()
        s = dev.sample(3, labels(model, 3, device))
    assert s.device.type == device.type and tuple(s.shape) == (3, *model.input_shape)
    if model.levels:
        assert s.dtype == torch.long and 0 <= int(s.min()) and int(s.max()) < model.levels
    else:
        assert torch.isfinite(s).all()


@pytest.mark.parametrize("spec", ARS, ids=_ids)
def test_autoregressive_model_on_device_matches_the_cpu(device, spec):
    file, name = spec
    model = _prepared(file, name)
    dev, ref = twin(model, device, torch.float32), twin(model, "cpu", torch.float64)
    n = 1 if model.size >= 4096 else 2
    with torch.no_grad():
        if not model.no_likelihood:
            x, ctx = ar_input(model, n, device), labels(model, n, device)
            ctx_cpu = None if ctx is None else ctx.cpu()
            lp, lp_ref = dev.log_prob(x, ctx), ref.log_prob(x.cpu(), ctx_cpu)
            assert relative(lp, lp_ref) <= AR_TOLERANCE, (file, name, "log_prob", relative(lp, lp_ref))
            cond, cond_ref = dev.conditionals(x, ctx), ref.conditionals(x.cpu(), ctx_cpu)
            assert relative(cond, cond_ref) <= AR_TOLERANCE, (file, name, "conditionals", relative(cond, cond_ref))
        torch.manual_seed(0)
        if model.size <= 256 or model.no_likelihood:
            s = dev.sample(1, labels(model, 1, device), progress=False)
        else:
            zeros = torch.zeros((1, *model.input_shape), dtype=torch.long, device=device)
            s = fill(dev, zeros, torch.zeros_like(zeros, dtype=torch.bool), labels(model, 1, device), steps=16)
            assert (s.reshape(1, -1)[:, 16:] == 0).all()
    assert s.device.type == device.type and tuple(s.shape) == (1, *model.input_shape)
    assert 0 <= int(s.min()) and int(s.max()) < model.levels
