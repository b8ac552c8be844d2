"""The model-kind registry: checks run in the stated order and every check's findings are reported."""

import flowdsl
from flowdsl.analysis.kinds import MODEL_KINDS, model_kind


def _errors(text, name):
    return [d for d in flowdsl.check_source(text, name) if d.severity == "error"]


def test_two_independent_errors_of_two_checks_are_both_reported():
    # resources (too many parameters) and residual streams (widths disagree): two checks, two errors
    text = ("autoregressive w {\n input x: sequence[16] levels 4\n embed(dim=4)\n"
            " causal_conv(kernel=2, channels=8)\n"
            " gated_residual(kernel=2, dilation=1, residual=8, skip=8)\n"
            " gated_residual(kernel=2, dilation=2, residual=16, skip=8)\n}\n")
    small = flowdsl.Limits(max_params=10)
    diags = flowdsl.analyze_source(text, "w.ar", limits=small).diagnostics
    messages = [d.message for d in diags if d.severity == "error"]
    assert any("would have" in m and "parameters (limit 10)" in m for m in messages), messages
    assert any("gated_residual continues a residual stream of 8 features" in m for m in messages), messages
    # the causality check needs consistent streams: it says it did not run instead of failing obscurely
    notes = [d.message for d in diags if d.severity == "note"]
    assert any(n.startswith("the causality check did not run") for n in notes), notes


def test_a_flow_reports_an_error_and_the_warnings_of_later_checks():
    text = "flow f {\n input x: vector[4]\n condition y: label[3]\n permute(reverse)\n}\n"
    diags = flowdsl.analyze_source(text, "f.flow", limits=flowdsl.Limits(max_params=-1)).diagnostics
    kinds = sorted((d.severity, d.message.split(" ")[0]) for d in diags)
    assert kinds == [("error", "model"), ("warning", "condition"), ("warning", "no")], kinds


def test_checks_are_declared_in_order_once_per_kind():
    assert list(MODEL_KINDS) == ["flow", "autoregressive"]
    assert [c.name for c in model_kind("autoregressive").checks] == [
        "resources", "condition", "residual streams", "causality", "attention patterns"]
    for kind in MODEL_KINDS.values():
        names = [c.name for c in kind.checks]
        assert len(names) == len(set(names)) and kind.compiler.count(":") == 1
