"""The conditional models' public API (issue 13): what a caller passes as ``context``, how it is checked,
broadcast and encoded once per call, and that every layer receives what it reads (or nothing).

The families' properties (round trips, log-dets in x, causality, normalisation per context) are proved in
tests/test_conditional_flows.py and tests/test_conditional_ar_*.py; this file covers the plumbing between.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.runtime.conditions import context_for
from flowdsl.testing.inputs import contexts

CONDITIONS = {
    "label": ("label[3]", ()),
    "vector": ("vector[4]", (4,)),
    "vector levels": ("vector[4] levels 3", (4,)),
    "image": ("image[2, 3, 3]", (2, 3, 3)),
    "image levels": ("image[1, 3, 3] levels 4", (1, 3, 3)),
    "sequence": ("sequence[5]", (5,)),
    "sequence channels": ("sequence[5, 2]", (5, 2)),
    "sequence levels": ("sequence[5] levels 3", (5,)),
    "vector embed": ("vector[6] embed mlp([8], out=3)", (6,)),
    "image embed": ("image[1, 4, 4] embed resnet(1, 4, out=2)", (1, 4, 4)),
    "label embed": ("label[5] embed mlp([], out=2)", ()),
}


def _flow(decl: str):
    """A float64 flow on vector[3] with a MAF layer, a coupling (both read the condition) and an actnorm."""
    src = (f"flow f {{\n input x: vector[3]\n condition c: {decl}\n autoregressive affine(net=made([16]))\n"
           f" coupling affine(mask=half)\n actnorm\n}}\n")
    flow = flowdsl.compile_source(src).double()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.2)
    return flow


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_context_shape_and_every_reader_gets_the_encoded_condition(name):
    decl, shape = CONDITIONS[name]
    flow = _flow(decl)
    assert flow.context_shape == shape
    readers = [layer for layer in flow.layers if getattr(layer, "reads_context", False)]
    assert len(readers) == 2  # the MAF layer and the coupling; actnorm stays unconditional
    assert not flow.layers[-1].reads_context
    encoded = flow.ir.header.condition.encoded
    enc = torch.zeros(2, *encoded.shape, dtype=torch.float64)
    assert context_for(flow.layers[-1], enc) is None
    assert context_for(readers[0], enc).shape == (2, encoded.features)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_log_prob_depends_on_the_context_and_one_context_broadcasts(name, data):
    decl, shape = CONDITIONS[name]
    flow = _flow(decl)
    x = torch.randn(3, 3, dtype=torch.float64)
    c = data.draw(contexts(flow, batch=3))
    lp = flow.log_prob(x, c)
    assert lp.shape == (3,) and torch.isfinite(lp).all()
    # one unbatched context is the same as that context repeated for every row
    one = c[0]
    torch.testing.assert_close(flow.log_prob(x, one), flow.log_prob(x, one.expand(3, *one.shape)))
    # the inverse of the forward at the same context is the identity
    z, _ = flow(x, c)
    torch.testing.assert_close(flow.inverse(z, c), x)


@pytest.mark.parametrize("name", ["vector", "image", "sequence channels", "vector embed", "image embed"])
def test_changing_the_context_changes_the_density_in_every_dimension(name):
    decl, shape = CONDITIONS[name]
    flow = _flow(decl)
    x = torch.randn(4, 3, dtype=torch.float64)
    z1, _ = flow(x, torch.randn(4, *shape, dtype=torch.float64))
    z2, _ = flow(x, torch.randn(4, *shape, dtype=torch.float64))
    assert ((z1 - z2).abs() > 1e-9).all(dim=0).all()  # dimension 0 of the MAF layer reads it too


def test_sample_one_row_per_context_or_one_context_for_all():
    flow = _flow("vector[4]")
    c = torch.randn(5, 4, dtype=torch.float64)
    assert flow.sample(5, c).shape == (5, 3)
    assert flow.sample(7, c[0]).shape == (7, 3)
    torch.manual_seed(1)
    a = flow.sample(3, c[0])
    torch.manual_seed(1)
    b = flow.sample(3, c[0].expand(3, 4))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("context, message", [
    (None, "is conditional on c"),
    (torch.zeros(2, 5), "must be a float tensor [B, 4]"),
    (torch.zeros(3, 4), "with B = 2"),
    (torch.full((2, 4), float("nan")), "the context for c has 8 non-finite"),
    (torch.full((4,), float("inf")), "the context for c has 4 non-finite"),
])
def test_a_wrong_context_is_one_clear_input_error(context, message):
    flow = _flow("vector[4]")
    with pytest.raises(flowdsl.InputError) as err:
        flow.log_prob(torch.zeros(2, 3, dtype=torch.float64), context)
    assert message in str(err.value)


@pytest.mark.parametrize("decl, context, message", [
    ("label[3]", torch.tensor([0, 3]), "whole numbers in 0..2"),
    ("label[3]", torch.tensor([0.0, 1.0]), "whole numbers in 0..2"),
    ("vector[4] levels 3", torch.full((2, 4), 3), "whole numbers in 0..2"),
    ("vector[4] levels 3", torch.full((2, 4), -1), "whole numbers in 0..2"),
])
def test_integer_contexts_are_checked(decl, context, message):
    flow = _flow(decl)
    with pytest.raises(flowdsl.InputError, match=message):
        flow.log_prob(torch.zeros(2, 3, dtype=torch.float64), context)


def test_an_unconditional_model_refuses_a_context():
    flow = flowdsl.compile_source("flow f {\n input x: vector[2]\n coupling affine(mask=half)\n}\n")
    assert flow.context_shape is None and flow.condition is None
    with pytest.raises(flowdsl.InputError, match="declares no condition"):
        flow.log_prob(torch.zeros(1, 2), torch.zeros(1, 3))


def test_reads_false_layers_get_no_context_and_the_embed_net_trains():
    src = ("flow f {\n input x: vector[2]\n condition c: vector[3] embed mlp([8], out=4)\n"
           " coupling affine(mask=half, reads=false)\n coupling affine(mask=half)\n}\n")
    flow = flowdsl.compile_source(src)
    first, second = flow.layers
    assert not first.reads_context and second.reads_context
    assert flow.ir.layers[0].reads is False and flow.ir.layers[1].reads_condition
    embed_params = sum(p.numel() for p in flow.condition.parameters())
    assert embed_params == flow.ir.header.condition.embed_params == 3 * 8 + 8 + 8 * 4 + 4
    assert sum(p.numel() for p in flow.parameters()) == flow.ir.params
    # the embed net is trained with the model: one step moves its weights
    x, c = torch.randn(32, 2), torch.randn(32, 3)
    before = [p.detach().clone() for p in flow.condition.parameters()]
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        (-flow.log_prob(x, c).mean()).backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, flow.condition.parameters()))


def test_an_autoregressive_model_broadcasts_one_context_when_sampling():
    src = ("autoregressive m {\n input x: vector[4] levels 2\n condition c: vector[3]\n made([16])\n"
           " output bernoulli\n}\n")
    model = flowdsl.compile_source(src, filename="m.ar")
    assert model.context_shape == (3,)
    c = torch.randn(3)
    assert model.sample(6, c).shape == (6, 4)
    x = torch.randint(0, 2, (6, 4))
    torch.testing.assert_close(model.log_prob(x, c), model.log_prob(x, c.expand(6, 3)))


@pytest.mark.parametrize("spec, condition", [("wavenet_local.ar", (1, 8)), ("gated_pixelcnn_image.ar", (1, 1, 1)),
                                             ("bytenet.ar", (8,))])
def test_tiny_configurations_scale_a_condition_aligned_with_the_input(spec, condition):
    """flowdsl test's tiny models shrink a local-conditioning sequence or an image map with the input (to sizes
    that divide the new grid), so completeness and normalisation run on them instead of being skipped."""
    from pathlib import Path

    from flowdsl.testing.autoregressive import MAX_CONFIGURATIONS
    from flowdsl.testing.tiny import shrink_source

    path = Path(__file__).resolve().parents[1] / "specs" / "conditional" / spec
    text = path.read_text()
    name = flowdsl.model_names(str(path))[0]
    tiny = shrink_source(text, str(path), name, max_size=64, max_configurations=MAX_CONFIGURATIONS)
    assert tiny is not None and tiny.condition == condition
    model = flowdsl.compile_source(tiny.text, filename=str(path))
    assert model.context_shape == condition


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_an_empty_batch_with_a_context_gives_an_empty_result(name):
    decl, shape = CONDITIONS[name]
    flow = _flow(decl)
    integer = flow.condition.integer
    empty = torch.zeros(0, *shape, dtype=torch.long if integer else torch.float64)
    assert flow.log_prob(torch.zeros(0, 3, dtype=torch.float64), empty).shape == (0,)
    assert flow.sample(0, empty).shape == (0, 3)


@pytest.mark.parametrize("net", ["mlp([8], out=3)", "lipschitz_mlp([8], out=3)", "resnet(1, 8, out=3)"])
def test_an_embed_net_reads_the_context_from_the_start(net):
    """Nets start their last layer at zero (a coupling starts as the identity); an encoder is re-initialised, or
    its output would not depend on the context and only its last layer would get a gradient."""
    flow = _flow(f"vector[6] embed {net}")
    c1, c2 = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    assert not torch.allclose(flow.condition(c1, 2, torch.float64), flow.condition(c2, 2, torch.float64))
