"""Front end: every acceptance spec parses; syntax errors are positioned and say what is missing."""

from __future__ import annotations

import pytest
from conftest import ACCEPTANCE, SPECS, acceptance_specs
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from flowdsl import FlowDSLError
from flowdsl.language.syntax import parse_program
from flowdsl.language.values import Symbol, evaluate


def test_all_25_acceptance_specs_are_there():
    assert len(acceptance_specs()) == 25 or not ACCEPTANCE.is_dir()


@pytest.mark.parametrize("path", acceptance_specs(), ids=lambda p: p.name)
def test_acceptance_spec_parses(path):
    prog = parse_program(path.read_text(), str(path))
    assert prog.models, f"{path.name} defines no model"
    for model in prog.models:
        assert model.pos.line >= 1 and model.body


def test_bundled_specs_parse():
    for path in sorted(SPECS.glob("*.flow")) + sorted(SPECS.glob("*.ar")):
        assert parse_program(path.read_text(), str(path)).items


def _error(text: str, filename: str = "bad.flow"):
    with pytest.raises(FlowDSLError) as info:
        parse_program(text, filename)
    (diag,) = info.value.diagnostics
    return diag.pos.line, diag.pos.column, diag.message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("flow f {\n  coupling affine(mask=half\n}\n", (3, 1, "missing ')' to close the argument list (found '}')")),
        ("flow f {\n  a([1, 2)\n}\n", (2, 10, "missing ']' to close the list (found ')')")),
        ("flow f {\n  relu\n", (2, 7, "missing '}' to close the body (found end of file)")),
        ("flow f {\n  a b\n}\n",
         (2, 5, "two statements on one line: separate them with a new line or ';' (found 'b')")),
        ("flow f {\n  a(x=)\n}\n", (2, 7, "missing value after '=' (found ')')")),
        ("flow f {\n  a $ b\n}\n", (2, 5, "unexpected character '$'")),
        ("flow f {\n  input x vector[2]\n}\n",
         (2, 11, "missing ':' and a type in the input declaration (e.g. 'input x: vector[4]') (found 'vector')")),
        ("autoregressive m {\n}\n", (1, 1, "'autoregressive' models belong in .ar files (this is a .flow file)")),
    ],
)
def test_syntax_error_golden(text, expected):
    assert _error(text) == expected


def test_flow_keyword_in_ar_file():
    assert _error("flow f {\n}\n", "m.ar") == (1, 1, "'flow' models belong in .flow files (this is a .ar file)")


def test_non_utf8_empty_and_nul():
    assert _error(b"flow f {\n \xff\n}\n")[2].startswith("the file is not UTF-8 text")
    assert parse_program("", "empty.flow").items == ()
    assert _error("flow f {\x00}\n")[2] == "the file contains a NUL character"


def test_language_features_parse_into_the_ast():
    text = """
    use "blocks.flow"   # comment
    let w = 2 * (3 + 1) ** 2; let r = 0..3
    block step(width, k) {
        actnorm -> invconv1x1
    }
    flow f {
        input x: image[3, 8, 8] levels 256
        condition y: label[10]
        base normal(learnable=true)
        repeat 2 { step(w, k=1) }
        for d in doubling(1, 8) { permute(order=random(seed=d)) }
        coupling affine(mask=[1, 0,
                              1, 0], net=mlp([64, 64]))
    }
    """
    prog = parse_program(text, "t.flow")
    kinds = [type(i).__name__ for i in prog.items]
    assert kinds == ["Use", "Let", "Let", "BlockDef", "ModelDef"]
    assert evaluate(prog.items[1].value, {}) == 32
    assert evaluate(prog.items[2].value, {}) == (0, 1, 2, 3)
    body = prog.models[0].body
    assert [type(s).__name__ for s in body] == ["InputDecl", "ConditionDecl", "BaseDecl", "Repeat", "ForLoop", "Chain"]
    call = body[-1].calls[0]
    assert call.key == "coupling affine" and (call.pos.line, call.pos.column) == (13, 9)
    assert evaluate(call.args[1].value, {}) == Symbol("mlp", args=((64, 64),))


@given(st.integers(-1000, 1000), st.integers(1, 50), st.sampled_from(["+", "-", "*"]))
def test_arithmetic_matches_python(a, b, op):
    prog = parse_program(f"let v = {a} {op} {b}\n" if a >= 0 else f"let v = -{-a} {op} {b}\n", "a.flow")
    assert evaluate(prog.items[0].value, {}) == eval(f"({a}) {op} {b}")


def test_ast_is_frozen_and_hashable():
    prog = parse_program("flow f {\n input x: vector[2]\n}\n", "f.flow")
    assert hash(prog) == hash(parse_program("flow f {\n input x: vector[2]\n}\n", "f.flow"))
    with pytest.raises(ValidationError, match="frozen"):
        prog.models[0].name = "g"
