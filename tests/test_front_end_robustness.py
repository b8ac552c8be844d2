"""No input may crash the front end: mutated specs get diagnostics, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdsl
from conftest import acceptance_specs

SOURCES = [p.read_text() for p in acceptance_specs()]
TOKENS = ["(", ")", "[", "]", "{", "}", ",", "=", "->", "..", ";", "\n", "-", "**", "0", "1e9", "2.5", '"x"',
          "repeat", "for", "in", "block", "use", "let", "input", "levels", "coupling", "autoregressive", "split",
          "squeeze", "mask", "net", "half", "flow", "#"]


def _analyze(text: str, name: str) -> None:
    try:
        analysis = flowdsl.analyze_source(text, name)
    except flowdsl.FlowDSLError:
        return
    for d in analysis.diagnostics:
        assert d.severity in ("error", "warning", "note") and d.pos.file == name
        d.render(text)
    if analysis.ok:
        _compile_and_run(analysis)


def _compile_and_run(analysis) -> None:
    """A spec the checker accepts must compile and run (small flows only, to stay fast)."""
    import math

    import torch

    from flowdsl.compiler import compile_model

    for ir in analysis.models.values():
        if ir.header.kind != "flow" or ir.params > 2_000_000 or math.prod(ir.header.input.shape) > 4096:
            continue
        try:
            flow = compile_model(ir, analysis.unit)
        except flowdsl.FlowDSLError as err:
            assert "no runtime yet" in str(err) or "cannot be compiled yet" in str(err), str(err)
            continue
        flow.eval()
        x = torch.rand(2, *flow.input_shape) * (flow.levels or 1)
        ctx = torch.zeros(2, dtype=torch.long) if flow.context_shape is not None else None
        z, ld = flow(x, ctx)
        assert z.shape == x.shape and ld.shape == (2,)


@settings(max_examples=150)
@given(st.sampled_from(range(len(SOURCES))), st.data())
def test_mutated_acceptance_specs_get_diagnostics(index, data):
    text = SOURCES[index]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        j = min(len(text), i + data.draw(st.integers(1, 12)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(TOKENS)) + text[i:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    name = "m.flow" if "flow " in SOURCES[index] else "m.ar"
    _analyze(text, name)


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _analyze(data, "r.flow")


@pytest.mark.parametrize(
    "text",
    [
        "", "\n\n", "flow f {}", "flow f {\n input x: vector[2]\n}\n" * 3,
        "flow f {\n" + "repeat 2 {\n" * 300 + "}\n" * 300 + "}\n",
        "let a = " + "(" * 500 + "1" + ")" * 500 + "\n",
        "let a = 1e999\n", "let a = 9" * 400 + "\n", "flow f {\n input x: vector[999999999999]\n}\n",
        "flow f {\n input x: vector[2]\n " + "a" * 100_000 + "\n}\n",
        "block b(x) { b(x) }\nflow f {\n input x: vector[2]\n b(1)\n}\n",
        "use \"r.flow\"\nflow f {\n input x: vector[2]\n}\n",
    ],
)
def test_pathological_inputs(text):
    _analyze(text, "r.flow")
