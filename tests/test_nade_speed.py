"""NADE's fast density pass (blocks of positions, a recomputing backward) is the NADE formula exactly.

Speed is measured by benchmarks/nade_speed.py (ratios against MADE, never timed here); these tests
pin what the fast path computes: the outputs and every gradient of the plain cumulative-sum
formula (``NADE.reference_forward``), for any block size, in training and in evaluation."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl.runtime.ar_basic as ar_basic
from flowdsl.runtime.ar_basic import NADE


def grads(out, model, x):
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return torch.autograd.grad((out * weights).sum(), [x, *model.parameters()])


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 23), f=st.integers(1, 3), h=st.integers(1, 6), p=st.integers(1, 3),
       batch=st.integers(1, 5), block=st.integers(1, 9))
def test_blocked_pass_equals_the_cumulative_sum_formula(d, f, h, p, batch, block):
    torch.manual_seed(d * 7 + block)
    model = NADE(d, f, h, p).double()
    with torch.no_grad():
        model.c.normal_()
        model.b.normal_()
    x = torch.randn(batch, f, d, dtype=torch.double, requires_grad=True)
    original = ar_basic._nade_blocks
    ar_basic._nade_blocks = lambda n, b, hid: [(lo, min(lo + block, n)) for lo in range(0, n, block)]
    try:
        fast = model(x)
        fast_grads = grads(fast, model, x)
        with torch.no_grad():
            evaluated = model(x)
    finally:
        ar_basic._nade_blocks = original
    slow = model.reference_forward(x)
    assert fast.shape == (batch, p, d)
    assert torch.allclose(fast, slow, atol=1e-12) and torch.allclose(evaluated, slow, atol=1e-12)
    for a, b in zip(fast_grads, grads(slow, model, x)):
        assert torch.allclose(a, b, atol=1e-10)


def test_gradcheck_and_large_evaluation_batches():
    torch.manual_seed(0)
    model = NADE(9, 2, 4, 1).double()
    x = torch.randn(3, 2, 9, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x), (x,))
    big = torch.randn(300, 2, 9, dtype=torch.double)  # evaluated 128 at a time
    with torch.no_grad():
        assert torch.allclose(model(big), model.reference_forward(big), atol=1e-12)
