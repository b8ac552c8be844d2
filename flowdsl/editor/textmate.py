"""The TextMate grammar of flowdsl (VS Code and other editors), generated from the Lark grammar.

``python -m flowdsl.editor.textmate`` writes ``editors/vscode/syntaxes/flowdsl.tmLanguage.json``
(``--check``: exit 1 if the checked-in file differs). The keywords, model keywords, qualifiers and
token patterns are read from the grammars' terminals (:func:`~flowdsl.editor.vocabulary.grammar_vocabulary`),
so a keyword added to the grammar reaches the editor by running the generator, and a test fails until
it is run. :func:`tokenize_line` applies the grammar as a TextMate engine does (at each point the
earliest match wins, ties go to the first rule), for the tests.

Example:
    >>> grammar = generate()
    >>> grammar["scopeName"], grammar["fileTypes"]
    ('source.flowdsl', ['flow', 'ar'])
    >>> line = "repeat 2 { planar }"
    >>> [(line[s:e], scope) for s, e, scope in tokenize_line(grammar, line)]  # doctest: +NORMALIZE_WHITESPACE
    [('repeat', 'keyword.control.flowdsl'), ('2', 'constant.numeric.flowdsl'),
     ('{', 'punctuation.section.braces.flowdsl'), ('planar', 'support.function.layer.flowdsl'),
     ('}', 'punctuation.section.braces.flowdsl')]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from flowdsl.editor.vocabulary import CONTEXTUAL_KEYWORDS, grammar_vocabulary

__all__ = ["generate", "render", "tokenize_line", "DEFAULT_PATH", "main"]

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "syntaxes" / "flowdsl.tmLanguage.json"
_CONTROL = ("for", "in", "repeat")  # keyword.control; the other keywords are keyword.other


def _alternatives(names) -> str:
    return "|".join(sorted(names, key=lambda w: (-len(w), w)))


def _rule(match: str, name: str | None = None, captures: dict[int, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"match": match}
    if name:
        rule["name"] = name
    if captures:
        rule["captures"] = {str(k): {"name": v} for k, v in captures.items()}
    return rule


def generate() -> dict[str, Any]:
    """The grammar as a dict, built from the Lark grammar's terminals."""
    g = grammar_vocabulary()
    name, number = str(g["NAME"]), str(g["NUMBER"])
    keywords = sorted(set(g["keywords"]) | set(g["model_keywords"]) | set(g["qualifiers"]))
    reserved = [k for k in keywords if k not in CONTEXTUAL_KEYWORDS]  # the contextual ones are layers too
    control = [k for k in keywords if k in _CONTROL]
    other = [k for k in keywords if k not in _CONTROL and k not in CONTEXTUAL_KEYWORDS]
    contextual = [(f"keyword-{word}", _rule(rf"\b{word}(?=[ \t]+{after})", "keyword.other.flowdsl"))
                  for word, after in sorted(CONTEXTUAL_KEYWORDS.items())]  # ``embed`` before a name
    not_layer = "".join(f"|{word}(?=[ \t]+{after})" for word, after in sorted(CONTEXTUAL_KEYWORDS.items()))
    symbols = [s for s in g["symbols"] if not s.isalnum()]
    operators = [s for s in symbols if s not in "()[]{},"]
    rules: list[tuple[str, dict[str, Any]]] = [
        ("comment", _rule(str(g["COMMENT"]), "comment.line.number-sign.flowdsl")),
        ("string", _rule(str(g["STRING"]), "string.quoted.double.flowdsl")),
        ("line-continuation", _rule(r"\\$", "constant.character.escape.line-continuation.flowdsl")),
        ("number", _rule(rf"\b(?:{number})\b", "constant.numeric.flowdsl")),
        ("model", _rule(rf"\b({_alternatives(g['model_keywords'])})[ \t]+({name})(?=[ \t]*\{{)",
                        captures={1: "keyword.other.model.flowdsl", 2: "entity.name.type.model.flowdsl"})),
        ("qualified-layer", _rule(rf"\b({_alternatives(g['qualifiers'])})[ \t]+({name})",
                                  captures={1: "keyword.other.qualifier.flowdsl",
                                            2: "support.function.layer.flowdsl"})),
        ("block", _rule(rf"\b(block)[ \t]+({name})",
                        captures={1: "keyword.other.block.flowdsl", 2: "entity.name.function.block.flowdsl"})),
        ("let", _rule(rf"\b(let)[ \t]+({name})",
                      captures={1: "keyword.other.let.flowdsl", 2: "variable.other.constant.flowdsl"})),
        ("declaration", _rule(rf"\b(input|condition)[ \t]+({name})",
                              captures={1: "keyword.other.declaration.flowdsl", 2: "variable.other.flowdsl"})),
        ("loop", _rule(rf"\b(for)[ \t]+({name})",
                       captures={1: "keyword.control.flowdsl", 2: "variable.other.flowdsl"})),
        # a word before ``=`` is an argument's name, even a keyword's (``pattern=fixed(block=16)``)
        ("argument", _rule(rf"\b{name}(?=[ \t]*=(?!=))", "variable.parameter.flowdsl")),
        ("control", _rule(rf"\b({_alternatives(control)})\b", "keyword.control.flowdsl")),
        ("keyword", _rule(rf"\b({_alternatives(other)})\b", "keyword.other.flowdsl")),
        *contextual,
        ("call", _rule(rf"\b{name}(?=[ \t]*\()", "entity.name.function.call.flowdsl")),
        ("layer", _rule(rf"(?:^|(?<=->)|(?<={{))[ \t]*(?!(?:{_alternatives(reserved)})\b{not_layer})({name})\b",
                        captures={1: "support.function.layer.flowdsl"})),
        ("name", _rule(rf"\b{name}\b", "variable.other.flowdsl")),
        ("operator", _rule(_alternatives(re.escape(s) for s in operators), "keyword.operator.flowdsl")),
        ("separator", _rule(r"[,;]", "punctuation.separator.flowdsl")),
        ("brace", _rule(r"[{}]", "punctuation.section.braces.flowdsl")),
        ("bracket", _rule(r"[()\[\]]", "punctuation.section.brackets.flowdsl")),
        ("invalid", _rule(r"[^\s]", "invalid.illegal.flowdsl")),
    ]
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "flowdsl",
        "scopeName": "source.flowdsl",
        "fileTypes": ["flow", "ar"],
        "comment": "Generated by `python -m flowdsl.editor.textmate` from grammars/*.lark: do not edit by hand.",
        "patterns": [{"include": f"#{key}"} for key, _ in rules],
        "repository": dict(rules),
    }


def render(grammar: dict[str, Any] | None = None) -> str:
    """The grammar as the checked-in JSON text."""
    return json.dumps(grammar or generate(), indent=2) + "\n"


def tokenize_line(grammar: dict[str, Any], line: str) -> list[tuple[int, int, str]]:
    """``(start, end, scope)`` of the scoped parts of one line (text outside every rule has none)."""
    rules = [grammar["repository"][p["include"][1:]] for p in grammar["patterns"]]
    compiled = [(re.compile(r["match"]), r) for r in rules]
    out: list[tuple[int, int, str]] = []
    at = 0
    while at < len(line):
        best = None
        for regex, rule in compiled:
            m = regex.search(line, at)
            if m and (best is None or m.start() < best[0].start()):
                best = (m, rule)
        if best is None:
            break
        m, rule = best
        if "captures" in rule:
            out += [(m.start(int(k)), m.end(int(k)), c["name"]) for k, c in rule["captures"].items()
                    if m.group(int(k)) is not None]
        else:
            out.append((m.start(), m.end(), rule["name"]))
        at = m.end() if m.end() > at else at + 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowdsl.editor.textmate", description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_PATH, help=f"where to write (default {DEFAULT_PATH})")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated grammar")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m flowdsl.editor.textmate", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
