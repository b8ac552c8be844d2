"""Diagnostics as data: positions are spans, block-call traces are related notes, errors are never mutated."""

from __future__ import annotations

import dataclasses

import pytest

import flowdsl
from flowdsl.errors import Diagnostic, FlowDSLError, Pos, Related, SpecError, render_all, trace_notes
from flowdsl.language.syntax import parse_program
from flowdsl.language.values import Symbol
from flowdsl.layers.registry import LAYERS, NETS

SPEC = (
    "let width = 2 * 16\n"                                     # 1
    "block step(w) {\n"                                        # 2
    "  coupling affine(mask=half, net=mlp([w]))\n"             # 3
    "}\n"                                                      # 4
    "flow f {\n"                                               # 5
    "  input x: vector[4]\n"                                   # 6
    "  step(w=width)\n"                                        # 7
    "}\n"                                                      # 8
)


def _span(pos: Pos) -> tuple[int, int, int, int]:
    return pos.line, pos.column, pos.end_line, pos.end_column


def _text(source: str, pos: Pos) -> str:
    """The text a one-line span covers."""
    assert pos.line == pos.end_line > 0
    return source.split("\n")[pos.line - 1][pos.column - 1:pos.end_column - 1]


def _underline(rendered: str) -> str:
    """The ``^~~~`` marker of the first excerpt of a rendered diagnostic."""
    line = rendered.split("\n")[2]
    return line.strip()


def test_spans_of_constants_layers_arguments_and_block_calls():
    prog = parse_program(SPEC, "s.flow")
    let, block, model = prog.items
    assert _span(let.pos) == (1, 1, 1, 19)
    assert _text(SPEC, let.value.pos) == "2 * 16"
    (chain,) = block.body
    (layer,) = chain.calls
    assert _text(SPEC, layer.pos) == "coupling affine(mask=half, net=mlp([w]))"
    mask, net = layer.args
    assert _text(SPEC, mask.pos) == "mask=half"
    assert _text(SPEC, net.pos) == "net=mlp([w])"
    assert _text(SPEC, net.value.pos) == "mlp([w])"
    decl, call_chain = model.body
    assert _text(SPEC, decl.pos) == "input x: vector[4]"
    assert _text(SPEC, decl.type_pos) == "vector"
    (call,) = call_chain.calls
    assert _text(SPEC, call.pos) == "step(w=width)"
    assert _text(SPEC, call.args[0].pos) == "w=width"
    # multi-line constructs end on a later line
    assert (block.pos.line, block.pos.end_line) == (2, 4)
    assert (model.pos.line, model.pos.end_line, model.pos.end_column) == (5, 8, 2)
    for node in (let, let.value, layer, mask, net, call, call.args[0], block, model):
        assert (node.pos.end_line, node.pos.end_column) > (node.pos.line, node.pos.column)


def test_positions_compare_and_sort_by_their_start():
    assert Pos("f", 2, 3, 2, 9) == Pos("f", 2, 3)
    assert sorted([Pos("f", 2, 3, 2, 4), Pos("f", 1, 9, 1, 12), Pos("f", 2, 1)]) == [
        Pos("f", 1, 9), Pos("f", 2, 1), Pos("f", 2, 3)]
    assert str(Pos("f", 2, 3, 2, 9)) == "f:2:3"
    assert (Pos("f", 2, 3, 2, 9).width, Pos("f", 2, 3, 3, 1).width, Pos("f", 2, 3).width) == (6, 0, 0)


@pytest.mark.parametrize("layer", ["squeeze", "coupling affine(mask=checkerboard(0))", "coupling affine(mask=[1, 0])"])
def test_underline_is_as_wide_as_the_construct(layer):
    source = f"flow f {{\n  input x: vector[8]\n  {layer}\n}}\n"
    (diag,) = [d for d in flowdsl.check_source(source, "u.flow") if d.severity == "error"]
    rendered = diag.render(source)
    lines = rendered.split("\n")
    assert lines[1] == f"      {layer}"
    marker = lines[2][4:]
    start = marker.index("^")
    assert start == diag.pos.column - 1
    assert marker[start:] == "^" + "~" * (diag.pos.width - 1)
    # the underlined text is the layer, or the argument the error is about
    assert layer.startswith(_text(source, diag.pos)) or _text(source, diag.pos) in layer


def test_underline_of_an_unknown_layer_and_of_a_syntax_error():
    source = "flow f {\n  input x: vector[2]\n  cuopling affine\n}\n"
    with pytest.raises(FlowDSLError) as info:
        parse_program(source, "e.flow")
    (diag,) = info.value.diagnostics
    assert _span(diag.pos) == (3, 3, 3, 11)
    assert _underline(diag.render(source)) == "^~~~~~~~"
    source = "flow f {\n  input x: vector[2]\n  planarr(1)\n}\n"
    (diag,) = flowdsl.check_source(source, "e.flow")
    assert diag.message.startswith("unknown layer 'planarr'")
    assert _underline(diag.render(source)) == "^" + "~" * (len("planarr(1)") - 1)


def test_unknown_end_or_an_end_on_another_line_is_a_caret():
    source = "ab\ncd\n"
    assert _underline(Diagnostic(Pos("f", 1, 2), "error", "m").render(source)) == "^"
    assert _underline(Diagnostic(Pos("f", 1, 1, 2, 2), "error", "m").render(source)) == "^"
    assert _underline(Diagnostic(Pos("f", 1, 1, 1, 3), "error", "m").render(source)) == "^~"


def test_underline_stays_inside_the_window_of_a_long_line():
    line = "x" * 300
    diag = Diagnostic(Pos("f", 1, 200, 1, 290), "error", "m")
    _, shown, marker = diag.render(line + "\n").split("\n")
    shown, marker = shown[4:], marker[4:]
    assert shown.startswith("...") and shown.endswith("...")
    assert marker.index("^") == 200 - 1 - (200 - 1 - 60) + 3  # the column inside the window
    assert len(marker) <= len(shown) - 3  # never under the trailing "..."
    assert set(marker.strip()) == {"^", "~"}


NESTED = (
    "block inner(h) {\n"                           # 1
    "  coupling affine(net=mlp([h]))\n"            # 2
    "}\n"                                          # 3
    "block outer(h) {\n"                           # 4
    "  permute(reverse)\n"                         # 5
    "    inner(h)\n"                               # 6
    "}\n"                                          # 7
    "flow f {\n"                                   # 8
    "  input x: vector[4]\n"                       # 9
    "  outer(-1)\n"                                # 10
    "}\n"                                          # 11
)


def test_nested_block_calls_are_related_notes_outermost_first():
    (diag,) = flowdsl.check_source(NESTED, "n.flow")
    assert diag.message == "argument 'hidden' of mlp must be >= 1 (got -1)"
    assert diag.hint is None or "in block" not in diag.hint
    outer, inner = diag.related
    assert outer.message == "in block 'outer' called here"
    assert inner.message == "in block 'inner' called here"
    assert _span(outer.pos) == (10, 3, 10, 12) and _text(NESTED, outer.pos) == "outer(-1)"
    assert _span(inner.pos) == (6, 5, 6, 13) and _text(NESTED, inner.pos) == "inner(h)"
    rendered = diag.render(NESTED)
    assert rendered.split("\n")[3:] == [
        "n.flow:10:3: note: in block 'outer' called here",
        "      outer(-1)",
        "      ^~~~~~~~~",
        "n.flow:6:5: note: in block 'inner' called here",
        "        inner(h)",
        "        ^~~~~~~~",
    ]


def test_a_shape_error_inside_nested_blocks_has_the_same_notes():
    source = NESTED.replace("coupling affine(net=mlp([h]))", "squeeze(h)").replace("outer(-1)", "outer(2)")
    (diag,) = [d for d in flowdsl.check_source(source, "n.flow") if d.severity == "error"]
    assert "squeeze" in diag.message and diag.pos.line == 2
    assert diag.hint is None or "in block" not in diag.hint
    assert [(r.message, r.pos.line, r.pos.column) for r in diag.related] == [
        ("in block 'outer' called here", 10, 3), ("in block 'inner' called here", 6, 5)]


def test_a_note_in_a_used_file_renders_that_files_line(tmp_path, monkeypatch):
    (tmp_path / "lib.flow").write_text(NESTED.split("flow f")[0])
    (tmp_path / "main.flow").write_text('use "lib.flow"\nflow f {\n  input x: vector[4]\n  outer(-1)\n}\n')
    monkeypatch.chdir(tmp_path)
    analysis = flowdsl.analyze_file("main.flow")
    (diag,) = analysis.diagnostics
    assert diag.pos.file == "lib.flow" and diag.pos.line == 2
    assert [(r.pos.file, r.pos.line) for r in diag.related] == [("main.flow", 4), ("lib.flow", 6)]
    lines = render_all(analysis.diagnostics, analysis.sources).split("\n")
    assert lines[3:] == [
        "main.flow:4:3: note: in block 'outer' called here",
        "      outer(-1)",
        "      ^~~~~~~~~",
        "lib.flow:6:5: note: in block 'inner' called here",
        "        inner(h)",
        "        ^~~~~~~~",
    ]
    # without the other file's text, the note is its line only
    alone = diag.render(analysis.sources["lib.flow"])
    assert "main.flow:4:3: note: in block 'outer' called here\nlib.flow:6:5" in alone


def test_trace_notes():
    a, b = Pos("m.flow", 10, 3, 10, 12), Pos("lib.flow", 6, 5, 6, 13)
    assert trace_notes((("outer", a), ("inner", b))) == (
        Related(a, "in block 'outer' called here"), Related(b, "in block 'inner' called here"))
    assert trace_notes(()) == ()


def _bind_error(sym: Symbol) -> SpecError:
    with pytest.raises(SpecError) as info:
        LAYERS.bind(sym)
    return info.value


def _fields(err: SpecError):
    return (err.message, _span(err.pos), err.pos.file, err.hint, err.arg,
            [(d.message, _span(d.pos), d.hint, d.related) for d in err.extra])


def test_binding_builds_new_errors_and_never_edits_one(monkeypatch):
    """A symbolic argument's error without a position gets the argument's position as a new error."""
    extra = Diagnostic(Pos("x.flow", 9, 9, 9, 12), "error", "a second problem")
    raised = SpecError("bad net", hint="try mlp", extra=[extra])
    before = dataclasses.astuple(raised)

    def bind(value, pos=None):
        raise raised

    monkeypatch.setattr(NETS, "bind", bind)
    net_pos = Pos("x.flow", 3, 21, 3, 33)
    sym = Symbol("coupling affine", kwargs=(("mask", Symbol("halff")), ("net", Symbol("mpl", (8,)))),
                 pos=Pos("x.flow", 3, 3, 3, 40), kwarg_pos=(Pos("x.flow", 3, 19, 3, 20), net_pos))
    first, second = _bind_error(sym), _bind_error(sym)
    assert dataclasses.astuple(raised) == before and raised.pos is None and raised.extra == [extra]
    assert first is not raised and second is not raised and first is not second
    assert _fields(first) == _fields(second)
    assert first.message == "unknown mask 'halff'"
    assert [(d.message, d.pos) for d in first.extra] == [("bad net", net_pos), ("a second problem", extra.pos)]


def test_spec_error_copies():
    err = SpecError("m", hint="h", extra=[Diagnostic(Pos("f", 1, 1), "error", "x")])
    moved = err.with_pos(Pos("f", 2, 3, 2, 5))
    assert (moved.message, moved.hint, _span(moved.pos)) == ("m", "h", (2, 3, 2, 5))
    assert err.pos is None and moved.extra == err.extra and moved.extra is not err.extra
    assert err.replace(hint=None).hint is None and err.hint == "h"
    notes = trace_notes((("b", Pos("f", 4, 1, 4, 2)),))
    assert err.at(Pos("f", 5, 5)).related == () and err.at(Pos("f", 5, 5), notes).related == notes


_CONDITION_ERRORS = [  # (the condition line, or a layer line after `condition c: vector[3]`; the underlined text)
    ("condition c: vectr[3]", "vectr", "unknown condition type 'vectr'"),
    ("condition c: sequence[8, 2, 3]", "sequence", "sequence takes"),
    ("condition c: vector[3] levels 1", "1", "levels must be a whole number"),
    ("condition c: label[4] levels 4", "4", "takes no levels"),
    ("condition c: vector[8] embed mlp([16])", "mlp([16])", "needs out=F"),
    ("condition c: vector[8] embed mlp([16], out=2.5)", "out=2.5", "out must be a whole number"),
    ("condition c: vector[8] embed conv_net(hidden=8, out=4)", "conv_net(hidden=8, out=4)", "needs image input"),
    ("condition c: vector[8] embed mlpp(out=4)", "mlpp(out=4)", "unknown net 'mlpp'"),
    ("condition c: vector[8] embed mlp(hiden=[4], out=4)", "hiden=[4]", "no argument 'hiden'"),
    ("coupling affine(mask=half, reads=1)", "reads=1", "reads must be true or false"),
]


@pytest.mark.parametrize(("line", "underlined", "message"), _CONDITION_ERRORS, ids=[c[0] for c in _CONDITION_ERRORS])
def test_a_condition_error_underlines_its_argument(line, underlined, message):
    """Each check of a condition renders ``file:line:col: error:`` with the underline on the argument at fault."""
    decl = line if line.startswith("condition") else "condition c: vector[3]"
    layer = line if not line.startswith("condition") else "coupling affine"
    src = f"flow f {{\n  input x: vector[4]\n  {decl}\n  {layer}\n}}\n"
    analysis = flowdsl.analyze_source(src, "c.flow")
    (err,) = [d for d in analysis.diagnostics if d.severity == "error"]
    assert message in err.message
    assert _text(src, err.pos) == underlined
    rendered = render_all([err], analysis.sources)
    assert rendered.startswith(f"c.flow:{err.pos.line}:{err.pos.column}: error: ")
    column = src.split("\n")[err.pos.line - 1].rindex(underlined) + 1
    assert err.pos.column == column and _underline(rendered) == "^" + "~" * (len(underlined) - 1)
