"""The language's words and token shapes, as the highlighters use them, checked against the Lark grammar.

The Pygments lexer and the TextMate grammar are built from these constants; :func:`grammar_vocabulary`
reads the same lists from the grammars' terminals (the string literals that are words, the model
keywords, the qualifier alternatives, the NAME/NUMBER/STRING/COMMENT patterns) and a test asserts
they are equal, so a keyword added to ``grammars/common.lark`` fails the test until the highlighters
know it.

Example:
    >>> KEYWORDS[:4], MODEL_KEYWORDS, QUALIFIERS
    (('base', 'block', 'condition', 'embed'), ('autoregressive', 'flow'), ('autoregressive', 'coupling'))
    >>> sorted(CONTEXTUAL_KEYWORDS), "embed" in reserved_keywords()
    (['embed'], False)
    >>> keyword = re.compile(r"embed(?=[ ]+" + CONTEXTUAL_KEYWORDS["embed"] + ")")
    >>> bool(keyword.match("embed mlp(out=8)")), bool(keyword.match("embed(channels=4)"))
    (True, False)
    >>> grammar_vocabulary()["keywords"] == KEYWORDS
    True
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["KEYWORDS", "CONTEXTUAL_KEYWORDS", "MODEL_KEYWORDS", "QUALIFIERS", "OPERATORS", "PUNCTUATION", "NAME",
           "NUMBER", "STRING", "COMMENT", "LINE_CONTINUATION", "grammar_vocabulary", "all_keywords",
           "reserved_keywords"]

#: words the grammar writes as string literals (statement and declaration keywords)
KEYWORDS = ("base", "block", "condition", "embed", "for", "in", "input", "let", "levels", "output", "repeat", "use")
#: keywords that are also layer names, each with the start of the token after it (past blanks) that
#: makes it a keyword: ``embed`` is the
#: condition's encoder (``condition c: vector[5] embed mlp(out=8)``) and an .ar layer
#: (``embed(channels=64)``). The grammar has ``embed`` followed by a name only in a condition
#: declaration (after its type or its ``levels``); a layer ``embed`` is followed by ``(``, ``->``, a
#: separator or the end of the line. So "followed by a name" is exact on every valid spec, and needs
#: no state across lines.
CONTEXTUAL_KEYWORDS = {"embed": "[A-Za-z_]"}
#: the model keywords (``MODEL_KW``: ``flow`` in .flow files, ``autoregressive`` in .ar files)
MODEL_KEYWORDS = ("autoregressive", "flow")
#: the layer-family qualifiers (``QUALIFIER``: ``coupling affine``, ``autoregressive rq_spline``)
QUALIFIERS = ("autoregressive", "coupling")
#: operator symbols, longest first
OPERATORS = ("**", "->", "..", "+", "-", "*", "/", "=", ":")
PUNCTUATION = ("(", ")", "[", "]", "{", "}", ",", ";")
NAME = r"[A-Za-z_][A-Za-z_0-9]*"
NUMBER = r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
STRING = r'"([^"\\\n]|\\.)*"'
COMMENT = r"#[^\n]*"
LINE_CONTINUATION = r"\\\r?\n"


def all_keywords() -> tuple[str, ...]:
    """Every word the grammar reserves, sorted (the contextual ones included)."""
    return tuple(sorted(set(KEYWORDS) | set(MODEL_KEYWORDS) | set(QUALIFIERS)))


def reserved_keywords() -> tuple[str, ...]:
    """The keywords that are keywords wherever they stand (:func:`all_keywords` less the contextual ones)."""
    return tuple(k for k in all_keywords() if k not in CONTEXTUAL_KEYWORDS)


def _escaped(pattern: str) -> str:
    """A regex with its control characters written as escapes (Lark keeps them as the characters)."""
    return pattern.replace("\n", r"\n").replace("\r", r"\r").replace("\t", r"\t").replace("\f", r"\f")


@cache
def grammar_vocabulary() -> dict[str, tuple[str, ...] | str]:
    """The same lists, read from the terminals of the ``.flow`` and ``.ar`` grammars."""
    from flowdsl.language.parser import get_parser

    words: set[str] = set()
    models: set[str] = set()
    qualifiers: set[str] = set()
    symbols: set[str] = set()
    patterns: dict[str, str] = {}
    for kind in ("flow", "ar"):
        for term in get_parser(kind).terminals:
            name = term.name.rsplit("__", 1)[-1]
            value = _escaped(term.pattern.value)
            if name == "MODEL_KW":
                models.add(value)
            elif name == "QUALIFIER":
                group = re.match(r"\(([^()]*)\)", value)
                qualifiers.update(group.group(1).split("|") if group else ())
            elif term.pattern.type == "str" and re.fullmatch(NAME, value):
                words.add(value)
            elif term.pattern.type == "str":
                symbols.add(value)
            elif name in ("NAME", "NUMBER", "STRING", "COMMENT", "LINE_CONTINUATION"):
                patterns[name] = value
            elif re.fullmatch(r"(\\?[^\w\s\\])+", value):  # a symbol Lark stored as an escaped regex
                symbols.add(re.sub(r"\\(.)", r"\1", value))
    return {"keywords": tuple(sorted(words)), "model_keywords": tuple(sorted(models)),
            "qualifiers": tuple(sorted(qualifiers)), "symbols": tuple(sorted(symbols)), **patterns}
