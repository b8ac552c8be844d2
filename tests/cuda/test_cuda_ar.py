"""Autoregressive paths on the device: FlexAttention (compiled) against SDPA, cached sampling against naive.

- FlexAttention: the Sparse Transformer specs' conditionals through the FlexAttention path, with
  ``flex_attention`` compiled (``torch.compile(flex_attention)``, the fused kernel; the way it is meant
  to be called) and eager, equal the masked ``scaled_dot_product_attention`` path (float32, 1e-4). The
  CPU dry run compiles with the ``eager`` backend (the trace, not inductor's code, which needs minutes
  on a CPU);
- cached sampling (:mod:`flowdsl.runtime.ar_cache`): in float64 on the device, every cached step's
  conditional equals the naive one (1e-10) and the same seed draws the same samples, for a dilated
  convolution stack, a gated PixelCNN and a strided attention model; the WaveNet spec's first 64
  cached steps agree with its conditionals in float32 (1e-4).
"""

from __future__ import annotations

import warnings

import cuda_helpers
import pytest
import torch
from cuda_helpers import compile_model, relative

import flowdsl
from flowdsl.runtime.ar_attention import flex_available
from flowdsl.runtime.ar_cache import step_conditionals
from flowdsl.testing import perturb_parameters

pytestmark = pytest.mark.cuda
device = cuda_helpers.device  # the fixture

SMALL = {
    "wavenet": "input x: sequence[24] levels 4\n causal_conv(kernel=2, channels=8)\n"
               " repeat 2 { for d in [1, 2, 4] { gated_residual(kernel=2, dilation=d, residual=8, skip=8) } }\n"
               " relu -> conv1x1(8)\n output categorical",
    "gated_pixelcnn": "input x: image[1, 6, 5] levels 3\n condition y: label[2]\n"
                      " gated_block(mask=A, kernel=5, channels=8)\n repeat 2 { gated_block(kernel=3, channels=8) }\n"
                      " relu -> conv1x1(8)\n output categorical",
    "strided_attention": "input x: sequence[16] levels 3\n embed(dim=16)\n"
                         " repeat 2 { attention(heads=2, dim=16, pattern=strided(stride=4))\n mlp(hidden=16) }\n"
                         " output categorical",
}


def compile_backend(device) -> str:
    return "inductor" if device.type == "cuda" else "eager"


def _labels(m, n, device):
    return None if m.context_shape is None else (torch.arange(n) % m.classes).to(device)


@pytest.mark.skipif(not flex_available(), reason="this torch has no torch.nn.attention.flex_attention")
@pytest.mark.parametrize("model", ["sparse_strided", "sparse_fixed"])
def test_compiled_flex_attention_equals_sdpa(device, model, monkeypatch):
    from torch.nn.attention import flex_attention as flex_module

    m = compile_model("sparse_transformer.ar", model).to(device).eval()
    perturb_parameters(m, scale=0.3, seed=0)
    attention = [layer for layer in m.layers if hasattr(layer, "use_flex")]
    assert attention
    x = torch.randint(0, m.levels, (2, *m.input_shape)).to(device)
    with torch.no_grad():
        for layer in attention:
            layer.use_flex = False
        sdpa = m.conditionals(x)
        for layer in attention:
            layer.use_flex = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
            eager = m.conditionals(x)
        torch._dynamo.reset()
        fused = torch.compile(flex_module.flex_attention, backend=compile_backend(device))
        monkeypatch.setattr(flex_module, "flex_attention", fused)  # Attention._flex imports it at each call
        from torch._dynamo.utils import counters

        counters.clear()
        compiled = m.conditionals(x)
        assert counters["stats"]["unique_graphs"] >= 1  # the compiled kernel ran, not the eager one
    assert torch.isfinite(sdpa).all()
    assert relative(eager, sdpa) <= 1e-4, relative(eager, sdpa)
    assert relative(compiled, sdpa) <= 1e-4, relative(compiled, sdpa)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_cached_sampling_equals_naive_on_the_device(device, name):
    m = flowdsl.compile_source("autoregressive m {\n " + SMALL[name] + "\n}\n", filename="m.ar")
    m = m.to(device=device, dtype=torch.float64).eval()
    perturb_parameters(m, scale=0.3, seed=11)
    x = torch.randint(0, m.levels, (3, *m.input_shape)).to(device)
    with torch.no_grad():
        naive = m.conditionals(x, _labels(m, 3, device))
    cached = step_conditionals(m, x, _labels(m, 3, device))
    assert cached.device.type == device.type and relative(cached, naive) <= 1e-10
    torch.manual_seed(5)
    a = m.sample(3, _labels(m, 3, device), progress=False)
    torch.manual_seed(5)
    b = m.sample(3, _labels(m, 3, device), progress=False, cached=False)
    assert a.device.type == device.type and torch.equal(a, b)


def test_wavenet_spec_cached_steps_in_float32(device):
    m = compile_model("wavenet.ar", "wavenet").to(device).eval()
    perturb_parameters(m, scale=0.05, seed=1)
    x = torch.randint(0, m.levels, (1, *m.input_shape)).to(device)
    with torch.no_grad():
        naive = m.conditionals(x)[:, :64]
    cached = step_conditionals(m, x, steps=64)[:, :64]
    assert relative(cached, naive) <= 1e-4, relative(cached, naive)
