"""Every flow layer of the foundation, proved by properties on random specs and parameters.

For random shapes, masks, nets and parameters: inverse(forward(x)) == x, log-det equals the
autograd Jacobian's log|det|, the Jacobian is zero wherever the declared dependency says so,
inferred shapes equal runtime shapes, and declared parameter counts equal allocated ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.testing import check_bijection, check_sparsity, perturb_parameters

VECTOR_LAYERS = [
    "coupling additive(mask=half, net=mlp([8]))",
    "coupling affine(mask=half, net=mlp([8, 8], activation=tanh))",
    "coupling affine(mask=half, net=resnet(blocks=1, hidden=8))",
    "actnorm", "batchnorm", "permute(reverse)", "permute(random(seed=3))", "invconv1x1", "split",
]
IMAGE_LAYERS = [
    "coupling affine(mask=checkerboard(0), net=resnet(blocks=1, hidden=4))",
    "coupling additive(mask=checkerboard(1), net=conv_net(hidden=4))",
    "coupling affine(mask=channel(0), net=conv_net(hidden=4))",
    "coupling affine(mask=channel(1), net=mlp([6]))",
    "actnorm", "batchnorm", "invconv1x1", "permute(reverse)", "squeeze(2)", "split",
]


def _spec(shape, layers, condition: int = 0) -> str:
    kind = "vector" if len(shape) == 1 else "image"
    lines = [f"  input x: {kind}[{', '.join(map(str, shape))}]"]
    if condition:
        lines.append(f"  condition y: label[{condition}]")
    lines += [f"  {layer}" for layer in layers]
    return "flow f {\n" + "\n".join(lines) + "\n}\n"


def _valid(layer: str, shape) -> bool:
    a = flowdsl.analyze_source(_spec(shape, [layer]), "t.flow")
    return a.ok


@st.composite
def flows(draw):
    """A valid chain of 1-4 layers on a small vector or image, and its spec text."""
    if draw(st.booleans()):
        shape = (draw(st.integers(2, 6)),)
        pool = VECTOR_LAYERS
    else:
        shape = (draw(st.integers(1, 3)), draw(st.sampled_from([2, 4])), draw(st.sampled_from([2, 4])))
        pool = IMAGE_LAYERS
    layers, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        options = [lay for lay in pool if _valid(lay, cur)]
        if not options:
            break
        layer = draw(st.sampled_from(options))
        layers.append(layer)
        ir = flowdsl.analyze_source(_spec(cur, [layer]), "t.flow").model()
        cur = ir.layers[0].out_shape
        if len(cur) == 3 and pool is VECTOR_LAYERS:
            break
    condition = draw(st.sampled_from([0, 0, 3]))
    return shape, layers, condition


def _build(shape, layers, condition, seed):
    flow = flowdsl.compile_source(_spec(shape, layers, condition), filename="t.flow")
    perturb_parameters(flow, scale=0.2, seed=seed)
    flow.eval()
    return flow


@given(flows(), st.integers(0, 2**16))
@settings(max_examples=40)
def test_round_trip_and_logdet(float64, case, seed):
    shape, layers, condition = case
    if not layers:
        return
    flow = _build(shape, layers, condition, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((3, *shape), generator=gen)
    ctx = torch.randint(0, condition, (3,), generator=gen) if condition else None
    report = check_bijection(flow, x, ctx, roundtrip_tol=1e-8, logdet_tol=1e-6)
    assert report["roundtrip"] <= 1e-8


@given(flows(), st.integers(0, 2**16))
@settings(max_examples=40)
def test_jacobian_sparsity_matches_declared_dependency(float64, case, seed):
    shape, layers, condition = case
    flow = _build(shape, layers, condition, seed)
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed))
    h = x
    for module, node in zip(flow.layers, flow.ir.layers):
        if node.key == "split":
            h = module.split(h)[0]
            continue
        dep = node.dependency
        ctx = torch.nn.functional.one_hot(torch.zeros(2, dtype=torch.long), condition).double() if condition else None
        if ctx is None:
            check_sparsity(lambda v, m=module: m(v)[0], h, dep.matrix())
        else:
            check_sparsity(lambda v, c, m=module: m(v, c)[0], h, dep.matrix(), context=ctx)
        h = module(h, ctx)[0]


@given(flows())
@settings(max_examples=40)
def test_inferred_shapes_and_params_match_runtime(case):
    shape, layers, condition = case
    flow = flowdsl.compile_source(_spec(shape, layers, condition), filename="t.flow")
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params
    x = torch.randn(2, *shape)
    ctx = torch.zeros(2, dtype=torch.long) if condition else None
    ctx_1h = torch.nn.functional.one_hot(ctx, condition).float() if condition else None
    for module, node in zip(flow.layers, flow.ir.layers):
        x = module.split(x)[0] if node.key == "split" else module(x, ctx_1h)[0]
        assert tuple(x.shape[1:]) == node.out_shape
    z, _ = flow(torch.randn(2, *shape), ctx)
    assert z.shape == (2, *shape)


def test_fresh_couplings_are_the_identity():
    flow = flowdsl.compile_source(_spec((4,), ["coupling affine(mask=half)", "coupling additive(mask=half)"]))
    x = torch.randn(5, 4)
    z, ld = flow(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(5))


def test_actnorm_initialises_from_the_first_batch():
    flow = flowdsl.compile_source(_spec((3, 2, 2), ["actnorm"]))
    x = 5 + 3 * torch.randn(64, 3, 2, 2)
    z, _ = flow(x)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (z.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    z2, _ = flow(x + 100)  # the second batch does not re-initialise
    assert z2.mean() > 10


def test_explicit_list_mask_and_logit(float64):
    spec = ("flow f {\n input x: vector[4] levels 5\n logit(alpha=0.1)\n"
            " coupling affine(mask=[1, 0, 0, 1], net=mlp([8]))\n}\n")
    flow = perturb_parameters(flowdsl.compile_source(spec), 0.3)
    x = torch.rand(4, 4) * 5
    check_bijection(flow, x)
    dep = flow.ir.layers[1].dependency
    assert dep.transformed.tolist() == [False, True, True, False]


def test_squeeze_matches_its_declared_permutation(float64):
    flow = flowdsl.compile_source(_spec((2, 4, 6), ["squeeze(2)"]))
    x = torch.arange(48.0).reshape(1, 2, 4, 6)
    y, _ = flow.layers[0](x)
    source = flow.ir.layers[0].dependency.source
    assert np.array_equal(y.reshape(-1).numpy(), source.astype(float))


def test_invconv_logdet_is_never_zero_determinant(float64):
    flow = flowdsl.compile_source(_spec((4, 2, 2), ["invconv1x1"]))
    w = flow.layers[0].weight()
    assert abs(torch.linalg.det(w).item()) > 0
    assert torch.allclose(torch.linalg.slogdet(w)[1], flow.layers[0].log_s.sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_modules_follow_dtype(dtype):
    flow = flowdsl.compile_source(_spec((2, 4, 4), ["squeeze(2)", "actnorm", "invconv1x1",
                                                     "coupling affine(mask=channel(0), net=conv_net(hidden=4))"]))
    flow.to(dtype).eval()
    x = torch.randn(3, 2, 4, 4, dtype=dtype)
    z, ld = flow(x)
    assert z.dtype == dtype and ld.dtype == dtype
    assert torch.allclose(flow.inverse(z), x, atol=1e-4 if dtype == torch.float32 else 1e-10)


def test_conditional_flow_uses_labels(float64):
    flow = perturb_parameters(flowdsl.compile_source(_spec((4,), ["coupling affine(mask=half)"], condition=3)), 0.5)
    x = torch.randn(2, 4)
    a = flow.log_prob(x, torch.tensor([0, 0]))
    b = flow.log_prob(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match="labels"):
        flow.log_prob(x, torch.tensor([0, 7]))
    assert flow.context_shape == ()
