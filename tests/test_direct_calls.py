"""The ``direct_calls`` runtime switch: MLP conditioners (FeatureNet) and MADEs run their layers as direct
``F.linear`` and activation calls, and autoregressive flows read their transformer's parameters as slices of
the MADE's output. The values and gradients equal the module-by-module path in float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_optimisation_passes import assert_same_flow, pair

import flowdsl
from flowdsl.runtime.compiler import compile_model
from flowdsl.runtime.made import MADE
from flowdsl.runtime.nets import FeatureNet
from flowdsl.testing import perturb_parameters

ROOT = Path(__file__).resolve().parent.parent
AR_FLOWS = ["benchmarks/specs/maf.flow", "specs/iaf.flow", "benchmarks/specs/nsf_ar.flow",
            "benchmarks/specs/realnvp.flow", "specs/nice.flow"]


def _switches(model) -> set[bool]:
    return {m.direct_calls for m in model.modules() if isinstance(m, (MADE, FeatureNet))}


@pytest.mark.parametrize("name", AR_FLOWS)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 7))
def test_direct_calls_change_no_value_nor_gradient(name, seed, batch):
    plain, fast = pair(ROOT / name, seed=seed % 997)
    assert _switches(plain) == {False} and _switches(fast) == {True}
    x = torch.randn(batch, *plain.input_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_same_flow(plain, fast, x)
    grads = []
    for model in (plain, fast):
        model.zero_grad()
        model.log_prob(x).sum().backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-10, atol=1e-12)


def test_direct_calls_in_an_autoregressive_model():
    analysis = flowdsl.analyze_file(ROOT / "specs" / "made.ar")
    plain, fast = (compile_model(analysis.model(None), analysis.unit, optimize=o).double() for o in (False, True))
    perturb_parameters(plain, 0.3, seed=3)
    fast.load_state_dict(plain.state_dict())
    assert _switches(plain) == {False} and _switches(fast) == {True}
    x = torch.randint(0, plain.levels, (6, *plain.input_shape), generator=torch.Generator().manual_seed(0))
    lp0, lp1 = plain.log_prob(x), fast.log_prob(x)
    torch.testing.assert_close(lp1, lp0, rtol=1e-12, atol=1e-12)
    lp0.sum().backward()
    lp1.sum().backward()
    for (k, p0), (_, p1) in zip(plain.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(p1.grad, p0.grad, rtol=1e-10, atol=1e-12, msg=k)


def test_hooks_on_inner_layers_run_with_the_switch_off():
    """What the switch trades away (documented): inner modules' hooks run only with direct calls off."""
    flow = flowdsl.compile_file(ROOT / "benchmarks" / "specs" / "maf.flow")
    made = flow.layers[0].made
    seen = []
    made.layers[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    flow.log_prob(torch.randn(3, 16))
    assert seen == []
    made.direct_calls = False
    flow.log_prob(torch.randn(3, 16))
    assert seen == [torch.Size([3, 64])]
