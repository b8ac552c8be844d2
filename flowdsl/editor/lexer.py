"""A Pygments lexer for flowdsl (``.flow`` and ``.ar`` files), registered as the ``flowdsl`` entry point.

Sphinx, MkDocs and Jupyter then highlight code blocks marked ``flow``, ``ar`` or ``flowdsl``. The
words and token shapes come from :mod:`flowdsl.editor.vocabulary` (checked against the Lark grammar);
a character the language does not have is an ``Error`` token.

Example:
    >>> lexer = FlowDSLLexer()
    >>> tokens = lexer.get_tokens("coupling affine(mask=half)\\n")
    >>> [(str(t), v) for t, v in tokens if v.strip()]  # doctest: +NORMALIZE_WHITESPACE
    [('Token.Keyword.Type', 'coupling'), ('Token.Name.Builtin', 'affine'), ('Token.Punctuation', '('),
     ('Token.Name.Attribute', 'mask'), ('Token.Operator', '='), ('Token.Name', 'half'), ('Token.Punctuation', ')')]
"""

from __future__ import annotations

import re
from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from flowdsl.editor import vocabulary as v

__all__ = ["FlowDSLLexer"]

_MODEL = "|".join(v.MODEL_KEYWORDS)
_QUALIFIER = "|".join(v.QUALIFIERS)
_OPERATORS = "|".join(re.escape(op) for op in v.OPERATORS)
_PUNCTUATION = "[" + re.escape("".join(v.PUNCTUATION)) + "]"


class FlowDSLLexer(RegexLexer):
    """flowdsl: normalizing flows (``.flow``) and autoregressive models (``.ar``)."""

    name = "flowdsl"
    aliases: ClassVar[list[str]] = ["flowdsl", "flow", "ar"]
    filenames: ClassVar[list[str]] = ["*.flow", "*.ar"]
    mimetypes: ClassVar[list[str]] = ["text/x-flowdsl"]
    url = "https://github.com/flowdsl/flowdsl"

    tokens: ClassVar[dict] = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (v.LINE_CONTINUATION, Text),
            (v.COMMENT, Comment.Single),
            (v.STRING, String.Double),
            (r"[0-9]+(\.[0-9]+([eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)", Number.Float),
            (r"[0-9]+", Number.Integer),
            (rf"\b({_MODEL})([ \t]+)({v.NAME})(?=[ \t]*\{{)", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"\b({_QUALIFIER})([ \t]+)({v.NAME})", bygroups(Keyword.Type, Whitespace, Name.Builtin)),
            (rf"\b(block)([ \t]+)({v.NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (rf"\b(let)([ \t]+)({v.NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Constant)),
            (rf"\b(input|condition|for)([ \t]+)({v.NAME})", bygroups(Keyword, Whitespace, Name.Variable)),
            # a word before ``=`` is an argument's name, even a keyword's (``pattern=fixed(block=16)``)
            (rf"{v.NAME}(?=[ \t]*=(?!=))", Name.Attribute),
            # ``embed`` before a name is the condition's encoder; elsewhere it is a layer (an .ar ``embed(...)``)
            *[(rf"\b{word}(?=(?:[ \t]|{v.LINE_CONTINUATION})+{after})", Keyword)
              for word, after in v.CONTEXTUAL_KEYWORDS.items()],
            (words(v.reserved_keywords(), prefix=r"\b", suffix=r"\b"), Keyword),
            (rf"{v.NAME}(?=[ \t]*\()", Name.Function),
            (v.NAME, Name),
            (_OPERATORS, Operator),
            (_PUNCTUATION, Punctuation),
            (r".", Error),
        ],
    }

    def analyse_text(text: str) -> float:  # type: ignore[override]  # Pygments calls it unbound
        """How sure the text is flowdsl (a model header is a strong sign)."""
        return 0.8 if re.search(rf"^({_MODEL})[ \t]+{v.NAME}[ \t]*\{{", text, re.M) else 0.0
