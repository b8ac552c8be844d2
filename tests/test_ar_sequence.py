"""Sequence models (WaveNet, ByteNet): acceptance specs, exact receptive fields, causality, errors.

- the acceptance specs compile, report the receptive field, evaluate log_prob and sample a few steps;
- on small variants the checker's dependency sets equal the measured ones (perturbation, both
  directions), so the static receptive field equals the measured one;
- tiny models are normalised and causal (flowdsl.testing.check_autoregressive);
- positioned errors: non-causal padding, dilation <= 0, a first kernel-1 conv, stream widths.
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest
import torch
from conftest import spec_path

import flowdsl
from flowdsl.analysis.causality import dependency_sets
from flowdsl.runtime.ar_cache import step_conditionals
from flowdsl.testing import check_autoregressive, perturb_parameters

WAVENET_NOTE = "receptive field 3070 samples (3 stacks of dilations 1..512, kernel 2)"

SMALL = {
    "wavenet": "input x: sequence[24] levels 3\n causal_conv(kernel=2, channels=4)\n"
               " repeat 2 { for d in doubling(1, 4) { gated_residual(kernel=2, dilation=d, residual=4, skip=5) } }\n"
               " relu -> conv1x1(6)\n output categorical",
    "wavenet_k3": "input x: sequence[30] levels 3\n condition y: label[2]\n"
                  " causal_conv(kernel=3, channels=4, dilation=2)\n"
                  " for d in [1, 3] { gated_residual(kernel=3, dilation=d, residual=4, skip=3) }\n"
                  " output logistic_mixture(2)",
    "bytenet": "input x: sequence[30] levels 3\n embed(dim=6)\n"
               " for d in [1, 2, 4] { bytenet_block(kernel=3, dilation=d, channels=6) }\n output categorical",
    "dilated": "input x: sequence[24] levels 2\n causal_conv(kernel=2, channels=4)\n"
               " causal_conv(kernel=2, channels=4, dilation=4)\n output bernoulli",
}


spec = spec_path  # shared helper in conftest


def source(body: str) -> str:
    return "autoregressive m {\n " + body + "\n}\n"


@cache
def small(name: str):
    m = flowdsl.compile_source(source(SMALL[name]), filename="m.ar").double().eval()
    perturb_parameters(m, scale=0.3, seed=1)
    return m


def labels(m, b):
    return None if m.context_shape is None else torch.arange(b) % m.classes


def measured(m, trials: int = 6) -> np.ndarray:
    """``bool [N, N]``: (p, q) when changing input q moved the conditional of p at some random input."""
    gen = torch.Generator().manual_seed(0)
    n = m.size
    seen = np.zeros((n, n), dtype=bool)
    with torch.no_grad():
        for _ in range(trials):
            x = torch.randint(0, m.levels, (1, n), generator=gen).repeat(n + 1, 1)
            rows = torch.arange(1, n + 1)
            x[rows, rows - 1] = (x[rows, rows - 1] + 1) % m.levels
            ctx = None if m.context_shape is None else torch.ones(n + 1, dtype=torch.long)
            p = m.conditionals(x, ctx)
            seen |= ((p[1:] - p[:1]).abs() > 1e-9).any(-1).numpy().T
    return seen


def window(dep: np.ndarray) -> int:
    """The receptive field as the checker reports it: from the earliest to the latest position read."""
    n = dep.shape[0]
    off = np.where(dep, np.arange(n)[None, :] - np.arange(n)[:, None], 0)
    lo = off.min() if dep.any() else 0
    hi = np.where(dep, off, -n).max() if dep.any() else -1
    return int(hi - lo + 1) if dep.any() else 0


def receptive_note(diags) -> str:
    return next(d.message for d in diags if d.message.startswith("receptive field"))


# ----------------------------------------------------------------------------- acceptance specs
def test_wavenet_check_reports_the_exact_receptive_field():
    start = time.perf_counter()
    analysis = flowdsl.analyze_file(spec("wavenet.ar"))
    elapsed = time.perf_counter() - start
    assert analysis.ok
    assert receptive_note(analysis.diagnostics).startswith(WAVENET_NOTE)
    assert "reads up to 3070 earlier ones" in receptive_note(analysis.diagnostics)
    assert elapsed < 30, f"analysis of a 4096-sample WaveNet took {elapsed:.1f} s"


def test_wavenet_cli_check_prints_the_note(capsys):
    from flowdsl.cli.main import main

    assert main(["check", str(spec("wavenet.ar"))]) == 0
    out = capsys.readouterr()
    assert WAVENET_NOTE in out.out + out.err


@pytest.mark.parametrize("name", ["wavenet.ar", "bytenet.ar"])
def test_acceptance_spec_compiles_evaluates_and_samples_a_few_steps(name):
    m = flowdsl.compile_file(spec(name)).eval()
    assert m.ir.params == sum(p.numel() for p in m.parameters())
    x = torch.randint(0, m.levels, (1, *m.input_shape))
    with torch.no_grad():
        lp = m.log_prob(x)
        cond = m.conditionals(x)[:, :6]
    assert lp.shape == (1,) and torch.isfinite(lp).all() and lp.item() < 0
    steps = step_conditionals(m, x, steps=6)[:, :6]
    assert (steps - cond).abs().max() < 1e-4
    from flowdsl.runtime.ar_cache import fill

    torch.manual_seed(0)
    out = fill(m, torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool), None, steps=5)
    assert out.shape == x.shape and out[:, :5].max() < m.levels and (out[:, 5:] == 0).all()


def test_bytenet_reports_its_schedule():
    note = receptive_note(flowdsl.analyze_file(spec("bytenet.ar")).diagnostics)
    assert note.startswith("receptive field 125 samples (2 stacks of dilations 1..16, kernel 3)")


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", sorted(SMALL))
def test_static_dependencies_equal_measured_ones(name):
    m = small(name)
    static = dependency_sets(m.ir)
    seen = measured(m)
    assert not (seen & ~static).any(), "a conditional reacts to a position the checker says it does not read"
    assert not (static & ~seen).any(), "a declared dependency never showed"
    assert not (static & ~np.tri(m.size, k=-1, dtype=bool)).any()
    note = receptive_note(m.ir.diagnostics + flowdsl.analyze_source(source(SMALL[name]), "m.ar").diagnostics)
    assert note.startswith(f"receptive field {window(seen)} ")


def test_small_wavenet_receptive_field_formula():
    # mask-A first conv (1 tap) + 2 stacks of dilations 1..4 with kernel 2: 1 + 2 * 7 = 15
    assert window(dependency_sets(small("wavenet").ir)) == 15


@pytest.mark.parametrize("body", [
    "input x: sequence[4] levels 3\n causal_conv(kernel=2, channels=3)\n"
    " gated_residual(kernel=2, dilation=2, residual=3, skip=4)\n output categorical",
    "input x: sequence[4] levels 3\n embed(dim=4)\n bytenet_block(kernel=2, dilation=1, channels=4)\n"
    " output logistic_mixture(2)",
    "input x: sequence[5] levels 2\n condition y: label[2]\n causal_conv(kernel=3, channels=3)\n"
    " gated_residual(kernel=2, dilation=1, residual=3, skip=2)\n output bernoulli",
], ids=["wavenet", "bytenet", "conditional"])
def test_tiny_models_are_causal_complete_and_normalised(body, float64):
    m = flowdsl.compile_source(source(body), filename="m.ar").eval()
    perturb_parameters(m, scale=0.5, seed=2)
    report = check_autoregressive(m, examples=8, seed=0)
    assert report["causality"] == 0.0 and report["completeness"] == 0
    assert report["normalisation"] is not None and report["normalisation"] < 1e-9


def test_skips_are_summed_into_the_head():
    m = small("wavenet")
    x = torch.randint(0, 3, (2, 24))
    with torch.no_grad():
        h = m._encode(x)
        h0 = m.layers[0](h)
        skip, extra = m.layers[1](h0, None, None)
        total = skip.clone()
        for layer in m.layers[2:7]:
            skip, extra = layer(skip, None, extra)
        last = m.layers[7](skip)  # relu reads the skip sum, not the residual stream
    assert torch.allclose(last, torch.relu(skip))
    assert total.shape[1] == 5 and extra["residual"].shape[1] == 4


# ----------------------------------------------------------------------------- diagnostics
def diagnostics(body: str):
    return [(d.pos.line, d.pos.column, d.severity, d.message)
            for d in flowdsl.analyze_source(source(body), "t.ar").diagnostics if d.severity != "note"]


def test_non_causal_padding_is_a_positioned_error():
    diags = diagnostics("input x: sequence[16] levels 2\n causal_conv(kernel=2, channels=4)\n"
                        " causal_conv(kernel=3, channels=4, padding=same)\n output bernoulli")
    assert len(diags) == 1
    line, col, sev, msg = diags[0]
    assert (line, col, sev) == (4, 2, "error")
    assert msg.startswith("causal_conv breaks causality: the prediction of position 0 reads itself")
    text = source("input x: sequence[16] levels 2\n causal_conv(kernel=2, channels=4)\n"
                  " causal_conv(kernel=3, channels=4, padding=same)")
    hint = flowdsl.analyze_source(text, "t.ar").diagnostics[0].hint
    assert hint.startswith("padding=same centres the kernel")


def test_dilation_must_be_positive():
    diags = diagnostics("input x: sequence[16] levels 2\n causal_conv(kernel=2, channels=4)\n"
                        " gated_residual(kernel=2, dilation=0, residual=4, skip=4)")
    assert diags == [(4, 27, "error", "argument 'dilation' of gated_residual must be >= 1 (got 0)")]


def test_first_conv_needs_an_earlier_tap():
    diags = diagnostics("input x: sequence[16] levels 2\n causal_conv(kernel=1, channels=4)")
    assert diags[0][:3] == (3, 14, "error") and "reads no earlier sample" in diags[0][3]


def test_a_gated_stack_must_start_causally():
    diags = diagnostics("input x: sequence[8] levels 2\n embed(dim=4)\n gated_residual(kernel=2, residual=4, skip=4)\n"
                        " output bernoulli")
    assert diags == []  # embed shifts by one: the stack may read the current position
    diags = diagnostics("input x: sequence[8] levels 2\n gated_residual(kernel=2, residual=2, skip=4)\n"
                        " output bernoulli")
    assert diags[0][2] == "error" and "breaks causality" in diags[0][3]


def test_stream_width_errors():
    body = ("input x: sequence[16] levels 2\n causal_conv(kernel=2, channels=4)\n"
            " gated_residual(kernel=2, residual=4, skip=6)\n"
            " gated_residual(kernel=2, dilation=2, residual={r}, skip={s})")
    assert diagnostics(body.format(r=4, s=5))[0][2:] == (
        "error", "gated_residual adds its skip output to the previous block's skip sum of 6 features (got skip=5)")
    assert diagnostics(body.format(r=8, s=6))[0] == (
        5, 2, "error", "gated_residual continues a residual stream of 4 features, but declares residual=8")
    assert diagnostics("input x: sequence[16] levels 2\n causal_conv(kernel=2, channels=4)\n"
                       " gated_residual(kernel=2, residual=8, skip=6)")[0][3].startswith(
        "the first gated_residual of a stack reads its input as the residual stream")


def test_declared_context_longer_than_the_receptive_field_warns():
    diags = diagnostics("input x: sequence[64] levels 2\n causal_conv(kernel=2, channels=4, context=32)\n"
                        " for d in [1, 2, 4] { gated_residual(kernel=2, dilation=d, residual=4, skip=4) }")
    assert diags == [(3, 2, "warning", "the receptive field (8 samples) is shorter than the declared context "
                                       "(32 samples): predictions never see samples more than 8 back")]
    assert diagnostics("input x: sequence[64] levels 2\n causal_conv(kernel=2, channels=4, context=8)\n"
                       " for d in [1, 2, 4] { gated_residual(kernel=2, dilation=d, residual=4, skip=4) }") == []


def test_embed_must_be_first_and_bytenet_widths():
    assert diagnostics("input x: sequence[8] levels 2\n embed(dim=4)\n embed(dim=4)")[0][3].startswith(
        "embed reads the model's integer input: it must be the first layer")
    assert diagnostics("input x: sequence[8] levels 2\n embed(dim=4)\n bytenet_block(channels=6)")[0][3] == (
        "bytenet_block's residual connection needs 6 input features, but it gets 4")
    assert diagnostics("input x: image[1, 4, 4] levels 2\n causal_conv(kernel=2, channels=4)")[0][3].startswith(
        "causal_conv models sequences, but this model's input is an image")
