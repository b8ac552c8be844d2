"""Attention (Transformer, Sparse Transformer): index sets, exact dependency rules, density, reachability.

- the masks equal the paper's index sets (written out here independently) on small n;
- the banded/strided dependency rules the checker propagates equal the dense mask product;
- the density note and the reachability warning agree with brute force;
- the acceptance specs compile, evaluate and sample a few steps; tiny models are causal,
  complete and normalised; FlexAttention and masked SDPA agree.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import spec_path
from hypothesis import given
from hypothesis import strategies as st

import flowdsl
from flowdsl.layers.ar_attention import DensePattern, FixedPattern, StridedPattern, head_masks
from flowdsl.layers.dependency_sets import connect, layout_of, unpack
from flowdsl.runtime.ar_cache import step_conditionals
from flowdsl.testing import check_autoregressive, perturb_parameters


def paper_strided(n: int, l: int):
    """Child et al. (2019), sec. 4.2: A1 = {t, ..., i} with t = max(0, i - l); A2 = {j : (i - j) mod l = 0}."""
    a1 = [[max(0, i - l) <= j <= i for j in range(n)] for i in range(n)]
    a2 = [[(i - j) % l == 0 and j <= i for j in range(n)] for i in range(n)]
    return np.array(a1), np.array(a2)


def paper_fixed(n: int, l: int, c: int):
    """A1 = {j : floor(j/l) = floor(i/l)}, A2 = {j : j mod l in {t, ..., l}} with t = l - c; both with j <= i."""
    a1 = [[j // l == i // l and j <= i for j in range(n)] for i in range(n)]
    a2 = [[j % l in range(l - c, l + 1) and j <= i for j in range(n)] for i in range(n)]
    return np.array(a1), np.array(a2)


spec = spec_path  # shared helper in conftest


def source(body: str) -> str:
    return "autoregressive m {\n " + body + "\n}\n"


# ----------------------------------------------------------------------------- index sets
@pytest.mark.parametrize("n,l", [(1, 1), (7, 2), (12, 3), (16, 4), (10, 16)])
def test_strided_sets_are_the_papers(n, l):
    ours = StridedPattern(stride=l).index_sets(n)
    for a, b in zip(ours, paper_strided(n, l)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("n,l,c", [(1, 1, 1), (9, 3, 1), (12, 4, 2), (16, 4, 4), (10, 16, 3)])
def test_fixed_sets_are_the_papers(n, l, c):
    ours = FixedPattern(block=l, summary=c).index_sets(n)
    for a, b in zip(ours, paper_fixed(n, l, c)):
        assert np.array_equal(a, b)


def test_heads_split_the_sets_or_share_their_union():
    n = 9
    a1, a2 = paper_strided(n, 3)
    masks = head_masks(StridedPattern(stride=3), 4, n)
    assert [np.array_equal(m, a) for m, a in zip(masks, [a1, a2, a1, a2])] == [True] * 4
    (only,) = head_masks(StridedPattern(stride=3), 1, n)
    assert np.array_equal(only, a1 | a2)
    dense = head_masks(DensePattern(), 3, n)
    assert all(np.array_equal(m, np.tri(n, dtype=bool)) for m in dense)


@given(n=st.integers(1, 40), size=st.integers(1, 12), summary=st.integers(1, 12), seed=st.integers(0, 99))
def test_exact_rules_equal_the_mask_product(n, size, summary, seed):
    lay = layout_of("sequence", (n,))
    rng = np.random.RandomState(seed)
    bits = rng.rand(1, n, n) < 0.2
    a = np.packbits(bits, axis=-1, bitorder="little")
    assert np.array_equal(unpack(a, n), bits)
    for pattern in (DensePattern(), StridedPattern(stride=size), FixedPattern(block=size, summary=min(summary, size))):
        for rule, mask in zip(pattern.propagate(a), pattern.index_sets(n)):
            assert np.array_equal(unpack(rule, n), unpack(connect(a, mask), n)), pattern.describe()
    assert lay.n == n


# ----------------------------------------------------------------------------- checker notes
def diags(body: str):
    return flowdsl.analyze_source(source(body), "t.ar").diagnostics


def brute_reach(masks: list[np.ndarray], n: int) -> np.ndarray:
    """Which input positions each conditional reads: embed's shift, then each layer's union mask (+ residual)."""
    reach = np.eye(n, k=-1, dtype=bool)
    for m in masks:
        reach = ((m | np.eye(n, dtype=bool)).astype(int) @ reach.astype(int)) > 0
    return reach


@pytest.mark.parametrize("pattern,n", [("strided(stride=4)", 32), ("fixed(block=4, summary=1)", 24), ("dense", 9)])
def test_density_note_counts_attended_pairs(pattern, n):
    d = [x for x in diags(f"input x: sequence[{n}] levels 2\n embed(dim=4)\n"
                          f" attention(heads=2, dim=4, pattern={pattern})") if "attends" in x.message]
    patterns = {"strided(stride=4)": StridedPattern(stride=4), "dense": DensePattern(),
                "fixed(block=4, summary=1)": FixedPattern(block=4, summary=1)}
    sets = patterns[pattern].index_sets(n)
    attended = int(np.logical_or.reduce(sets).sum())
    assert len(d) == 1 and f"attends {attended:,} of {n * (n + 1) // 2:,} causal pairs" in d[0].message
    assert d[0].severity == "note" and "is causal" in d[0].message


def test_one_strided_layer_does_not_reach_everything():
    n = 32
    found = [d for d in diags(f"input x: sequence[{n}] levels 2\n embed(dim=4)\n"
                              f" attention(heads=2, dim=4, pattern=strided(stride=4))") if d.severity == "warning"]
    a1, a2 = paper_strided(n, 4)
    reach = brute_reach([a1 | a2], n)
    pct = 100.0 * reach.sum() / (n * (n - 1) // 2)
    assert len(found) == 1
    assert found[0].message.startswith(f"reachability: within 1 attention layer, {pct:.1f}% of the (earlier, later) "
                                       f"position pairs are connected (e.g. position ")
    assert found[0].hint == "stack more attention layers, or use a denser pattern"


@pytest.mark.parametrize("pattern", ["strided(stride=4)", "fixed(block=4, summary=1)"])
def test_two_sparse_layers_reach_every_earlier_position(pattern):
    body = (f"input x: sequence[32] levels 2\n embed(dim=4)\n"
            f" repeat 2 {{ attention(heads=2, dim=4, pattern={pattern})\n mlp(hidden=8) }}")
    assert [d for d in diags(body) if d.severity != "note"] == []


def test_reachability_is_fast_at_length_4096():
    import time

    start = time.perf_counter()
    d = diags("input x: sequence[4096] levels 2\n embed(dim=4)\n"
              " repeat 2 { attention(heads=2, dim=4, pattern=strided(stride=64)) }")
    assert time.perf_counter() - start < 30
    assert not [x for x in d if x.severity != "note"]


def test_attention_errors():
    def errs(body):
        return [(d.pos.line, d.pos.column, d.message) for d in diags(body) if d.severity == "error"]

    assert errs("input x: sequence[8] levels 2\n embed(dim=6)\n attention(heads=4, dim=6)") == [
        (4, 12, "attention splits dim=6 features over 4 heads: dim must be divisible by heads")]
    assert errs("input x: sequence[8] levels 2\n embed(dim=6)\n attention(heads=2, dim=8)")[0][2] == (
        "attention's residual connection needs 8 input features, but it gets 6")
    assert errs("input x: sequence[8] levels 2\n embed(dim=4)\n attention(heads=2, dim=4, "
                "pattern=fixed(block=2, summary=3))")[0][2].startswith("pattern fixed(block=2, summary=3): a block")
    assert errs("input x: sequence[8] levels 2\n attention(heads=1, dim=2)")[0][2].startswith(
        "attention breaks causality: the prediction of position 0 reads itself")
    assert errs("input x: image[1, 4, 4] levels 2\n attention(heads=1, dim=2)")[0][2].startswith(
        "attention attends over sequences, but this model's input is an image")


# ----------------------------------------------------------------------------- runtime
@pytest.mark.parametrize("model", ["sparse_strided", "sparse_fixed"])
def test_acceptance_models_compile_evaluate_and_sample_a_few_steps(model):
    m = flowdsl.compile_file(spec("sparse_transformer.ar"), model=model).eval()
    assert m.ir.params == sum(p.numel() for p in m.parameters())
    x = torch.randint(0, 256, (2, 256))
    with torch.no_grad():
        lp, cond = m.log_prob(x), m.conditionals(x)
    assert torch.isfinite(lp).all() and (lp < 0).all()
    assert (step_conditionals(m, x, steps=12)[:, :12] - cond[:, :12]).abs().max() < 1e-4
    from flowdsl.runtime.ar_cache import fill

    torch.manual_seed(0)
    s = fill(m, torch.zeros(1, 256, dtype=torch.long), torch.zeros(1, 256, dtype=torch.bool), None, steps=8)
    assert s.shape == (1, 256) and 0 <= s.min() and s.max() < 256 and (s[:, 8:] == 0).all()


@pytest.mark.parametrize("pattern", ["dense", "strided(stride=2)", "fixed(block=2, summary=1)"])
def test_tiny_attention_models_are_causal_complete_and_normalised(pattern, float64):
    body = (f"input x: sequence[5] levels 2\n embed(dim=4)\n attention(heads=2, dim=4, pattern={pattern})\n"
            f" mlp(hidden=6)\n attention(heads=2, dim=4, pattern={pattern})\n output bernoulli")
    m = flowdsl.compile_source(source(body), filename="m.ar").eval()
    perturb_parameters(m, scale=0.5, seed=3)
    report = check_autoregressive(m, examples=8, seed=0)
    assert report["causality"] == 0.0 and report["completeness"] == 0
    assert report["normalisation"] < 1e-9


def test_flex_attention_agrees_with_masked_sdpa(float64):
    body = ("input x: sequence[10] levels 3\n embed(dim=4)\n"
            " attention(heads=2, dim=4, pattern=fixed(block=4, summary=1))\n"
            " attention(heads=2, dim=4, pattern=strided(stride=3))")
    m = flowdsl.compile_source(source(body), filename="m.ar").eval()
    perturb_parameters(m, scale=0.3, seed=0)
    x = torch.randint(0, 3, (2, 10))
    with torch.no_grad():
        ref = m.conditionals(x)
        for layer in m.layers[1:]:
            layer.use_flex = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flex = m.conditionals(x)
    assert (flex - ref).abs().max() < 1e-10
    assert torch.isfinite(ref).all()  # queries with no key (fixed summaries) give zero, not NaN
