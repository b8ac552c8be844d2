"""The highlighters (Pygments lexer, TextMate grammar) against the Lark grammar and every bundled spec.

The Lark parser, rebuilt to keep every token, says what each token of a spec is; both highlighters
must agree: a keyword token is a keyword, a name is a name, a number a number, a string a string, and
no character of a bundled spec is an error.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark, Token

pytest.importorskip("pygments", reason="highlighting needs the highlight extra (pygments)")

from pygments.lexers import get_lexer_by_name, get_lexer_for_filename  # noqa: E402
from pygments.token import Error, Keyword, Name, Number, String  # noqa: E402

from flowdsl.editor import vocabulary  # noqa: E402
from flowdsl.editor.lexer import FlowDSLLexer  # noqa: E402
from flowdsl.editor.textmate import DEFAULT_PATH, generate, render, tokenize_line  # noqa: E402
from flowdsl.errors import FlowDSLError  # noqa: E402
from flowdsl.language.parser import file_kind, get_parser, parse_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EDITORS = ROOT / "editors" / "vscode"

EVERY_KEYWORD_FLOW = """\
use "blocks/steps.flow"
let k = 2
block step(w) {
    coupling affine(mask=half, net=mlp(hidden=[w]))
    autoregressive affine
}
flow f {
    input x: image[1, 4, 4] levels 256
    condition y: vector[3] levels 4 embed mlp(hidden=[8], out=4)
    base normal
    repeat k { step(8) }
    for i in 1..2 { squeeze(2) }
}
"""
EVERY_KEYWORD_AR = "autoregressive a {\n    input x: sequence[8] levels 4\n    causal_conv\n    output categorical\n}\n"


def _spec_files() -> list[Path]:
    files = [p for folder in ("specs", "examples") for p in sorted((ROOT / folder).rglob("*"))
             if p.suffix in (".flow", ".ar")]
    files += sorted(p for p in (ROOT / "tests" / "golden").glob("*") if p.suffix in (".flow", ".ar"))
    acceptance = ROOT.parent / "shared" / "acceptance"
    if acceptance.is_dir():
        files += sorted(p for p in acceptance.rglob("*") if p.suffix in (".flow", ".ar"))
    valid = []
    for path in files:
        try:
            parse_text(path.read_text(), str(path))
        except (FlowDSLError, UnicodeDecodeError):
            continue  # a golden file of a syntax error: not a spec
        valid.append(path)
    return valid


SPECS = _spec_files()


@cache
def _token_parser(kind: str) -> Lark:
    """The grammar's own parser, rebuilt to keep every token (keywords and punctuation too)."""
    parser = get_parser(kind)
    options = dict(parser.options.options, keep_all_tokens=True)
    return Lark(parser.source_grammar, **options)


def _tokens(text: str, filename: str) -> list[Token]:
    tree = _token_parser(file_kind(filename)).parse(text if text.endswith("\n") else text + "\n")
    return [t for t in tree.scan_values(lambda v: isinstance(v, Token)) if not t.type.endswith("_SEP")]


def _role(token: Token) -> str:
    name = token.type.rsplit("__", 1)[-1]
    if name == "NAME":  # a word the contextual lexer read as a name (the .ar layer ``embed``) is a name
        return "name"
    if name.lstrip("_") in ("MODEL_KW", "QUALIFIER", "LEVELS", "EMBED") or token.value in vocabulary.KEYWORDS:
        return "keyword"
    return {"NAME": "name", "NUMBER": "number", "STRING": "string"}.get(name, "symbol")


def _pygments_types(text: str) -> dict[int, object]:
    return {i: t for i, t, _ in FlowDSLLexer().get_tokens_unprocessed(text)}


def _textmate_scopes(text: str) -> dict[int, str]:
    grammar, scopes, offset = generate(), {}, 0
    for line in text.split("\n"):
        scopes.update({offset + s: scope for s, _, scope in tokenize_line(grammar, line)})
        offset += len(line) + 1
    return scopes


_PYGMENTS_ROLE = {"keyword": Keyword, "name": Name, "number": Number, "string": String}
_TEXTMATE_ROLE = {"keyword": ("keyword.other", "keyword.control"), "number": ("constant.numeric",),
                  "string": ("string.",), "name": ("variable.", "entity.name.", "support.function.")}


def _agree(text: str, filename: str) -> set[str]:
    """Check both highlighters against the grammar's tokens; return the keywords seen."""
    pyg, tm = _pygments_types(text), _textmate_scopes(text)
    seen = set()
    for token in _tokens(text, filename):
        role = _role(token)
        if role == "symbol":
            continue
        where = f"{filename}:{token.line}:{token.column} {token.value!r} ({role})"
        assert pyg.get(token.start_pos) in _PYGMENTS_ROLE[role], f"pygments: {where} is {pyg.get(token.start_pos)}"
        scope = tm.get(token.start_pos, "")
        assert scope.startswith(_TEXTMATE_ROLE[role]), f"textmate: {where} is {scope or 'unscoped'}"
        if role == "keyword":
            seen.add(token.value)
    return seen


def test_the_vocabulary_is_the_grammars():
    g = vocabulary.grammar_vocabulary()
    assert g["keywords"] == vocabulary.KEYWORDS
    assert g["model_keywords"] == vocabulary.MODEL_KEYWORDS
    assert g["qualifiers"] == vocabulary.QUALIFIERS
    assert set(g["symbols"]) | {";"} == set(vocabulary.OPERATORS + vocabulary.PUNCTUATION)
    for name in ("NAME", "NUMBER", "STRING", "COMMENT", "LINE_CONTINUATION"):
        assert g[name] == getattr(vocabulary, name), name


def test_the_checked_in_textmate_grammar_is_the_generated_one():
    assert DEFAULT_PATH.read_text() == render(), "run: python -m flowdsl.editor.textmate"


def test_the_lexer_is_registered_by_entry_point():
    for alias in ("flow", "ar", "flowdsl"):
        assert type(get_lexer_by_name(alias)) is FlowDSLLexer
    assert type(get_lexer_for_filename("glow.flow")) is FlowDSLLexer
    assert type(get_lexer_for_filename("pixelcnn.ar")) is FlowDSLLexer


def test_every_keyword_is_a_keyword_for_both_highlighters():
    seen = _agree(EVERY_KEYWORD_FLOW, "k.flow") | _agree(EVERY_KEYWORD_AR, "k.ar")
    assert seen == set(vocabulary.all_keywords())


def test_there_are_bundled_specs():
    assert len(SPECS) >= 40 and any(p.suffix == ".ar" for p in SPECS)
    conditional = [p for p in SPECS if "conditional" in p.parts]  # specs/conditional: every condition type
    assert any(p.suffix == ".flow" for p in conditional) and any(p.suffix == ".ar" for p in conditional)
    assert any("embed" in p.read_text() for p in conditional)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_every_bundled_spec_highlights_without_errors(path):
    text = path.read_text()
    errors = [(i, v) for i, t, v in FlowDSLLexer().get_tokens_unprocessed(text) if t in Error]
    assert errors == []
    illegal = [(i, scope) for i, scope in _textmate_scopes(text).items() if scope.startswith("invalid")]
    assert illegal == []
    _agree(text, path.name)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("flow repeat(x=1.5e3)->{}[],;#\"\\\n\tcoupling affine_0:*+-/.")),
               max_size=80))
def test_the_lexer_loses_no_character(text):
    assert "".join(v for _, _, v in FlowDSLLexer().get_tokens_unprocessed(text)) == text
    scopes = tokenize_line(generate(), text.split("\n")[0])
    assert all(0 <= s < e <= len(text) for s, e, _ in scopes)


def test_the_vscode_extension_names_what_exists():
    manifest = json.loads((EDITORS / "package.json").read_text())
    [language] = manifest["contributes"]["languages"]
    assert sorted(language["extensions"]) == sorted(f[1:] for f in FlowDSLLexer.filenames)
    [grammar] = manifest["contributes"]["grammars"]
    assert (EDITORS / grammar["path"]).is_file() and grammar["scopeName"] == generate()["scopeName"]
    assert (EDITORS / language["configuration"]).is_file() and (EDITORS / manifest["main"]).is_file()
    json.loads((EDITORS / language["configuration"]).read_text())


EMBED_BOTH_WAYS = """\
autoregressive a {
    input x: sequence[8] levels 4
    condition s: sequence[6] levels 5 embed embed(channels=4)
    condition g: vector[3] \\
        embed mlp(hidden=[8], out=2)
    embed(channels=8) -> causal_conv
    embed
    output categorical
}
"""


def test_embed_is_a_keyword_in_a_condition_and_a_layer_elsewhere():
    """``embed`` is the condition's encoder keyword before a net, and the .ar layer everywhere else."""
    _agree(EMBED_BOTH_WAYS, "e.ar")  # the grammar's tokens: _EMBED twice, NAME 'embed' three times
    tokens = [t for t in _tokens(EMBED_BOTH_WAYS, "e.ar") if t.value == "embed"]
    assert [_role(t) for t in tokens] == ["keyword", "name", "keyword", "name", "name"]
    pyg, tm = _pygments_types(EMBED_BOTH_WAYS), _textmate_scopes(EMBED_BOTH_WAYS)
    assert [pyg[t.start_pos] in Keyword for t in tokens] == [True, False, True, False, False]
    assert [tm[t.start_pos].startswith("keyword") for t in tokens] == [True, False, True, False, False]
