"""Cached generation (flowdsl.runtime.ar_cache) against the naive reference, for every convolutional and
attention family: identical conditionals at every step, identical samples from the same random stream.

- teacher-forced: the conditional the cached driver computes at each step equals ``model.conditionals``
  (<= 1e-10 in float64, <= 1e-5 in float32);
- sampling: ``sample(n)`` (cached, the default) and ``sample(n, cached=False)`` draw the same values
  from the same seed, and so does ``complete``;
- models without steppers (PixelRNN) or with several configurations (MADE with K masks) fall back to
  the naive loop;
- the runtime protocol is declared: each module's ``streams`` / ``takes_indices`` / ``cacheable`` /
  ``configurations`` are its layer's CausalFacts, and match what the module implements.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import spec_path

import flowdsl
from flowdsl.layers.registry import CausalFacts
from flowdsl.runtime import ar_cache
from flowdsl.runtime.ar_cache import step_conditionals, supports
from flowdsl.runtime.ar_module import ARModule
from flowdsl.testing import perturb_parameters

MODELS = {
    "wavenet": "input x: sequence[14] levels 4\n causal_conv(kernel=2, channels=4)\n"
               " repeat 2 { for d in [1, 2, 4] { gated_residual(kernel=2, dilation=d, residual=4, skip=5) } }\n"
               " relu -> conv1x1(6) -> relu -> conv1x1(5)\n output categorical",
    "wavenet_conditional": "input x: sequence[10] levels 3\n condition y: label[3]\n causal_conv(kernel=3, channels=4, "
                           "dilation=2)\n gated_residual(kernel=3, dilation=2, residual=4, skip=4)\n"
                           " causal_conv(kernel=2, channels=4, dilation=3)\n output logistic_mixture(2)",
    "bytenet": "input x: sequence[12] levels 5\n embed(dim=6)\n"
               " repeat 2 { for d in [1, 2] { bytenet_block(kernel=3, dilation=d, channels=6) } }\n output categorical",
    "dense_attention": "input x: sequence[9] levels 3\n embed(dim=8)\n attention(heads=2, dim=8)\n mlp(hidden=12)\n"
                       " attention(heads=4, dim=8)\n output categorical",
    "strided_attention": "input x: sequence[11] levels 2\n embed(dim=8)\n"
                         " repeat 2 { attention(heads=4, dim=8, pattern=strided(stride=3))\n mlp(hidden=8) }\n"
                         " output bernoulli",
    "fixed_attention": "input x: sequence[11] levels 3\n embed(dim=4)\n"
                       " attention(heads=2, dim=4, pattern=fixed(block=4, summary=1))\n"
                       " attention(heads=1, dim=4, pattern=fixed(block=3, summary=2))\n output categorical",
    "pixelcnn": "input x: image[1, 4, 5] levels 3\n masked_conv(mask=A, kernel=5, channels=6)\n"
                " relu -> masked_conv(mask=B, kernel=3, channels=6)\n relu -> conv1x1(6)\n output categorical",
    "pixelcnn_rgb": "input x: image[3, 3, 4] levels 2\n masked_conv(mask=A, kernel=3, channels=6)\n"
                    " relu -> masked_conv(mask=B, kernel=3, channels=6)\n output logistic_mixture(2)",
    "gated_pixelcnn": "input x: image[1, 5, 4] levels 3\n condition y: label[2]\n"
                      " gated_block(mask=A, kernel=5, channels=6)\n"
                      " repeat 2 { gated_block(kernel=3, channels=6) }\n relu -> conv1x1(6)\n output categorical",
    "gated_rgb": "input x: image[3, 3, 3] levels 2\n gated_block(mask=A, kernel=3, channels=6)\n"
                 " gated_block(kernel=3, channels=6)\n output categorical",
    "video": "input x: video[3, 1, 3, 3] levels 3\n video_encoder(channels=4, blocks=1)\n"
             " pixel_decoder(channels=6, blocks=2)\n output categorical",
    "video_rgb": "input x: video[2, 3, 2, 3] levels 2\n condition y: label[2]\n video_encoder(channels=3, blocks=2)\n"
                 " pixel_decoder(channels=6, blocks=1)\n relu -> conv1x1(3)\n output categorical",
    # the per-position-weight families (flowdsl.runtime.ar_vector_steppers): running sums, one row per step
    "fvbn": "input x: vector[7] levels 3\n fvbn\n output categorical",
    "fvbn_conditional": "input x: vector[6] levels 2\n condition y: label[3]\n fvbn\n output bernoulli",
    "nade": "input x: vector[8] levels 2\n nade(hidden=6)\n output bernoulli",
    "nade_conditional": "input x: vector[6] levels 4\n condition y: label[2]\n nade(hidden=5)\n"
                        " output logistic_mixture(2)",
    "made": "input x: vector[7] levels 2\n made([9, 6], masks=1, order=natural)\n output bernoulli",
    "made_conditional": "input x: vector[6] levels 3\n condition y: label[3]\n made([8], masks=1)\n"
                        " output categorical",
}


def build(name: str, dtype=torch.float64):
    m = flowdsl.compile_source("autoregressive m {\n " + MODELS[name] + "\n}\n", filename="m.ar").to(dtype).eval()
    perturb_parameters(m, scale=0.3, seed=11)
    return m


def labels(m, b: int):
    return None if m.context_shape is None else torch.arange(b) % m.classes


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cached_steps_give_the_naive_conditionals(name):
    m = build(name)
    assert supports(m)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, m.levels, (3, *m.input_shape), generator=gen)
    with torch.no_grad():
        naive = m.conditionals(x, labels(m, 3))
    cached = step_conditionals(m, x, labels(m, 3))
    assert (cached - naive).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["wavenet", "strided_attention", "gated_rgb", "video"])
def test_float32_steps_agree_within_1e_5(name):
    m = build(name, torch.float32)
    x = torch.randint(0, m.levels, (2, *m.input_shape))
    with torch.no_grad():
        naive = m.conditionals(x, labels(m, 2))
    assert (step_conditionals(m, x, labels(m, 2)) - naive).abs().max() < 1e-5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_random_stream_same_samples(name):
    m = build(name)
    torch.manual_seed(5)
    cached = m.sample(3, labels(m, 3))
    torch.manual_seed(5)
    naive = m.sample(3, labels(m, 3), cached=False)
    assert torch.equal(cached, naive)
    # and each drawn value's conditional is the one the naive model computes on the sample itself
    assert (step_conditionals(m, cached, labels(m, 3)) - m.conditionals(cached, labels(m, 3))).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["bytenet", "gated_pixelcnn", "video_rgb"])
def test_completion_matches_the_naive_reference(name):
    m = build(name)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, m.levels, (2, *m.input_shape), generator=gen)
    known = torch.zeros(x.shape, dtype=torch.bool)
    known.reshape(2, -1)[:, : m.size // 2] = True
    torch.manual_seed(9)
    a = m.complete(x, known, labels(m, 2))
    torch.manual_seed(9)
    b = m.complete(x, known, labels(m, 2), cached=False)
    assert torch.equal(a, b) and torch.equal(a[known], x[known])


def test_sample_uses_the_cache_by_default(monkeypatch):
    m = build("wavenet")
    calls = []
    real = ar_cache.fill

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ar_cache, "fill", spy)
    m.sample(1)
    assert calls == [1]
    m.sample(1, cached=False)
    assert calls == [1]


@pytest.mark.parametrize("body", [
    "input x: vector[4] levels 2\n made([8], masks=2)\n output bernoulli",
    # after a layer that reads the current position, nade's input at a position is known only after a rerun
    "input x: vector[5] levels 3\n conv1x1(4)\n nade(hidden=4)\n output categorical",
    "input x: image[1, 3, 3] levels 2\n masked_conv(mask=A, kernel=3, channels=4)\n row_lstm(hidden=4)\n"
    " output categorical",
])
def test_models_without_steppers_fall_back_to_the_naive_loop(body):
    m = flowdsl.compile_source("autoregressive m {\n " + body + "\n}\n", filename="m.ar").eval()
    assert not supports(m)
    torch.manual_seed(2)
    a = m.sample(2)
    torch.manual_seed(2)
    assert torch.equal(a, m.sample(2, cached=False))


# ----------------------------------------------------------------------------- the declared protocol
PROTOCOL_MODELS = {
    **MODELS,
    "made": "input x: vector[4] levels 2\n made([8], masks=3)\n output bernoulli",
    "nade_fvbn": "input x: vector[4] levels 2\n fvbn\n output bernoulli",
    "pixelrnn": "input x: image[1, 3, 3] levels 2\n masked_conv(mask=A, kernel=3, channels=4)\n row_lstm(hidden=4)\n"
                " diagonal_bilstm(hidden=4)\n output categorical",
}


def _overrides_stepper(module) -> bool:
    return type(module).stepper is not ARModule.stepper


@pytest.mark.parametrize("name", sorted(PROTOCOL_MODELS))
def test_declared_protocol_matches_the_modules(name):
    """Each layer's declared facts reach its module, and its module implements what they declare."""
    m = flowdsl.compile_source("autoregressive m {\n " + PROTOCOL_MODELS[name] + "\n}\n", filename="m.ar")
    assert len(m.ir.layers) == len(m.layers)
    for node, module in zip(m.ir.layers, m.layers):
        facts = node.causal
        assert isinstance(module, ARModule), node.key
        assert (module.streams, module.takes_indices, module.cacheable, module.configurations) == \
            (facts.streams, facts.takes_indices, facts.cacheable, facts.configurations), node.key
        assert module.cacheable == _overrides_stepper(module), node.key
        takes_extra = "extra" in inspect.signature(module.forward).parameters
        assert module.streams == takes_extra, node.key
    assert supports(m) == (m.configurations == 1 and all(n.causal.cacheable for n in m.ir.layers))


def test_an_undeclared_module_has_no_protocol_attributes():
    from flowdsl.runtime.ar_basic import ReLU

    module = ReLU()
    with pytest.raises(AttributeError):
        _ = module.streams
    module.declare(CausalFacts(cacheable=True))
    assert module.cacheable and not module.streams and module.configurations == 1


def test_a_sampler_declares_that_it_has_no_likelihood():
    m = flowdsl.compile_file(spec_path("texture.ar"))
    assert m.no_likelihood and "sampler" in m.no_likelihood
    with pytest.raises(NotImplementedError, match="defines no likelihood"):
        m.log_prob(torch.zeros((1, *m.input_shape), dtype=torch.long))
