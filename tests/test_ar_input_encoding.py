"""The input-encoding defect (issue 14) stays fixed: binary input enters an autoregressive model as ``x``.

One-hot input gave the features of the commonest level the value 1 in almost every example;
under Adam their weights moved ~lr each per step in the same direction, a bias per hidden unit
moving hundreds of times faster than a real one, and half of a MADE's ReLU units died within
200 steps on binarized MNIST (benchmarks/paper_encoding.py measures it on every family). The
reference coding (level 0 all zeros) makes flowdsl's MADE the plain MADE: same initial
distribution, the same losses step by step from the same weights; old checkpoints keep one-hot.
"""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flowdsl
from flowdsl.runtime.ar_basic import encode_levels
from flowdsl.runtime.ar_cache import step_conditionals

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from reference_models import PlainMADE  # noqa: E402

D, H = 64, 64
SRC = (f"autoregressive m {{\n input x: vector[{D}] levels 2\n made([{H}], masks=1, order=natural)\n"
       " output bernoulli\n}\n")


def sparse_digits(n=2000, seed=0):
    """Binary 8x8 'images': an always-empty border (MNIST's background) around a noisy square."""
    img = np.zeros((8, 8))
    img[2:6, 2:6] = 0.4
    return torch.from_numpy((np.random.default_rng(seed).random((n, D)) < img.reshape(-1)).astype(np.float32))


def made(seed=0, encoding=None):
    torch.manual_seed(seed)
    model = flowdsl.compile_source(SRC, filename="m.ar")
    if encoding:
        model.encoding = encoding
    return model


def first_pre_activations(model, x):
    out = {}
    # the first hidden layer's pre-activation: what its activation receives (the reference-coded first layer
    # computes it without calling its MaskedLinear module, leaving out level 0's columns)
    layer = model.layers[0]
    hook = layer.acts[0].register_forward_hook(lambda m, i, o: out.setdefault("h", i[0]))
    direct, layer.direct_calls = layer.direct_calls, False  # direct calls skip the modules and their hooks
    with torch.no_grad():
        model.log_prob(x.long())
    hook.remove()
    layer.direct_calls = direct
    return out["h"]


def train(models, x, steps, batch=32):
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(1)
    losses = {k: [] for k in models}
    for _ in range(steps):
        xb = x[torch.randint(len(x), (batch,), generator=gen)]
        for k, m in models.items():
            lp = m(xb) if isinstance(m, PlainMADE) else m.log_prob(xb.long())
            loss = -lp.mean()
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            losses[k].append(float(loss.detach()))
    return losses


def test_binary_input_is_fed_as_x_and_old_one_hot_stays_available():
    x = torch.tensor([[0, 1, 1, 0]])
    ref = encode_levels(x, 2, "reference", torch.float32)
    assert ref[..., 1].tolist() == x.float().tolist() and not ref[..., 0].any()
    assert encode_levels(x, 2, "one-hot", torch.float32).sum(-1).eq(1).all()
    with pytest.raises(ValueError, match="unknown input encoding"):
        encode_levels(x, 2, "thermometer", torch.float32)


def test_made_learns_exactly_as_fast_as_a_plain_made_on_the_same_batches():
    """From the plain MADE's weights, flowdsl's MADE takes the same steps: the same loss at every step."""
    torch.manual_seed(0)
    plain = PlainMADE(D, [H])
    model = made(1)
    first, last = model.layers[0].layers
    level0, level1 = first.mask.reshape(H, D, 2).unbind(2)
    assert torch.equal(level0, level1)  # both features of a position have its degree
    with torch.no_grad():  # the plain MADE takes flowdsl's hidden degrees (drawn, not cycled), i.e. its masks
        plain.mask0.copy_(level1)
        plain.mask1.copy_(last.mask)
        first.weight.reshape(H, D, 2)[:, :, 1] = plain.layers[0].weight
        first.bias.copy_(plain.layers[0].bias)
        last.weight.copy_(plain.layers[1].weight)
        last.bias.copy_(plain.layers[1].bias)
    unused = first.weight.reshape(H, D, 2)[:, :, 0].detach().clone()
    x = sparse_digits()
    losses = train({"flowdsl": model, "plain": plain}, x, steps=30)
    assert np.allclose(losses["flowdsl"], losses["plain"], rtol=0, atol=1e-4)
    assert losses["flowdsl"][-1] < losses["flowdsl"][0] - 1  # it did learn
    assert torch.equal(first.weight.reshape(H, D, 2)[:, :, 0], unused)  # level 0's weights get no gradient


def test_first_layer_starts_as_a_plain_made_fed_x():
    """The first weights are drawn for a fan-in of D (one feature per position), like nn.Linear(D, H)."""
    w = made(0).layers[0].layers[0].weight.detach()
    bound = 1 / D ** 0.5
    assert float(w.abs().max()) <= bound + 1e-7 and float(w.abs().max()) > 0.95 * bound


def test_one_hot_kills_hidden_units_and_the_fix_does_not():
    x = sparse_digits()
    models = {"reference": made(0), "one-hot": made(0, "one-hot")}
    torch.manual_seed(0)
    models["plain"] = PlainMADE(D, [H])
    before = {k: float((first_pre_activations(m, x[:500]) <= 0).all(0).float().mean())
              for k, m in models.items() if k != "plain"}
    train(models, x, steps=100)
    dead = {k: float((first_pre_activations(m, x[:500]) <= 0).all(0).float().mean()) for k, m in models.items()
            if k != "plain"}
    dead["plain"] = float((models["plain"].hidden(x[:500])[0] <= 0).all(0).float().mean())
    assert dead["one-hot"] > dead["reference"] + 0.15, (before, dead)  # the defect, reproduced on the old encoding
    assert dead["reference"] <= dead["plain"] + 0.15, dead


def test_old_checkpoint_state_keeps_one_hot_and_new_state_records_reference(tmp_path):
    model = made(0)
    state = model.state_dict()
    assert state["_extra_state"]["encoding"] == "reference"
    old = {**state, "_extra_state": {"cycle": 0, "mask_index": 0}}  # as written before the fix
    again = made(1)
    again.load_state_dict(old)
    assert again.encoding == "one-hot"
    x = sparse_digits(8).long()
    one_hot = copy.deepcopy(model)
    one_hot.encoding = "one-hot"
    assert torch.allclose(again.log_prob(x), one_hot.log_prob(x))
    assert not torch.allclose(model.log_prob(x), one_hot.log_prob(x))


@pytest.mark.parametrize("encoding", ["reference", "one-hot"])
def test_cached_sampling_reads_the_same_encoding(encoding):
    src = ("autoregressive m {\n input x: image[1, 4, 4] levels 3\n masked_conv(mask=A, kernel=3, channels=4)\n"
           " relu -> conv1x1(6)\n output categorical\n}\n")
    torch.manual_seed(0)
    model = flowdsl.compile_source(src, filename="m.ar").double()
    model.encoding = encoding
    x = model.sample(3)
    assert torch.allclose(step_conditionals(model, x), model.conditionals(x), atol=1e-9)


@pytest.mark.parametrize("body, encoding", [
    ("fvbn", "reference"), ("nade(hidden=4)", "reference"), ("made([8], masks=1, order=natural)", "reference"),
])
def test_vector_families_are_fed_x(body, encoding):
    src = f"autoregressive m {{\n input x: vector[5] levels 2\n {body}\n output bernoulli\n}}\n"
    assert flowdsl.compile_source(src, filename="m.ar").encoding == encoding


def test_convolutions_keep_one_hot_which_tells_padding_from_black():
    src = ("autoregressive m {\n input x: image[1, 4, 4] levels 2\n masked_conv(mask=A, kernel=3, channels=4)\n"
           " output bernoulli\n}\n")
    model = flowdsl.compile_source(src, filename="m.ar")
    assert model.encoding == "one-hot"
    assert model._encode(torch.zeros(1, 1, 4, 4, dtype=torch.long))[:, 0].eq(1).all()  # black is not padding


@pytest.mark.parametrize("body", [
    "input x: vector[6] levels 2\n fvbn\n output bernoulli",
    "input x: vector[5] levels 3\n condition y: vector[2]\n fvbn\n output categorical",
    "input x: vector[6] levels 2\n made([9, 7], masks=1)\n output bernoulli",
    "input x: vector[5] levels 4\n condition y: label[3]\n made([8], masks=2, order=agnostic)\n output categorical",
])
def test_reference_coded_first_layers_skip_level_zero_columns_exactly(body):
    """With reference coding level 0's features are zero: fvbn and made leave those weight columns out of the
    product (half the work on binary input), with the same log-probs and the same gradients."""
    model = flowdsl.compile_source("autoregressive m {\n " + body + "\n}\n", filename="m.ar").double().eval()
    layer = model.layers[0]
    assert layer.reference_input  # the model told its first layer
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, model.levels, (7, *model.input_shape), generator=gen)
    y = None
    if model.context_shape is not None:
        y = torch.randint(0, model.condition.levels, (7,), generator=gen) if model.condition.levels else \
            torch.randn(7, *model.context_shape, generator=gen, dtype=torch.float64)
    results = {}
    for skip in (True, False):
        layer.reference_input = skip
        model.zero_grad(set_to_none=True)
        lp = model.log_prob(x, y)
        lp.sum().backward()
        results[skip] = (lp.detach(), {n: p.grad for n, p in model.named_parameters()})
    assert torch.allclose(results[True][0], results[False][0], atol=1e-12)
    for name, g_full in results[False][1].items():
        g_skip = results[True][1][name]
        g_skip = torch.zeros_like(g_full) if g_skip is None else g_skip
        assert torch.allclose(g_skip, g_full, atol=1e-12), name  # level 0's columns: zero either way
    one_hot = copy.deepcopy(model)
    one_hot.encoding = "one-hot"  # an old checkpoint's model: level 0 is a real feature again
    assert not one_hot.layers[0].reference_input
