"""Conditional WaveNet (global and local conditioning) and the ByteNet encoder-decoder (issue 13).

Global: a vector (a speaker label, a vector, an embed mlp) in every gate. Local: a ``sequence[L']``
condition at a lower rate, upsampled to the input's length by repetition or a learned transposed
convolution, read through 1x1 convolutions at each step (its "future" too: it is not the input).
ByteNet: the source, encoded by the ``seq_conv`` embed net (non-causal dilated residual
convolutions), read by every decoder block at its position. For each: parameter counts, causality
and completeness under a fixed context, exact normalisation for every drawn context, the context
is really read where it belongs, cached == naive sampling, positioned mismatch errors.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conditional_ar_conv import (
    assert_cached_equals_naive,
    assert_causal_and_complete,
    assert_layer_params,
    assert_normalised,
    conditionals_moved,
    context_batch,
    diagnostics,
    model_of,
    other_contexts,
)

import flowdsl
from flowdsl.layers.seq_nets import SeqConv
from flowdsl.runtime.seq_nets import build_seq_conv
from flowdsl.testing.inputs import contexts

TINY = "    input x: sequence[6] levels 3\n"  # 729 inputs: exact normalisation
WAVENET = ("    causal_conv(kernel=2, channels=4{up})\n"
           "    gated_residual(kernel=2, dilation=1, residual=4, skip=5{up})\n"
           "    gated_residual(kernel=2, dilation=2, residual=4, skip=5{up})\n"
           "    conv1x1(6)\n")  # no relu: a dead unit would hide a dependency from the perturbation check
BYTENET = ("    embed(dim=8)\n    bytenet_block(kernel=3, dilation=1, channels=8)\n"  # a layer norm over 2 features
           "    bytenet_block(kernel=3, dilation=2, channels=8)\n")  # keeps only a sign: 4 inner features


MODELS = {
    "wavenet global label": "    condition c: label[3]\n" + WAVENET.format(up=""),
    "wavenet global vector embed": "    condition c: vector[5] embed mlp([6], activation=tanh, out=3)\n"
                                   + WAVENET.format(up=""),  # tanh embed nets: no dead unit hides a read
    "wavenet global image flattened": "    condition c: image[1, 2, 2]\n" + WAVENET.format(up=""),
    "wavenet local same rate": "    condition c: sequence[6, 2]\n" + WAVENET.format(up=""),
    "wavenet local repeat": "    condition c: sequence[3] levels 4\n" + WAVENET.format(up=", upsample=repeat"),
    "wavenet local transposed": "    condition c: sequence[2, 3]\n" + WAVENET.format(up=", upsample=transposed"),
    "wavenet local seq_conv embed": "    condition c: sequence[3, 2] embed seq_conv(channels=4, dilations=[1], "
                                    "activation=tanh, out=3)\n"
                                    + WAVENET.format(up=", upsample=transposed"),
    "bytenet source": "    condition src: sequence[6] levels 3\n" + BYTENET,
    "bytenet encoder-decoder": "    condition src: sequence[6] levels 3 embed seq_conv(channels=5, dilations=[1, 2], "
                               "activation=tanh, out=3)\n" + BYTENET,  # tanh: no dead unit hides a read
    "bytenet vector": "    condition c: vector[3]\n" + BYTENET,
}


@functools.cache
def _model(key):
    return model_of(TINY + MODELS[key] + "    output categorical\n")


@pytest.mark.parametrize("key", MODELS)
def test_each_conditional_layer_reads_the_condition_as_declared(key):
    model = _model(key)
    assert_layer_params(model)
    readers = [m for m in model.layers if type(m).__name__ in ("TapConv1d", "GatedResidual", "ByteNetBlock")]
    assert readers and all(m.reads_context for m in readers)
    local = ("local" in key or "bytenet" in key) and "vector" not in key
    assert all((getattr(m, "context_layout", "flat") == "map") == local for m in readers)


@pytest.mark.parametrize("key", MODELS)
@settings(max_examples=3)
@given(data=st.data())
def test_conditional_sequence_models_are_causal_complete_and_normalised(key, data):
    model = _model(key)
    c = data.draw(contexts(model, batch=3), label="contexts")
    assert_causal_and_complete(model, c)
    assert_normalised(model, c)
    assert_cached_equals_naive(model, c)
    x = torch.randint(0, 3, (3, 6))
    assert conditionals_moved(model, x, c, other_contexts(model, c)).all()


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2), st.sampled_from(["repeat", "transposed"]))
def test_local_conditioning_reaches_the_steps_it_is_upsampled_to(step, upsample):
    """embed, then one gated_residual of kernel 2 (taps t-1, t on the input): the condition's step j
    reaches exactly the steps 2j, 2j+1 of the input, at the lower rate by either upsampling."""
    model = model_of("    input x: sequence[6] levels 3\n    condition c: sequence[3]\n    embed(dim=4)\n"
                     f"    gated_residual(kernel=2, dilation=1, residual=4, skip=5, upsample={upsample})\n"
                     "    output categorical\n")
    c = context_batch(model, 1, seed=step)
    c2 = c.clone()
    c2[0, step] += 1.0
    moved = conditionals_moved(model, torch.zeros(1, 6, dtype=torch.long), c, c2)[0]
    assert np.flatnonzero(moved).tolist() == [2 * step, 2 * step + 1]


def test_the_decoder_reads_the_source_future_through_the_encoder():
    """The source's last symbol reaches target positions 2.. through seq_conv (non-causal, dilations 1, 2: three
    steps both ways): a condition's future is allowed; without the encoder, bytenet_block reads the source at
    its own position only (and the causal decoder carries it to later positions)."""
    encdec, plain = _model("bytenet encoder-decoder"), _model("bytenet source")
    src = context_batch(encdec, 1, seed=0)
    src2 = src.clone()
    src2[0, 5] = (src2[0, 5] + 1) % 3
    x = torch.zeros(1, 6, dtype=torch.long)
    assert np.flatnonzero(conditionals_moved(encdec, x, src, src2)[0]).tolist() == [2, 3, 4, 5]
    assert np.flatnonzero(conditionals_moved(plain, x, src, src2)[0]).tolist() == [5]


def test_transposed_upsampling_starts_as_repetition_and_is_learned():
    model = _model("wavenet local transposed")
    up = model.layers[1].cond.up
    assert isinstance(up, torch.nn.ConvTranspose1d) and up.stride == (3,) and up.weight.requires_grad
    repeat = model_of(TINY + MODELS["wavenet local transposed"].replace("transposed", "repeat")
                      + "    output categorical\n")
    assert repeat.layers[1].cond.up is None
    assert model.ir.layers[1].params == repeat.ir.layers[1].params + 3 * 3 * 3 + 3  # C = 3, L / L' = 3


def test_global_checkpoints_of_the_wavenet_keep_their_key():
    model = _model("wavenet global label")
    assert model.state_dict()["layers.1.cond.weight"].shape == (8, 3)


def test_seq_conv_keeps_the_length_and_counts_its_parameters():
    spec = SeqConv(channels=6, dilations=(1, 2, 4), kernel=5)
    net = build_seq_conv(spec, (3, 20), (7, 20), 0)
    assert net(torch.randn(2, 3, 20)).shape == (2, 7, 20)
    assert sum(p.numel() for p in net.parameters()) == spec.param_count((3, 20), (7, 20))
    ctx_net = build_seq_conv(spec, (3, 20), (7, 20), 2)
    assert ctx_net(torch.randn(2, 3, 20), torch.randn(2, 2)).shape == (2, 7, 20)
    assert sum(p.numel() for p in ctx_net.parameters()) == spec.param_count((3, 20), (7, 20), context=2)


SPECS = Path(__file__).resolve().parent.parent / "specs" / "conditional"


@pytest.mark.parametrize("name, context", [
    ("wavenet_global", lambda: torch.tensor([0, 9])),
    ("wavenet_local", lambda: torch.randn(2, 64, 8)),
    ("bytenet", lambda: torch.randint(0, 256, (2, 256))),
])
def test_the_conditional_sequence_specs_check_clean_and_run(name, context):
    path = SPECS / f"{name}.ar"
    assert path.read_text().startswith("# ")  # a header comment
    assert not [d for d in flowdsl.analyze_file(str(path)).diagnostics if d.severity in ("error", "warning")]
    model = flowdsl.compile_file(str(path)).eval()
    c = context()
    x = torch.randint(0, 256, (2, *model.input_shape))
    lp = model.log_prob(x, c)
    assert lp.shape == (2,) and torch.isfinite(lp).all()


# ----------------------------------------------------------------------------- positioned diagnostics
GOLDEN = {
    "local condition length does not divide": (
        TINY + "    condition c: sequence[4]\n    causal_conv(kernel=2, channels=4, reads=false)\n"
        "    gated_residual(kernel=2, dilation=1, residual=4, skip=5)\n    output categorical\n",
        "t.ar:5:5: error: gated_residual upsamples the condition's sequence map sequence[1, 4] to the input's "
        "length 6: that must be a multiple of the map's length 4"),
    "local condition longer than the input": (
        TINY + "    condition c: sequence[12, 2]\n    causal_conv(kernel=2, channels=4)\n    output categorical\n",
        "t.ar:4:5: error: causal_conv upsamples the condition's sequence map sequence[2, 12] to the input's "
        "length 6: that must be a multiple of the map's length 12"),
    "source shorter than the target": (
        TINY + "    condition src: sequence[3] levels 3\n" + BYTENET + "    output categorical\n",
        "t.ar:5:5: error: bytenet_block reads the condition's sequence map sequence[3, 3] at each of the input's 6 "
        "positions: the map's length must equal it (got 3)"),
    "seq_conv on a vector condition": (
        TINY + "    condition c: vector[4] embed seq_conv(out=3)\n" + BYTENET + "    output categorical\n",
        "t.ar:3:34: error: net seq_conv needs sequence input (C, L), but its input here is vector[4]"),
    "seq_conv with an even kernel": (
        TINY + "    condition c: sequence[6] embed seq_conv(kernel=4, out=3)\n" + BYTENET + "    output categorical\n",
        "t.ar:3:45: error: argument 'kernel' of seq_conv must be odd (got 4): a centred convolution keeps the "
        "length"),
    "seq_conv without dilations": (
        TINY + "    condition c: sequence[6] embed seq_conv(dilations=[], out=3)\n" + BYTENET
        + "    output categorical\n",
        "t.ar:3:45: error: argument 'dilations' of seq_conv must list at least one dilation (one residual block "
        "each)"),
    "upsample without a sequence condition": (
        TINY + "    condition c: label[2]\n    causal_conv(kernel=2, channels=4, upsample=transposed)\n"
        "    output categorical\n",
        "t.ar:1:1: note: receptive field 1 samples; a position reads up to 1 earlier ones\n"
        "t.ar:4:39: warning: upsample=transposed has no effect: causal_conv reads no sequence condition here (it "
        "upsamples a sequence[L'] condition to the input's length)"),
}


@pytest.mark.parametrize("case", GOLDEN)
def test_shape_mismatches_are_positioned_errors(case):
    body, expected = GOLDEN[case]
    assert diagnostics(body) == expected
