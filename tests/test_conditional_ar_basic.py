"""Conditional FVBN / NADE / MADE, PixelRNN and attention models, and the AR property engine on any condition.

- every family with each kind of condition (label, vector, image, sequence with and without levels, an
  ``embed`` net): causality by perturbation and by the Jacobian against the proved dependency sets,
  completeness, "changing the context changes every conditional", exact normalisation for every
  (enumerated or drawn) context, sampling (flowdsl.testing.check_autoregressive);
- the context opens no path between positions: a sequence condition aligned with the input may be read
  in full (its future too), and the checks still pass;
- ``reads=false`` on the layer: the conditionals ignore the context;
- NADE's blocked pass with a per-example hidden bias equals the written-out reference, gradients included;
- cached generation of conditional attention models (the added projection, the context's keys) equals
  the naive loop; declared parameter counts equal the modules';
- the engine catches a model that ignores a condition it declares read, and a mask that leaks;
- the specs in specs/conditional compile, and every layer of theirs that can reads the condition.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.ar_basic import NADE
from flowdsl.runtime.ar_cache import step_conditionals, supports
from flowdsl.testing import PropertyFailure, check_autoregressive, perturb_parameters
from flowdsl.testing.ar_contexts import draw
from flowdsl.testing.autoregressive import ARModelFacts

ROOT = Path(__file__).resolve().parent.parent

CONDITIONS = {
    "label": "label[3]",
    "vector": "vector[3]",
    "image": "image[1, 2, 2]",
    "sequence": "sequence[4]",
    "sequence_levels": "sequence[4] levels 2",
    "embed": "vector[5] embed mlp([6], out=2)",
}

VECTOR_LAYERS = {
    "fvbn": "fvbn",
    "nade": "nade(hidden=6)",
    "made": "made([8, 8])",
    "made_masks": "made([6], masks=2, order=agnostic(seed=1))",
}


def model(body: str, condition: str | None, seed: int = 0):
    cond = f" condition c: {condition}\n" if condition else ""
    text = body.replace("CONDITION\n", cond)
    torch.manual_seed(seed)
    m = flowdsl.compile_source("autoregressive m {\n" + text + "}\n", filename="m.ar").double().eval()
    return perturb_parameters(m, scale=0.3, seed=seed)


def vector_model(layer: str, condition: str | None):
    return model(f" input x: vector[4] levels 2\nCONDITION\n {layer}\n output bernoulli\n", condition)


def some_context(m, batch: int, seed: int = 0):
    """Drawn contexts ``[batch, *m.context_shape]`` (labels, whole numbers or reals) from a seeded generator."""
    return draw(ARModelFacts.of(m), batch, torch.Generator().manual_seed(seed), torch.float64, None)


def numel(m) -> int:
    return sum(p.numel() for p in m.parameters())


def assert_conditional_properties(m, examples: int = 4):
    """Every property holds (the Jacobian in the encoded input, or in the embedding lookups of an embed layer)."""
    report = check_autoregressive(m, examples=examples, seed=0)
    assert report["causality"] == 0.0 and report["jacobian"] == 0.0
    assert report["completeness"] == 0 and report["context"] == 0
    assert report["normalisation"] is not None and report["normalisation"] < 1e-8
    assert m.ir.params == numel(m), "declared parameter count differs from the modules'"
    return report


@pytest.mark.parametrize("cond", sorted(CONDITIONS))
@pytest.mark.parametrize("layer", sorted(VECTOR_LAYERS))
def test_vector_families_with_every_condition(layer, cond):
    m = vector_model(VECTOR_LAYERS[layer], CONDITIONS[cond])
    assert all(node.reads_condition for node in m.ir.layers)
    assert_conditional_properties(m)


PIXELRNN = {
    "row_lstm": " input x: image[1, 2, 3] levels 2\nCONDITION\n masked_conv(mask=A, kernel=3, channels=4)\n"
                " row_lstm(hidden=4)\n output categorical\n",
    "diagonal_bilstm": " input x: image[1, 3, 2] levels 2\nCONDITION\n masked_conv(mask=A, kernel=3, channels=4)\n"
                       " diagonal_bilstm(hidden=4)\n output categorical\n",
    "rgb_row_lstm": " input x: image[3, 1, 2] levels 2\nCONDITION\n masked_conv(mask=A, kernel=3, channels=6)\n"
                    " row_lstm(hidden=6)\n output categorical\n",
}


GRIDS = {"row_lstm": "image[1, 2, 3]", "diagonal_bilstm": "image[2, 3, 2]", "rgb_row_lstm": "image[1, 1, 2]"}


@pytest.mark.parametrize("cond", ["label", "vector", "image", "embed"])
@pytest.mark.parametrize("family", sorted(PIXELRNN))
def test_pixelrnn_with_conditions(family, cond):
    """An image condition of the input's grid (a spatial map for the convolutions that read one); the LSTMs
    read it flattened."""
    m = model(PIXELRNN[family], GRIDS[family] if cond == "image" else CONDITIONS[cond])
    lstm = [node for node in m.ir.layers if node.key in ("row_lstm", "diagonal_bilstm")]
    assert lstm and all(node.reads_condition for node in lstm)
    assert_conditional_properties(m, examples=3)


def attention_body(pattern: str, keys: int, length: int = 6) -> str:
    return (f" input x: sequence[{length}] levels 2\nCONDITION\n embed(dim=8)\n"
            f" attention(heads=2, dim=8, pattern={pattern}, context_keys={keys})\n mlp(hidden=8)\n"
            f" attention(heads=2, dim=8, pattern={pattern})\n output categorical\n")


PATTERNS = ["dense", "strided(stride=2)", "fixed(block=3, summary=1)"]


@pytest.mark.parametrize("cond", ["label", "vector", "image", "sequence_levels", "embed"])
@pytest.mark.parametrize("keys", [0, 2])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_attention_with_conditions(pattern, keys, cond):
    m = model(attention_body(pattern, keys), CONDITIONS[cond])
    assert [node.reads_condition for node in m.ir.layers if node.key == "attention"] == [True, True]
    assert_conditional_properties(m, examples=3)


OTHER_FAMILIES = {  # the convolutional families' layers (their own tests are elsewhere): the engine on them
    "gated_pixelcnn": (" input x: image[1, 2, 3] levels 2\nCONDITION\n gated_block(mask=A, kernel=3, channels=4)\n"
                       " gated_block(kernel=3, channels=4)\n output categorical\n",
                       ["label[3]", "vector[3]", "image[1, 2, 3]", "image[2, 1, 3] levels 2"]),
    "wavenet": (" input x: sequence[6] levels 2\nCONDITION\n causal_conv(kernel=2, channels=4)\n"
                " gated_residual(kernel=2, dilation=2, residual=4, skip=4)\n output categorical\n",
                ["label[3]", "vector[3]", "sequence[3, 2]", "sequence[6] levels 2"]),
    "bytenet": (" input x: sequence[6] levels 2\nCONDITION\n embed(dim=8)\n"  # 8 channels: a layer norm over
                " bytenet_block(kernel=3, dilation=1, channels=8)\n"  # 4 (over 2, its output is +-1 only)
                " bytenet_block(kernel=3, dilation=2, channels=8)\n output categorical\n",
                ["sequence[6] levels 3 embed seq_conv(channels=4, dilations=[1, 2], out=8)"]),
}
OTHER_CASES = [(f, c) for f, (_, conds) in sorted(OTHER_FAMILIES.items()) for c in conds]


@pytest.mark.parametrize("family,cond", OTHER_CASES, ids=[f"{f}-{c}" for f, c in OTHER_CASES])
def test_engine_on_the_convolutional_families(family, cond):
    """Causality (perturbation and Jacobian), completeness, the context read at every position and
    normalisation for every context hold for each family under each kind of condition it takes (a local
    sequence condition, upsampled, and ByteNet's source, are read in full: neither is a position)."""
    m = model(OTHER_FAMILIES[family][0], cond)
    assert any(node.reads_condition for node in m.ir.layers)
    assert_conditional_properties(m, examples=3)


ALIGNED = {"attention": attention_body("dense", 3, 4),
           "made": " input x: sequence[4] levels 2\nCONDITION\n made([8])\n output bernoulli\n",
           "nade": " input x: sequence[4] levels 2\nCONDITION\n nade(hidden=5)\n output bernoulli\n"}


@pytest.mark.parametrize("family", sorted(ALIGNED))
def test_an_aligned_sequence_condition_is_read_in_full(family):
    """A context is not a position: reading its future (here: the condition at the last position changes the
    first position's conditional) breaks no causality, and every check still passes."""
    m = model(ALIGNED[family], "sequence[4]")
    x = torch.tensor([[0, 1, 1, 0]])
    c = torch.zeros(1, 4, dtype=torch.float64)
    c2 = c.clone()
    c2[0, 3] = 1.5  # the condition's last (future) sample
    assert not torch.allclose(m.conditionals(x, c)[:, 0], m.conditionals(x, c2)[:, 0])
    assert_conditional_properties(m, examples=3)


@pytest.mark.parametrize("layer", ["fvbn", "nade(hidden=6)", "made([8])"])
def test_reads_false_ignores_the_context(layer):
    name = layer.split("(")[0]
    opted = layer + "(reads=false)" if "(" not in layer else layer[:-1] + ", reads=false)"
    m = model(f" input x: vector[4] levels 2\nCONDITION\n {opted}\n output bernoulli\n", "vector[3]")
    plain = model(f" input x: vector[4] levels 2\n {layer}\n output bernoulli\n", None)
    assert m.ir.layers[0].key == name and not m.ir.layers[0].reads_condition
    assert numel(m) == numel(plain) == m.ir.params
    x = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]])
    a, b = torch.zeros(2, 3, dtype=torch.float64), torch.full((2, 3), 2.0, dtype=torch.float64)
    assert torch.equal(m.conditionals(x, a), m.conditionals(x, b))


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 5), grad_mode=st.booleans(), seed=st.integers(0, 2**16))
def test_conditional_nade_pass_matches_the_reference(batch, grad_mode, seed):
    torch.manual_seed(seed)
    nade = NADE(positions=5, in_features=2, hidden=4, params_per_position=3, context_features=3).double()
    x = torch.randn(batch, 2, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(batch, 3, dtype=torch.float64, requires_grad=True)
    with torch.set_grad_enabled(grad_mode):
        out, ref = nade(x, c), nade.reference_forward(x, c)
    assert torch.allclose(out, ref, atol=1e-12)
    if grad_mode:
        w = torch.randn_like(out)
        wrt = [x, c, *nade.parameters()]
        got = torch.autograd.grad((out * w).sum(), wrt)
        want = torch.autograd.grad((ref * w).sum(), wrt)
        assert all(torch.allclose(g, h, atol=1e-12) for g, h in zip(got, want))
        assert bool(got[1].abs().sum() > 0)  # the context is differentiated through the blocked pass


def test_conditional_nade_evaluation_in_chunks():
    """Evaluation runs 128 examples at a time; each chunk gets its own rows of the per-example hidden bias."""
    torch.manual_seed(0)
    nade = NADE(positions=6, in_features=2, hidden=5, params_per_position=1, context_features=2).double()
    x, c = torch.randn(300, 2, 6, dtype=torch.float64), torch.randn(300, 2, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(nade(x, c), nade.reference_forward(x, c), atol=1e-12)


@pytest.mark.parametrize("cond", ["label", "vector", "sequence_levels", "embed"])
@pytest.mark.parametrize("keys", [0, 3])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_cached_sampling_of_conditional_attention(pattern, keys, cond):
    m = model(attention_body(pattern, keys, length=7), CONDITIONS[cond])
    assert supports(m)
    ctx = some_context(m, 4)
    torch.manual_seed(3)
    cached = m.sample(4, ctx)
    torch.manual_seed(3)
    naive = m.sample(4, ctx, cached=False)
    assert torch.equal(cached, naive)
    assert (step_conditionals(m, cached, ctx) - m.conditionals(cached, ctx)).abs().max() < 1e-10


@pytest.mark.parametrize("keys", [0, 2])
def test_conditional_flex_attention_agrees_with_masked_sdpa(keys):
    """The FlexAttention path (CUDA's default; eager on the CPU) reads the context's keys as the SDPA path does."""
    m = model(attention_body("fixed(block=3, summary=1)", keys, length=7), "vector[3]")
    x, c = torch.randint(0, 2, (3, 7)), some_context(m, 3)
    with torch.no_grad():
        ref = m.conditionals(x, c)
        for layer in m.layers[1:]:
            if hasattr(layer, "use_flex"):
                layer.use_flex = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flex = m.conditionals(x, c)
    assert (flex - ref).abs().max() < 1e-10 and torch.isfinite(ref).all()


def test_one_context_for_the_whole_batch():
    m = vector_model("made([8])", "vector[3]")
    c = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x = m.sample(5, c)
    assert torch.allclose(m.log_prob(x, c), m.log_prob(x, c.expand(5, 3)))


# ----------------------------------------------------------------------------- the engine catches
def test_engine_reports_a_condition_declared_read_but_ignored():
    m = vector_model("made([8], reads=false)", "vector[3]")
    with pytest.raises(PropertyFailure) as err:
        check_autoregressive(m, examples=2, seed=0, context=True)
    assert err.value.property == "context" and "never changed when the context changed" in err.value.problems[0]


def test_engine_jacobian_catches_a_leaking_mask():
    m = vector_model("made([8])", "label[3]")
    with torch.no_grad():
        for layer in m.layers[0].layers:
            layer.masks.fill_(1.0)  # every output reads every input: its own and later ones too
    with pytest.raises(PropertyFailure) as err:
        check_autoregressive(m, examples=2, seed=0, causality=False, jacobian=True, complete=False,
                             normalisation=False, sampling=False)
    assert err.value.property == "jacobian" and "non-zero at input position" in err.value.problems[0]
    assert "context" in err.value.example


def test_engine_jacobian_sees_through_an_embedding():
    """After an embed layer the Jacobian is taken in each position's lookup: attention that reads the future leaks."""
    m = model(attention_body("dense", 2, 5), "vector[3]")
    m.layers[1].mask.fill_(True)  # every query attends to every key
    m.layers[1].full_mask.fill_(True)
    with pytest.raises(PropertyFailure) as err:
        check_autoregressive(m, examples=2, seed=0, causality=False, jacobian=True, complete=False,
                             normalisation=False, sampling=False)
    assert err.value.property == "jacobian" and "not generated before it" in err.value.problems[0]


def test_facts_keep_the_label_form():
    facts = ARModelFacts(classes=4)
    assert facts.conditional and facts.context_shape == () and facts.context_levels == 4
    m = vector_model("nade(hidden=4)", "image[1, 2, 2] levels 2")
    of = ARModelFacts.of(m)
    assert (of.classes, of.context_shape, of.context_levels, of.reads_condition) == (0, (1, 2, 2), 2, True)


def test_context_keys_need_a_condition():
    text = ("autoregressive m {\n input x: sequence[4] levels 2\n embed(dim=4)\n"
            " attention(heads=1, dim=4, context_keys=2)\n output categorical\n}\n")
    found = [(d.pos.line, d.pos.column, d.severity, d.message) for d in flowdsl.analyze_source(text, "t.ar").diagnostics
             if d.severity == "error"]
    assert found == [(4, 28, "error", "context_keys=2 makes keys of the condition, but this layer reads none (the "
                                      "model declares no condition, or the layer says reads=false)")]


# ----------------------------------------------------------------------------- the specs
SPECS = sorted((ROOT / "specs" / "conditional").glob("*.ar"))
B1_SPECS = [p for p in SPECS if p.stem.split("_")[0] in ("fvbn", "nade", "made", "pixelrnn", "sparse")]


@pytest.mark.parametrize("path", B1_SPECS, ids=[p.stem for p in B1_SPECS])
def test_conditional_specs(path):
    text = path.read_text()
    assert text.startswith("#"), "each spec opens with a comment saying what it is"
    result = flowdsl.analyze_source(text, str(path))
    assert [d for d in result.diagnostics if d.severity == "error" or "condition" in d.message] == []
    for name in flowdsl.model_names(path):
        m = flowdsl.compile_file(path, name).eval()
        readers = [n for n in m.ir.layers if n.key in ("fvbn", "nade", "made", "row_lstm", "diagonal_bilstm",
                                                       "attention")]
        assert readers and all(n.reads_condition for n in readers)
        assert m.ir.params == numel(m)
        ctx = some_context(m, 2)
        x = m.sample(2, ctx, progress=False)
        assert torch.isfinite(m.log_prob(x, ctx)).all()


def test_the_made_direct_term_is_added_once():
    """MadeLayer adds its direct condition term once (it was added by MADE.forward and again by the layer)."""
    m = flowdsl.compile_source("autoregressive m {\n input x: vector[4] levels 2\n condition y: vector[3]\n"
                               " made([6], masks=1)\n output bernoulli\n}\n", filename="m.ar").double()
    made = m.layers[0]
    with torch.no_grad():
        for p in made.parameters():
            p.zero_()
        made.direct.weight.copy_(torch.arange(12, dtype=torch.float64).reshape(4, 3))
    y = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    params = made(torch.zeros(1, 2, 4, dtype=torch.float64), y)  # [B, P, D]
    assert torch.allclose(params.reshape(-1), made.direct.weight @ y[0])
