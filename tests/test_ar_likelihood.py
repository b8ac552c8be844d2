"""Exact likelihood and sampling of autoregressive models.

Tiny models sum to probability one over every configuration; sampling draws from the model's
own distribution (a seeded chi-square test); ``complete`` keeps the known pixels and samples the
rest from the right conditional; MADE's K masks average exactly and cycle in training.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import flowdsl
from flowdsl.layers.made_masks import permutation


def compile_ar(body: str, seed: int = 0, scale: float = 0.5):
    """A float64 model with perturbed parameters (so that the distribution is far from uniform)."""
    torch.manual_seed(seed)
    m = flowdsl.compile_source("autoregressive m {\n " + body + "\n}\n", filename="m.ar").double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return m


def everything(m) -> torch.Tensor:
    """Every configuration of the input, ``[L ** N, *input_shape]``."""
    rows = list(itertools.product(range(m.levels), repeat=m.size))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, *m.input_shape)


TINY = {  # 4 binary pixels, a 2x2 image with 3 levels, colour pixels, a mixture head, conditional models
    "fvbn": "input x: vector[4] levels 2\n fvbn\n output bernoulli",
    "nade": "input x: vector[4] levels 2\n nade(hidden=3)\n output bernoulli",
    "made": "input x: vector[4] levels 2\n made([6, 6], masks=3, order=agnostic)\n output bernoulli",
    "made3": "input x: vector[3] levels 3\n made([5], order=reverse)\n output logistic_mixture(2)",
    "pixelcnn": "input x: image[1, 2, 2] levels 2\n masked_conv(mask=A, kernel=3, channels=4)\n"
                " relu -> masked_conv(mask=B, kernel=3, channels=4)\n output categorical",
    "pixelcnn3": "input x: image[1, 2, 2] levels 3\n masked_conv(mask=A, kernel=3, channels=4)\n output categorical",
    "rgb": "input x: image[3, 1, 2] levels 2\n masked_conv(mask=A, kernel=3, channels=6)\n"
           " relu -> conv1x1(6)\n output categorical",
    "gated": "input x: image[1, 2, 2] levels 3\n condition y: label[3]\n gated_block(mask=A, kernel=3, channels=4)\n"
             " gated_block(kernel=3, channels=4)\n output categorical",
    "gated_rgb": "input x: image[3, 1, 2] levels 2\n gated_block(mask=A, kernel=3, channels=3)\n output bernoulli",
    "row_lstm": "input x: image[1, 2, 2] levels 3\n masked_conv(mask=A, kernel=3, channels=4)\n row_lstm(hidden=4)\n"
                " output logistic_mixture(3)",
    "diagonal_bilstm": "input x: image[1, 2, 2] levels 3\n masked_conv(mask=A, kernel=3, channels=4)\n"
                       " diagonal_bilstm(hidden=4)\n output categorical",
    "diag_rgb": "input x: image[3, 1, 2] levels 2\n masked_conv(mask=A, kernel=3, channels=3)\n"
                " diagonal_bilstm(hidden=3)\n output categorical",
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_models_sum_to_one_over_every_configuration(name):
    m = compile_ar(TINY[name])
    xs = everything(m)
    labels = range(m.ir.header.condition.classes) if m.context_shape is not None else [None]
    for y in labels:
        ctx = None if y is None else torch.full((len(xs),), y)
        lp = m.log_prob(xs, ctx)
        assert lp.shape == (len(xs),) and (lp < 0).all()
        assert abs(lp.exp().sum().item() - 1.0) <= 1e-6
        for k in range(m.configurations):  # each mask on its own is a normalised model too
            m.mask_index = k
            params = m.conditionals(xs, ctx)
            single = m.dist.log_prob(params, xs.reshape(len(xs), -1)).sum(dim=1)
            assert abs(single.exp().sum().item() - 1.0) <= 1e-6
        m.mask_index = 0


def test_made_log_prob_is_the_log_of_the_average_of_its_masks():
    m = compile_ar(TINY["made"])
    xs = everything(m)
    per_mask = []
    for k in range(3):
        m.mask_index = k
        per_mask.append(m.dist.log_prob(m.conditionals(xs), xs).sum(dim=1))
        assert sorted(m.order.tolist()) == [0, 1, 2, 3]
    m.mask_index = 0
    expected = torch.logsumexp(torch.stack(per_mask), 0) - math.log(3)
    assert torch.allclose(m.log_prob(xs), expected, atol=1e-12)
    assert len({tuple(o.tolist()) for o in m.orders}) > 1  # order=agnostic draws an order per mask


def test_made_training_cycles_through_its_masks():
    m = compile_ar(TINY["made"])
    x = everything(m)[:5]
    per_mask = []
    for k in range(3):
        m.mask_index = k
        per_mask.append(m.dist.log_prob(m.conditionals(x), x).sum(dim=1))
    m.mask_index = 0
    m.train()
    for step in range(6):
        assert torch.allclose(m.log_prob(x), per_mask[step % 3], atol=1e-12)


def test_made_orders_follow_the_spec():
    m = compile_ar("input x: vector[5] levels 2\n made([8], order=random(seed=4))\n output bernoulli")
    assert m.order.tolist() == permutation(("random", 4), 5).tolist()
    r = compile_ar("input x: vector[5] levels 2\n made([8], order=reverse)\n output bernoulli")
    assert r.order.tolist() == [4, 3, 2, 1, 0]


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of observed counts against probabilities (cells with small expectations merged)."""
    counts, probs = counts.detach(), probs.detach()
    n = counts.sum()
    expected = probs * n
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = len(exp) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


@pytest.mark.parametrize("name", ["pixelcnn", "made", "rgb"])
def test_sampling_draws_from_the_models_own_distribution(name):
    m = compile_ar(TINY[name], seed=1, scale=1.0)
    xs = everything(m)
    probs = m.log_prob(xs).exp()
    torch.manual_seed(0)
    samples = m.sample(3000)
    assert samples.shape == (3000, *m.input_shape) and samples.dtype == torch.long
    code = (samples.reshape(3000, -1) * (m.levels ** torch.arange(m.size - 1, -1, -1))).sum(dim=1)
    counts = torch.bincount(code, minlength=len(xs)).double()
    assert _chi_square_p(counts, probs) > 1e-4


def test_conditional_sampling_uses_the_label():
    m = compile_ar(TINY["gated"], seed=2, scale=1.5)
    xs = everything(m)
    torch.manual_seed(1)
    for y in (0, 2):
        probs = m.log_prob(xs, torch.full((len(xs),), y)).exp()
        samples = m.sample(2000, torch.tensor(y))
        code = (samples.reshape(2000, -1) * (3 ** torch.arange(3, -1, -1))).sum(dim=1)
        assert _chi_square_p(torch.bincount(code, minlength=81).double(), probs) > 1e-4


def test_complete_keeps_known_pixels_and_samples_the_rest_from_the_conditional():
    m = compile_ar(TINY["pixelcnn3"], seed=3, scale=1.0)
    known = torch.tensor([[True, True], [False, False]])[None]  # the top row known: a prefix of the order
    x = torch.tensor([[[2, 0], [1, 1]]]).repeat(2000, 1, 1)[:, None]
    torch.manual_seed(2)
    out = m.complete(x, known[None].expand(2000, 1, 2, 2))
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    assert out.min() >= 0 and out.max() < 3
    xs = everything(m)
    match = (xs[:, 0, 0] == torch.tensor([2, 0])).all(dim=1)
    probs = m.log_prob(xs[match]).exp()
    code = out[:, 0, 1, 0] * 3 + out[:, 0, 1, 1]
    assert _chi_square_p(torch.bincount(code, minlength=9).double(), probs / probs.sum()) > 1e-4
    everything_known = m.complete(x[:3], torch.ones(1, 2, 2, dtype=torch.bool))
    assert torch.equal(everything_known, x[:3])


def test_progress_bar_is_off_by_default_off_a_terminal():
    m = compile_ar(TINY["fvbn"])
    with m._progress(10_000, None) as bar:
        assert bar.disable
    with m._progress(10, False) as bar:
        assert bar.disable


def test_api_refuses_bad_inputs_and_contexts():
    m = compile_ar(TINY["gated"])
    assert m.input_shape == (1, 2, 2) and m.levels == 3 and m.context_shape == ()
    x = torch.zeros(2, 1, 2, 2, dtype=torch.long)
    for bad, ctx in [(x, None), (x, torch.tensor([0, 5])), (x + 3, torch.tensor([0, 1])),
                     (torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 1]))]:
        with pytest.raises(ValueError):
            m.log_prob(bad, ctx)
    with pytest.raises(ValueError):
        m.mask_index = 1
    plain = compile_ar(TINY["fvbn"])
    assert plain.context_shape is None
    with pytest.raises(ValueError):
        plain.log_prob(torch.zeros(1, 4, dtype=torch.long), torch.tensor([0]))


def test_logistic_mixture_is_normalised_over_many_levels():
    from flowdsl.runtime.outputs import LogisticMixture

    dist = LogisticMixture(levels=256, components=5).double()
    params = torch.randn(7, 15, dtype=torch.float64) * 3
    assert (dist.log_probs(params).exp().sum(-1) - 1).abs().max() < 1e-9
    x = torch.randint(0, 256, (7,))
    assert torch.allclose(dist.log_prob(params, x), dist.log_probs(params).gather(-1, x[:, None])[:, 0])
