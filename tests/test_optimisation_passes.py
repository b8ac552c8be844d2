"""The optimisations (docs/optimisations.md) change no output: each optimised model equals the
unoptimised one (``optimize=False``) in float64 on forward, inverse and log-det, keeps its
state-dict keys, and the flag (``optimize=`` / ``FLOWDSL_NO_OPTIMIZE=1``) turns each one off."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.compiler import compile_model
from flowdsl.runtime.coupling import Coupling
from flowdsl.runtime.made import MaskedLinear
from flowdsl.runtime.optimize import discarding_logdets, logdets_discarded
from flowdsl.runtime.residual import Residual
from flowdsl.runtime.structural import InvConv1x1, Permute
from flowdsl.testing import perturb_parameters

ROOT = Path(__file__).resolve().parent.parent
PERMUTED_SPECS = ["benchmarks/specs/realnvp.flow", "specs/nice.flow", "specs/nsf.flow", "specs/iaf.flow"]


def _analysis(source: str | Path):
    if isinstance(source, Path):
        return flowdsl.analyze_file(source)
    return flowdsl.analyze_source(source)


def pair(source: str | Path, seed: int = 1, scale: float = 0.3):
    """(unoptimised, optimised) float64 models with the same (perturbed) parameters."""
    analysis = _analysis(source)
    assert analysis.ok, analysis.diagnostics
    plain = compile_model(analysis.model(None), analysis.unit, optimize=False).double()
    fast = compile_model(analysis.model(None), analysis.unit, optimize=True).double()
    perturb_parameters(plain, scale, seed=seed)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


@functools.cache
def spec_pair(name: str):
    return pair(ROOT / name)


def assert_same_flow(plain, fast, x, tol=1e-12):
    z0, ld0 = plain(x)
    z1, ld1 = fast(x)
    torch.testing.assert_close(z1, z0, rtol=tol, atol=tol)
    torch.testing.assert_close(ld1, ld0, rtol=tol, atol=tol)
    x0, ild0 = plain.inverse_and_logdet(z0)
    x1, ild1 = fast.inverse_and_logdet(z0)
    torch.testing.assert_close(x1, x0, rtol=tol, atol=tol)
    torch.testing.assert_close(ild1, ild0, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- permutations
@pytest.mark.parametrize("name", PERMUTED_SPECS)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 9))
def test_folded_permutations_change_no_output(name, seed, batch):
    plain, fast = spec_pair(name)
    x = torch.randn(batch, *plain.input_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_same_flow(plain, fast, x)


@pytest.mark.parametrize("name", PERMUTED_SPECS)
def test_folding_removes_permutation_gathers_and_keeps_keys(name):
    plain, fast = spec_pair(name)
    assert list(fast.state_dict()) == list(plain.state_dict())
    permutes = [(a, b) for a, b in zip(plain.layers, fast.layers) if isinstance(a, Permute)]
    assert permutes and not any(a.identity for a, _ in permutes)
    assert any(b.identity for _, b in permutes)  # every spec here has a permute before a foldable layer


def test_realnvp_swapped_halves_cost_no_gather():
    _, fast = spec_pair("benchmarks/specs/realnvp.flow")
    couplings = [m for m in fast.layers if isinstance(m, Coupling)]
    assert sum(m.folded is not None for m in couplings) == 5
    assert all(parts.gathers == 0 for m in couplings if m.folded is not None for parts in m.folded)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.permutations(range(5)), min_size=1, max_size=4), st.sampled_from(
    ["coupling affine(mask=[1, 0, 0, 1, 0])", "coupling additive(mask=half)", "autoregressive affine(net=made([6]))",
     "autoregressive affine(net=made([6]), direction=inverse)", "actnorm"]), st.integers(0, 1000))
def test_permutation_chains_fold_to_one_and_into_the_next_layer(perms, last, seed):
    lines = "".join(f" permute({list(p)})\n" for p in perms)
    plain, fast = pair(f"flow f {{\n input x: vector[5]\n{lines} {last}\n}}\n", seed=seed)
    gathers = sum(isinstance(m, Permute) and not m.identity for m in fast.layers)
    assert gathers <= (0 if last.startswith(("coupling", "autoregressive")) else 1)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_same_flow(plain, fast, x)


def test_flag_and_environment_turn_folding_off(monkeypatch):
    src = "flow f {\n input x: vector[4]\n permute(reverse)\n coupling affine(mask=half)\n}\n"
    monkeypatch.setenv("FLOWDSL_NO_OPTIMIZE", "1")
    off = flowdsl.compile_source(src)
    assert not off.layers[0].identity and off.layers[1].folded is None
    monkeypatch.delenv("FLOWDSL_NO_OPTIMIZE")
    on = flowdsl.compile_source(src)
    assert on.layers[0].identity and on.layers[1].folded is not None
    assert [n.logdet == "zero" for n in on.ir.layers] == [layer.logdet_zero for layer in on.layers]


# ----------------------------------------------------------------------------- eval-time weight reuse
@pytest.mark.parametrize("name", ["benchmarks/specs/glow.flow", "benchmarks/specs/maf.flow"])
def test_cached_weights_follow_parameter_updates(name):
    plain, fast = pair(ROOT / name, scale=0.02)
    cached = [m for m in fast.modules() if isinstance(m, (MaskedLinear, InvConv1x1))]
    assert cached and all(m.cache_weights for m in cached)
    assert not any(m.cache_weights for m in plain.modules() if isinstance(m, (MaskedLinear, InvConv1x1)))
    x = torch.randn(3, *plain.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (plain, fast)]
    for _ in range(3):
        with torch.no_grad():
            assert_same_flow(plain, fast, x)
        for model, optimizer in zip((plain, fast), optimizers):  # a training step changes the weights
            optimizer.zero_grad()
            (-model.log_prob(x).mean()).backward()
            optimizer.step()
    with torch.inference_mode():
        assert_same_flow(plain, fast, x)


def test_masked_weight_is_reused_only_while_unchanged():
    _, fast = spec_pair("specs/iaf.flow")
    layer = next(m for m in fast.modules() if isinstance(m, MaskedLinear))
    with torch.no_grad():
        first = layer.masked_weight()
        assert layer.masked_weight() is first
        layer.weight.add_(1.0)
        changed = layer.masked_weight()
    assert changed is not first
    torch.testing.assert_close(changed, layer.weight.detach() * layer.mask)
    assert layer.masked_weight().requires_grad  # with autograd on: computed, with its graph
    with torch.no_grad():
        layer.weight.sub_(1.0)


# ----------------------------------------------------------------------------- residual flows, log-dets
@settings(max_examples=3, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 40))
def test_roulette_on_reached_rows_equals_full_batch(seed, batch):
    plain, fast = spec_pair("benchmarks/specs/resflow.flow")
    assert all(m.subset_terms for m in fast.layers) and not any(m.subset_terms for m in plain.layers)
    for block in fast.layers:
        block.subset_min_rows = 0  # subsets of small batches too (by default only where they pay)
    x = torch.randn(batch, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    values, grads = [], []
    for model in (plain, fast):
        torch.manual_seed(seed)
        lp = model.log_prob(x)
        values.append(lp)
        grads.append(torch.autograd.grad(lp.sum(), [p for p in model.parameters()], allow_unused=True))
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-12)
    pairs = [(g1, g0) for g0, g1 in zip(*grads) if g0 is not None]
    assert pairs
    for g1, g0 in pairs:
        torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12)


def test_roulette_subset_path_runs(monkeypatch):
    _, fast = pair(ROOT / "benchmarks/specs/resflow.flow")  # its own models: log_prob moves power iterations
    for block in fast.layers:
        block.subset_min_rows = 0
    rows: list[int] = []
    original = Residual._regraph

    def spy(self, x, context):
        regraph = original(self, x, context)
        return lambda r: (rows.append(len(r)), regraph(r))[1]

    monkeypatch.setattr(Residual, "_regraph", spy)
    torch.manual_seed(0)
    fast.log_prob(torch.zeros(64, 16, dtype=torch.float64))
    assert rows and max(rows) <= 32


def test_sampling_discards_log_dets_only_when_asked():
    plain, fast = pair(ROOT / "benchmarks/specs/resflow.flow")
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        x0 = plain.inverse(z)
        with discarding_logdets():
            assert logdets_discarded()
            x1, ld = fast.inverse_and_logdet(z)
        with discarding_logdets(optimize=False):
            assert not logdets_discarded()
            _, ld_kept = fast.inverse_and_logdet(z)
    torch.testing.assert_close(x1, x0, rtol=1e-12, atol=1e-12)
    assert torch.equal(ld, torch.zeros(5, dtype=torch.float64)) and bool((ld_kept != 0).all())


def test_flag_reaches_autoregressive_models():
    analysis = flowdsl.analyze_file(ROOT / "specs" / "made.ar")
    for optimize in (False, True):
        model = compile_model(analysis.model(None), analysis.unit, optimize=optimize)
        switches = {m.cache_weights for m in model.modules() if isinstance(m, MaskedLinear)}
        assert switches == {optimize}


def test_the_api_flag_and_the_flow_use_the_irs_zero_logdets():
    """``compile_file(optimize=False)`` builds the plain flow; the optimised one skips the zero log-dets
    the IR proves and samples with log-dets discarded, with the same results."""
    path = str(Path(__file__).resolve().parents[1] / "specs" / "glow.flow")
    torch.manual_seed(0)
    plain = flowdsl.compile_file(path, optimize=False).double()
    fast = flowdsl.compile_file(path).double()
    fast.load_state_dict(plain.state_dict())
    assert not plain.optimized and fast.optimized
    assert any(getattr(layer, "logdet_zero", False) for layer in fast.layers)
    x = torch.rand(3, *plain.input_shape, dtype=torch.float64) * plain.levels
    plain.eval(), fast.eval()
    (z0, ld0), (z1, ld1) = plain(x), fast(x)
    torch.testing.assert_close(z1, z0)
    torch.testing.assert_close(ld1, ld0)
    torch.testing.assert_close(fast.inverse(z0), plain.inverse(z0))
    with pytest.raises(flowdsl.InputTypeError):
        flowdsl.compile_file(path, optimize="no")


# ----------------------------------------------------------------------------- actnorm + invconv1x1 fusion
FUSED_SPECS = ["benchmarks/specs/glow.flow", "specs/glow.flow"]
VECTOR_GLOW = ("flow v {\n input x: vector[5]\n repeat 3 {\n  actnorm\n  invconv1x1\n  coupling affine(mask=half)\n"
               " }\n}\n")


def _fused_pairs(model):
    return [m for m in model.modules() if isinstance(m, InvConv1x1) and m.fused_actnorm is not None]


@pytest.mark.parametrize("name", [*FUSED_SPECS, "vector"])
def test_fused_actnorm_invconv_equals_the_pair_in_evaluation(name):
    plain, fast = pair(VECTOR_GLOW, scale=0.05) if name == "vector" else pair(ROOT / name, scale=0.02)
    fused = _fused_pairs(fast)
    assert fused and not _fused_pairs(plain)
    assert all(m.fused_actnorm.fused_into_next for m in fused)
    assert set(fast.state_dict()) == set(plain.state_dict())  # modules stay where they are
    x = torch.randn(3, *plain.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain.eval()
    fast.eval()
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (plain, fast)]
    for _ in range(2):
        with torch.no_grad():
            assert_same_flow(plain, fast, x, tol=1e-10)
            torch.manual_seed(3)
            s0 = plain.sample(2)
            torch.manual_seed(3)
            s1 = fast.sample(2)
            torch.testing.assert_close(s1, s0, rtol=1e-9, atol=1e-9)
        for model, optimizer in zip((plain, fast), optimizers):  # the cached fused weights must follow a step
            optimizer.zero_grad()
            z, logdet = model(x)
            (0.5 * z.pow(2).flatten(1).sum(1) - logdet).mean().backward()
            optimizer.step()


def test_fusion_is_off_in_training_and_with_the_flag():
    plain, fast = pair(VECTOR_GLOW, scale=0.05)
    fused = _fused_pairs(fast)[0]
    actnorm = fused.fused_actnorm
    x = torch.randn(4, 5, dtype=torch.float64)
    # autograd on (training steps): the actnorm applies its own map, so gradients flow as written
    y, _ = actnorm(x)
    assert not torch.equal(y, x)
    torch.manual_seed(0)
    fresh = flowdsl.compile_source(VECTOR_GLOW).double()
    torch.manual_seed(0)
    reference = flowdsl.compile_source(VECTOR_GLOW, optimize=False).double()
    with torch.no_grad():  # training-mode actnorms initialise from their first batch, fused or not
        torch.testing.assert_close(fresh(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)
    assert all(bool(m.fused_actnorm.initialized) for m in _fused_pairs(fresh))
    actnorm.eval()
    with torch.no_grad():
        y, _ = actnorm(x)
    assert torch.equal(y, x)  # fused: the invconv1x1 after it applies the map
    with torch.enable_grad():
        assert not torch.equal(actnorm(x)[0], x)
    off = flowdsl.compile_source(VECTOR_GLOW, optimize=False)
    assert not _fused_pairs(off)
