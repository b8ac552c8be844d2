"""Conditional PixelCNN and Gated PixelCNN (issue 13): a vector h and an image map, read in the gates.

For each kind of condition: the IR's parameter counts equal the modules'; causality and completeness
under a fixed context (perturbation, against the checker's proved dependency sets); exact
normalisation of tiny models for every drawn context; the context is really read (and a map where
it belongs: a 1x1 convolution, upsampled by repetition); cached sampling equals the naive
reference; the shape mismatches are positioned errors. The helpers here are shared with
``test_conditional_ar_sequence.py``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.analysis.causality import dependency_sets
from flowdsl.errors import render_all
from flowdsl.runtime.ar_cache import step_conditionals
from flowdsl.testing.inputs import contexts
from flowdsl.testing.jacobian import perturb_parameters

# ----------------------------------------------------------------------------- helpers (shared)


def model_of(body: str, name: str = "m") -> torch.nn.Module:
    """A compiled autoregressive model of ``body`` (the lines inside the braces), float64, evaluation mode; its
    parameters drawn from a fixed seed (whatever ran before)."""
    src = f"autoregressive {name} {{\n" + body + "}\n"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return flowdsl.compile_source(src, filename="t.ar").double().eval()


def diagnostics(body: str, file: str = "t.ar") -> str:
    """The rendered diagnostics of a spec (``file:line:col: severity: message`` lines, excerpts dropped)."""
    src = "autoregressive m {\n" + body + "}\n"
    text = render_all(flowdsl.analyze_source(src, file).diagnostics, {file: src})
    return "\n".join(line for line in text.splitlines() if line.startswith(file + ":"))


def context_batch(model, n: int, seed: int) -> torch.Tensor:
    """``n`` valid contexts of ``model`` ``[n, *context_shape]`` (labels / whole numbers / reals)."""
    gen = torch.Generator().manual_seed(seed)
    enc = model.condition
    shape = (n, *enc.shape)
    if enc.levels is not None:
        return torch.randint(0, enc.levels, shape, generator=gen)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def ranks(model) -> np.ndarray:
    order = model.order.cpu().numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def observed_dependence(model, context: torch.Tensor, seed: int = 0, tol: float = 1e-10):
    """``bool [N, N]``: (j, k) when changing input position k moved the conditional of position j, under the
    fixed ``context`` (one random input per context row); one batched call for all positions."""
    n, levels, trials = math.prod(model.input_shape), model.levels, context.shape[0]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, (trials, n), generator=gen)
    moved = x[None].repeat(n, 1, 1)  # [k, trial, N]
    k = torch.arange(n)
    moved[k, :, k] = (moved[k, :, k] + torch.randint(1, levels, (n, trials), generator=gen)) % levels
    ctx = context[None].expand(n, *context.shape).reshape(n * trials, *context.shape[1:])
    with torch.no_grad():
        base = model.conditionals(x.reshape(trials, *model.input_shape), context)
        after = model.conditionals(moved.reshape(n * trials, *model.input_shape), ctx).reshape(n, trials, n, -1)
    changed = ((after - base[None]).abs() > tol * (1 + base[None].abs())).any(dim=3).any(dim=1)  # [k, j]
    return changed.T.numpy()


def assert_causal_and_complete(model, context: torch.Tensor) -> None:
    """Under ``context``: every observed dependency is on an earlier position the checker says is read, and every
    declared one is observed (redrawn inputs, then copies with re-drawn parameter noise, cover a dead ReLU unit,
    as :func:`flowdsl.testing.autoregressive.check_autoregressive` does)."""
    rank = ranks(model)
    declared = dependency_sets(model.ir, 0) & (rank[None, :] < rank[:, None])
    seen = observed_dependence(model, context) | observed_dependence(model, context, seed=1)
    late = seen & ~(rank[None, :] < rank[:, None])
    assert not late.any(), f"a conditional reads a later position: {np.argwhere(late)[:3].tolist()}"
    assert not (seen & ~declared).any(), "a conditional reads a position the checker says it does not"
    for k in range(3):
        if not (declared & ~seen).any():
            break
        twin = perturb_parameters(copy.deepcopy(model), scale=0.5, seed=k)
        seen |= observed_dependence(twin, context, seed=k)
    missing = declared & ~seen
    assert not missing.any(), f"declared reads never observed: {np.argwhere(missing)[:3].tolist()}"
    assert declared.any()


def assert_normalised(model, context: torch.Tensor) -> None:
    """The probabilities of all ``levels ** N`` inputs sum to 1 for each context row (exact enumeration)."""
    n = math.prod(model.input_shape)
    grid = torch.tensor(list(itertools.product(range(model.levels), repeat=n))).reshape(-1, *model.input_shape)
    with torch.no_grad():
        for row in context:
            total = torch.logsumexp(model.log_prob(grid, row), dim=0).item()  # one context for every input
            assert abs(total) < 1e-9, f"sum of p = {math.exp(total)} for context {row.tolist()}"


def assert_cached_equals_naive(model, context: torch.Tensor, seed: int = 0) -> None:
    """The cached driver's conditionals equal the model's, and both samplers draw the same samples."""
    torch.manual_seed(seed)
    x = model.sample(context.shape[0], context, cached=False)
    assert torch.allclose(step_conditionals(model, x, context), model.conditionals(x, context), atol=1e-10)
    torch.manual_seed(seed)
    cached = model.sample(context.shape[0], context)
    assert torch.equal(cached, x)


def assert_layer_params(model) -> None:
    """The IR's parameter count of each layer equals its module's."""
    for node, layer in zip(model.ir.layers, model.layers, strict=True):
        assert node.params == sum(p.numel() for p in layer.parameters()), node.layer.name


def other_contexts(model, c: torch.Tensor) -> torch.Tensor:
    """Contexts that differ from ``c`` in every number (the next level, or plus one)."""
    return (c + 1) % model.condition.levels if model.condition.levels is not None else c + 1.0


def conditionals_moved(model, x, c1, c2) -> np.ndarray:
    """``bool [B, N]``: positions whose conditional differs between contexts c1 and c2."""
    with torch.no_grad():
        a, b = model.conditionals(x, c1), model.conditionals(x, c2)
    return ((a - b).abs() > 1e-10).any(dim=2).numpy()


# ----------------------------------------------------------------------------- the models
TINY = "    input x: image[1, 2, 3] levels 2\n"  # 64 inputs: exact normalisation
COLOUR = "    input x: image[3, 2, 3] levels 2\n"  # R-G-B masks (2 ** 18 inputs: normalisation is not enumerated)
PIXELCNN = "    masked_conv(mask=A, kernel=3, channels=4)\n    relu -> masked_conv(mask=B, kernel=3, channels=4)\n"
GATED = "    gated_block(mask=A, kernel=3, channels=6)\n    gated_block(kernel=3, channels=6)\n"

CONDITIONS = {
    "label": "    condition c: label[3]\n",
    "vector": "    condition c: vector[4]\n",
    "vector levels": "    condition c: vector[2] levels 3\n",
    "vector embed": "    condition c: vector[5] embed mlp([6], activation=tanh, out=3)\n",  # tanh: no dead unit
    "image map": "    condition c: image[2, 2, 3]\n",
    "image map upsampled": "    condition c: image[1, 1, 3] levels 4\n",
    "image embed conv": "    condition c: image[1, 2, 3] embed resnet(1, 5, activation=tanh, out=2)\n",
    "image embed mlp": "    condition c: image[1, 2, 3] embed mlp([5], activation=tanh, out=3)\n",
    "sequence flattened": "    condition c: sequence[3, 2]\n",
}
MODELS = {f"{arch} / {cond}": (inp, body, CONDITIONS[cond])
          for arch, inp, body in (("pixelcnn", TINY, PIXELCNN), ("gated", TINY, GATED),
                                  ("gated colour", COLOUR, GATED))
          for cond in CONDITIONS if arch != "gated colour" or cond in ("vector", "image map")}


@functools.cache
def _model(key):
    inp, body, cond = MODELS[key]
    return model_of(inp + cond + body + "    output bernoulli\n")


@pytest.mark.parametrize("key", MODELS)
def test_the_ir_counts_each_conditional_layers_parameters(key):
    model = _model(key)
    assert_layer_params(model)
    assert all(m.reads_context for m in model.layers if type(m).__name__ in ("MaskedConv2d", "GatedBlock"))


@pytest.mark.parametrize("key", MODELS)
@settings(max_examples=3)
@given(data=st.data())
def test_conditional_image_models_are_causal_complete_and_normalised(key, data):
    model = _model(key)
    c = data.draw(contexts(model, batch=3), label="contexts")
    assert_causal_and_complete(model, c)
    if "colour" not in key:
        assert_normalised(model, c)
    assert_cached_equals_naive(model, c)


@pytest.mark.parametrize("key", [k for k in MODELS if "colour" not in k])
@settings(max_examples=3)
@given(data=st.data())
def test_changing_the_context_changes_every_conditional(key, data):
    model = _model(key)
    c = data.draw(contexts(model, batch=2), label="contexts")
    x = torch.randint(0, 2, (2, *model.input_shape))
    moved = conditionals_moved(model, x, c, other_contexts(model, c))
    assert moved.all(), f"conditionals untouched by the context: {np.argwhere(~moved)[:3].tolist()}"


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2), st.sampled_from(["masked_conv(mask=A, kernel=3, channels=4)",
                                           "gated_block(mask=A, kernel=3, channels=4)"]))
def test_a_map_is_read_where_it_is_upsampled_to(column, layer):
    """One layer on a 4 x 6 grid reading a 2 x 3 map: the map's (i, j) reaches exactly the pixels
    (2i..2i+1, 2j..2j+1), whatever the layer reads of the input."""
    model = model_of("    input x: image[1, 4, 6] levels 2\n    condition c: image[1, 2, 3]\n"
                     f"    {layer}\n    output bernoulli\n")
    c = context_batch(model, 1, seed=column)
    c2 = c.clone()
    c2[0, 0, 1, column] += 1.0
    moved = conditionals_moved(model, torch.zeros(1, 1, 4, 6, dtype=torch.long), c, c2)[0].reshape(4, 6)
    expected = np.zeros((4, 6), dtype=bool)
    expected[2:4, 2 * column: 2 * column + 2] = True
    assert np.array_equal(moved, expected), moved


def test_an_unconditional_layer_keeps_its_parameters_and_reads_false_opts_out():
    body = TINY + "    condition c: vector[4]\n" + "    masked_conv(mask=A, kernel=3, channels=4, reads=false)\n" \
        "    relu -> masked_conv(mask=B, kernel=3, channels=4)\n    output bernoulli\n"
    model = model_of(body)
    assert [bool(m.reads_context) for m in model.layers] == [False, False, True]
    plain = model_of(TINY + PIXELCNN + "    output bernoulli\n")
    assert model.ir.layers[0].params == plain.ir.layers[0].params
    assert model.ir.layers[2].params == plain.ir.layers[2].params + 4 * 4


def test_a_conditional_video_pixel_network_is_causal_normalised_and_caches():
    model = model_of("    input x: video[2, 1, 2, 2] levels 2\n    condition c: vector[3]\n"
                     "    video_encoder(channels=4, blocks=1)\n    pixel_decoder(channels=4, blocks=2, kernel=3)\n"
                     "    output bernoulli\n")
    assert [bool(m.reads_context) for m in model.layers] == [False, True]
    assert_layer_params(model)
    c = context_batch(model, 2, seed=0)
    assert_causal_and_complete(model, c)
    assert_normalised(model, c)
    assert_cached_equals_naive(model, c)
    assert conditionals_moved(model, torch.zeros(2, 2, 1, 2, 2, dtype=torch.long), c, c + 1.0).all()


def test_label_checkpoints_of_the_gated_pixelcnn_keep_their_keys():
    """The label-conditional Gated PixelCNN's ``cond_v``/``cond_h`` were Linears: their weights keep the names."""
    model = model_of(TINY + CONDITIONS["label"] + GATED + "    output bernoulli\n")
    keys = set(model.state_dict())
    assert {"layers.0.cond_v.weight", "layers.0.cond_h.weight"} <= keys
    assert model.state_dict()["layers.0.cond_v.weight"].shape == (12, 3)


SPECS = Path(__file__).resolve().parent.parent / "specs" / "conditional"


@pytest.mark.parametrize("name, shape", [("pixelcnn", (16,)), ("gated_pixelcnn_vector", (32,)),
                                         ("gated_pixelcnn_image", (1, 4, 4))])
def test_the_conditional_image_specs_check_clean_and_run(name, shape):
    path = SPECS / f"{name}.ar"
    assert path.read_text().startswith("# ")  # a header comment
    assert not [d for d in flowdsl.analyze_file(str(path)).diagnostics if d.severity == "error"]
    model = flowdsl.compile_file(str(path)).eval()
    assert model.context_shape == shape
    assert all(m.reads_context for m in model.layers if type(m).__name__ in ("MaskedConv2d", "GatedBlock"))
    c = torch.randint(0, 17, (2, *shape)) if name.endswith("image") else torch.randn(2, *shape)
    x = torch.randint(0, 17, (2, *model.input_shape))
    lp = model.log_prob(x, c)
    assert lp.shape == (2,) and torch.isfinite(lp).all()


# ----------------------------------------------------------------------------- positioned diagnostics
GOLDEN = {
    "map that does not divide the grid": (
        "    input x: image[1, 4, 4] levels 2\n    condition c: image[1, 3, 3]\n"
        "    gated_block(mask=A, kernel=3, channels=4)\n    output bernoulli\n",
        "t.ar:4:5: error: gated_block reads the condition's image map image[1, 3, 3] on its 4x4 grid: the map's "
        "height and width must divide the grid's (3x3 does not), to be upsampled by repetition"),
    "map larger than the grid": (
        "    input x: image[1, 2, 2] levels 2\n    condition c: image[2, 4, 4]\n"
        "    masked_conv(mask=A, kernel=3, channels=4)\n    output bernoulli\n",
        "t.ar:4:5: error: masked_conv reads the condition's image map image[2, 4, 4] on its 2x2 grid: the map's "
        "height and width must divide the grid's (4x4 does not), to be upsampled by repetition"),
    "embed conv net output that does not divide": (
        "    input x: image[1, 4, 4] levels 2\n    condition c: image[1, 3, 3] embed resnet(1, 4, out=2)\n"
        "    masked_conv(mask=A, kernel=3, channels=4, reads=false)\n"
        "    relu -> masked_conv(mask=B, kernel=3, channels=4)\n    output bernoulli\n",
        "t.ar:5:13: error: masked_conv reads the condition's image map image[2, 3, 3] on its 4x4 grid: the map's "
        "height and width must divide the grid's (3x3 does not), to be upsampled by repetition"),
}


@pytest.mark.parametrize("case", GOLDEN)
def test_shape_mismatches_are_positioned_errors(case):
    body, expected = GOLDEN[case]
    assert diagnostics(body) == expected
