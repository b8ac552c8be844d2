"""The ``condition`` declaration at the language level: every type, ``levels``, ``embed`` with each net,
the limits, ``reads=false``; ``ConditionInfo.encoded`` for each row of the encoding table
(flowdsl/language/conditions.py), and the runtime encoder agreeing with it."""

from __future__ import annotations

from math import prod

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl import Limits
from flowdsl.runtime.conditions import ContextEncoder


def _model(declared: str, layers: str = "coupling affine", input_: str = "vector[4]", limits: Limits | None = None):
    src = f"flow f {{\n  input x: {input_}\n  condition c: {declared}\n  {layers}\n}}\n"
    return flowdsl.analyze_source(src, "c.flow", limits)


def _condition(declared: str, **kw):
    analysis = _model(declared, **kw)
    errors = [d.message for d in analysis.diagnostics if d.severity == "error"]
    assert errors == [], errors
    return analysis.models["f"].header.condition


# declared -> (shape a caller passes, levels, raw encoding, encoded: what the layers read)
TABLE = {
    "label[5]": ((), 5, "vector[5]", "vector[5]"),
    "label[5] embed mlp([8], out=3)": ((), 5, "vector[5]", "vector[3]"),
    "vector[6]": ((6,), None, "vector[6]", "vector[6]"),
    "vector[6] levels 3": ((6,), 3, "vector[18]", "vector[18]"),
    "vector[6] embed resnet(blocks=1, hidden=8, out=2)": ((6,), None, "vector[6]", "vector[2]"),
    "image[2, 4, 6]": ((2, 4, 6), None, "image[2, 4, 6]", "image[2, 4, 6]"),
    "image[2, 4, 6] levels 4": ((2, 4, 6), 4, "image[8, 4, 6]", "image[8, 4, 6]"),
    "image[2, 4, 6] embed mlp([8], out=5)": ((2, 4, 6), None, "image[2, 4, 6]", "vector[5]"),
    "image[2, 4, 6] embed conv_net(hidden=8, out=3)": ((2, 4, 6), None, "image[2, 4, 6]", "image[3, 4, 6]"),
    "image[2, 4, 6] levels 2 embed resnet(blocks=1, hidden=8, out=3)":
        ((2, 4, 6), 2, "image[4, 4, 6]", "image[3, 4, 6]"),
    "sequence[7]": ((7,), None, "sequence[1, 7]", "sequence[1, 7]"),
    "sequence[7, 3]": ((7, 3), None, "sequence[3, 7]", "sequence[3, 7]"),
    "sequence[7, 3] levels 5": ((7, 3), 5, "sequence[15, 7]", "sequence[15, 7]"),
    "sequence[7] embed mlp([8], out=4)": ((7,), None, "sequence[1, 7]", "vector[4]"),
    "sequence[7, 2] embed seq_conv(channels=8, dilations=[1, 2], out=4)":
        ((7, 2), None, "sequence[2, 7]", "sequence[4, 7]"),
}


@pytest.mark.parametrize("declared", sorted(TABLE))
def test_each_row_of_the_encoding_table(declared):
    shape, levels, raw, encoded = TABLE[declared]
    cond = _condition(declared)
    assert (cond.shape, cond.levels, cond.raw.describe(), cond.encoded.describe()) == (shape, levels, raw, encoded)
    assert cond.integer == (levels is not None)
    assert cond.classes == (levels if declared.startswith("label") else 0)
    assert (cond.embed is None) == ("embed" not in declared)
    assert cond.encoded.features == prod(cond.encoded.shape)


@pytest.mark.parametrize("declared", sorted(d for d in TABLE if "embed" in d))
def test_an_embed_nets_declared_parameters_are_the_ones_built(declared):
    """The checker's count of the embed net (limits, reports, hover) is what the runtime allocates, and the
    runtime encoder gives the layers the encoded shape."""
    cond = _condition(declared)
    encoder = ContextEncoder(cond, "model 'f'")
    assert sum(p.numel() for p in encoder.parameters()) == cond.embed_params > 0
    dtype = torch.long if cond.integer else torch.float32
    out = encoder(torch.zeros(3, *cond.shape, dtype=dtype), 3, torch.float32)
    assert tuple(out.shape) == (3, *cond.encoded.shape)


@pytest.mark.parametrize("declared", sorted(TABLE))
def test_a_description_declares_the_same_condition(declared):
    cond = _condition(declared)
    again = _condition(cond.describe())
    assert (again.shape, again.levels, again.encoded, again.embed_params) == (cond.shape, cond.levels,
                                                                               cond.encoded, cond.embed_params)


_TYPES = st.sampled_from(["vector", "image", "sequence1", "sequence2"])


@settings(max_examples=40, deadline=None)
@given(kind=_TYPES, sizes=st.lists(st.integers(1, 5), min_size=3, max_size=3),
       levels=st.one_of(st.none(), st.integers(2, 4)), batch=st.integers(1, 3), data=st.data())
def test_the_runtime_encoding_is_the_declared_encoding(kind, sizes, levels, batch, data):
    """For any condition, the encoder turns a valid context into ``[B, *encoded.shape]``, one-hot where
    whole numbers are declared (every position's one-hot sums to one: one value per original number)."""
    dims = {"vector": sizes[:1], "image": sizes, "sequence1": sizes[:1], "sequence2": sizes[:2]}[kind]
    declared = f"{kind.rstrip('12')}[{', '.join(map(str, dims))}]" + (f" levels {levels}" if levels else "")
    cond = _condition(declared)
    shape = (batch, *cond.shape)
    if levels:
        context = torch.tensor(data.draw(st.lists(st.integers(0, levels - 1), min_size=prod(shape),
                                                  max_size=prod(shape)))).reshape(shape)
    else:
        context = torch.randn(shape)
    out = ContextEncoder(cond, "model 'f'")(context, batch, torch.float64)
    assert tuple(out.shape) == (batch, *cond.encoded.shape)
    assert cond.encoded.features == prod(dims) * (levels or 1)
    if levels:
        assert torch.equal(out.sum(dim=tuple(range(1, out.dim()))), torch.full((batch,), float(prod(dims)),
                                                                                dtype=torch.float64))
    else:
        assert torch.equal(out.reshape(-1).sort().values, context.to(torch.float64).reshape(-1).sort().values)


def test_limits_of_a_condition():
    """The encoded size counts against the input-size limit; an embed net against the parameter limit."""
    big = _model("image[3, 8, 8] levels 256", limits=Limits(max_input_size=10_000))
    (err,) = [d for d in big.diagnostics if d.severity == "error"]
    assert err.message == "the condition has 49152 numbers once encoded (limit 10000)"
    assert err.hint == "raise the limit with --max-input-size"
    assert _condition("image[3, 8, 8] levels 256", limits=Limits(max_input_size=49_152)).raw.features == 49_152
    heavy = _model("vector[100] embed mlp([100], out=10)", limits=Limits(max_params=10_000))
    messages = [d.message for d in heavy.diagnostics if d.severity == "error"]
    assert "the embed net has 11,110 parameters (limit 10,000)" in messages
    assert _condition("vector[100] embed mlp([100], out=10)").embed_params == 100 * 100 + 100 + 100 * 10 + 10


def test_reads_false_builds_the_layer_as_without_a_condition():
    """``reads=false``: the layer is inferred as in the unconditional model (same parameters), and reads nothing."""
    def layers(text):
        (ir,) = flowdsl.analyze_source(text, "r.flow").models.values()
        return [(n.reads, n.reads_condition, n.params) for n in ir.layers]

    plain = layers("flow f {\n  input x: vector[4]\n  coupling affine\n  planar\n}\n")
    conditional = layers("flow f {\n  input x: vector[4]\n  condition c: vector[3]\n  coupling affine\n"
                         "  planar(reads=false)\n}\n")
    assert conditional[1] == (False, False, plain[1][2])
    assert conditional[0][:2] == (True, True) and conditional[0][2] > plain[0][2]  # the coupling reads c
    off = layers("flow f {\n  input x: vector[4]\n  condition c: vector[3]\n  coupling affine(reads=false)\n"
                 "  planar(reads=false)\n}\n")
    assert off == [(False, False, p) for _, _, p in plain]


def test_the_unread_condition_warning_counts_the_layers_that_opted_out():
    a = _model("vector[3]", layers="coupling affine(reads=false)\n  permute\n  coupling affine(reads=false)")
    (warn,) = [d for d in a.diagnostics if d.severity == "warning"]
    assert warn.message == "condition 'c' is declared but no layer reads it"
    assert warn.hint == "2 layers say reads=false" and (warn.pos.line, warn.pos.column) == (3, 3)
    quiet = _model("vector[3]", layers="actnorm")
    (warn,) = [d for d in quiet.diagnostics if d.severity == "warning"]
    assert warn.hint is None  # nothing opted out: actnorm never reads a condition
    based = flowdsl.analyze_source("flow f {\n  input x: vector[4]\n  condition c: vector[3]\n  actnorm\n"
                                   "  base normal(conditional=true)\n}\n", "b.flow")
    assert based.diagnostics == []  # the base reads it
