"""Golden diagnostics: every bad spec in tests/golden/ against its rendered .expected output.

Regenerate after an intended change with ``FLOWDSL_REGOLD=1 python -m pytest tests/test_checker.py``
and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowdsl
from flowdsl import Limits
from flowdsl.errors import render_all

HERE = Path(__file__).parent
GOLDEN = sorted(p for p in (HERE / "golden").glob("*") if p.suffix in (".flow", ".ar"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_diagnostics(path, monkeypatch):
    monkeypatch.chdir(HERE)
    rel = f"golden/{path.name}"
    analysis = flowdsl.analyze_file(rel)
    rendered = render_all(analysis.diagnostics, analysis.sources) + "\n"
    expected = path.with_suffix(".expected")
    if os.environ.get("FLOWDSL_REGOLD"):
        expected.write_text(rendered)
    assert rendered == expected.read_text()


def _messages(text, filename="t.flow", **limits):
    a = flowdsl.analyze_source(text, filename, Limits(**limits) if limits else None)
    return [(d.pos.line, d.pos.column, d.severity, d.message) for d in a.diagnostics]


def test_checker_collects_all_errors_sorted():
    diags = flowdsl.check_file(HERE / "golden" / "arg_types.flow")
    assert len([d for d in diags if d.severity == "error"]) == 6
    assert [d.pos.line for d in diags] == sorted(d.pos.line for d in diags)


def test_layer_limit_is_configurable():
    text = "flow f {\n  input x: vector[4]\n  repeat 15 { coupling additive; permute }\n}\n"
    assert _messages(text) == []
    assert _messages(text, max_layers=20)[0][3] == "the model has more than 20 layers (the layer limit)"


def test_parameter_limit_refuses_before_allocation():
    text = "flow f {\n  input x: vector[4]\n  coupling affine(net=mlp([512, 512]))\n}\n"
    (msg,) = [m for m in _messages(text, max_params=1000) if m[2] == "error"]
    assert msg[:2] == (1, 1) and "parameters (limit 1,000)" in msg[3]
    with pytest.raises(flowdsl.FlowDSLError):
        flowdsl.compile_source(text, limits=Limits(max_params=1000))


def test_nested_repeats_are_bounded():
    text = "flow f {\n  input x: vector[4]\n  repeat 10000 { repeat 10000 { permute } }\n}\n"
    msgs = _messages(text)
    assert any("layer limit" in m[3] or "expansion steps" in m[3] for m in msgs)


def test_uses_resolve_relative_to_the_file():
    assert flowdsl.check_file(HERE / "golden" / "uses_blocks.flow") == []


def test_model_names_and_unknown_model():
    assert flowdsl.model_names(HERE / "golden" / "shapes.flow") == ["f", "g", "h", "k", "m"]
    with pytest.raises(flowdsl.FlowDSLError, match="no model named 'q'"):
        flowdsl.compile_file(HERE.parent / "specs" / "nice.flow", model="q")


def test_check_does_not_import_torch():
    code = ("import sys, flowdsl; from flowdsl.cli.main import main; rc = main(['check', 'specs/glow.flow']); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(rc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("0")


def test_a_bug_in_a_rule_is_a_diagnostic_not_a_traceback(monkeypatch):
    """The safety net: an unexpected exception in a layer rule or a model check becomes a diagnostic."""
    from flowdsl.layers.elementwise import ActNormSpec

    def broken(self, ctx):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ActNormSpec, "infer", broken)
    (diag,) = flowdsl.check_source("flow f {\n  input x: vector[2]\n  actnorm\n}\n", "b.flow")
    assert (diag.pos.line, diag.pos.column, diag.severity) == (3, 3, "error")
    assert diag.message == "internal error in the rules of 'actnorm': ZeroDivisionError: boom"
    assert "bug in flowdsl" in diag.hint
