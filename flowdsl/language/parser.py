"""Text -> Lark parse tree, with syntax errors turned into positioned diagnostics.

The grammars live in ``grammars/`` (shipped as ``flowdsl.grammars``): ``common.lark``
holds the language, ``flow.lark`` and ``ar.lark`` pick the model keyword of their
file type. Parsers are LALR, built once per file type and cached.

Example:
    >>> tree = parse_text("flow f {\\n  input x: vector[2]\\n  planar\\n}\\n", "f.flow")
    >>> tree.data
    Token('RULE', 'start')
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["parse_text", "file_kind", "get_parser", "span", "MAX_TOKENS", "MAX_NAME"]

MAX_TOKENS = 100_000  # bounds the parse time of any file
MAX_NAME = 256  # characters in a name


def span(filename: str, item: Token | Meta) -> Pos:
    """The span of a token or of a rule's meta in ``filename``; a position Lark does not know is 0."""
    return Pos(filename, item.line or 0, item.column or 0, item.end_line or 0, item.end_column or 0)


def _offset(err: UnexpectedInput) -> int:
    """Where in the text a lexer error stopped (Lark declares ``pos_in_stream`` as None; lexers set an int)."""
    return err.pos_in_stream or 0


def file_kind(filename: str) -> str:
    """The grammar a file uses: ``"ar"`` for ``*.ar`` files, ``"flow"`` otherwise."""
    return "ar" if str(filename).endswith(".ar") else "flow"


class _BracketNewlines:
    """Post-lexer: inside ( ) and [ ] a line break is not a statement separator."""

    # The contextual lexer must offer the separator in every state, so that this
    # post-lexer sees it (and drops it) even where the parser would not take it.
    always_accept = ("_common__SEP",)

    def process(self, stream):
        depth = 0
        for count, tok in enumerate(stream):
            if count >= MAX_TOKENS or (tok.type.endswith("NAME") and len(tok.value) > MAX_NAME):
                _too_long(tok, count >= MAX_TOKENS)
            if tok.value in ("(", "["):
                depth += 1
            elif tok.value in (")", "]"):
                depth = max(depth - 1, 0)
            elif depth and tok.type.endswith("_SEP") and ";" not in tok.value:
                continue
            yield tok


def _too_long(tok: Token, tokens: bool) -> None:
    if tokens:
        msg = f"the spec has more than {MAX_TOKENS:,} tokens (words, numbers and symbols)"
    else:
        msg = f"name '{tok.value[:16]}...' is {len(tok.value):,} characters long (limit {MAX_NAME})"
    raise _Refused(msg, tok)


class _Refused(Exception):
    """Raised by the post-lexer for input too large to parse; parse_text turns it into a diagnostic."""

    def __init__(self, message: str, tok: Token):
        super().__init__(message)
        self.message, self.tok = message, tok


@cache
def get_parser(kind: str) -> Lark:
    """The cached LALR parser for ``kind`` ("flow" or "ar")."""
    grammar_dir = resources.files("flowdsl.grammars")
    path = Path(str(grammar_dir.joinpath(f"{kind}.lark")))
    return Lark.open(
        str(path),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_BracketNewlines(),
        import_paths=[str(path.parent)],
    )


# Terminal names as Lark prints them, turned into words a user recognises.
_TOKEN_WORDS = {
    "RPAR": "')'", "LPAR": "'('", "RSQB": "']'", "LSQB": "'['", "RBRACE": "'}'", "LBRACE": "'{'",
    "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "SEP": "a new line or ';'", "$END": "end of file", "MODEL_KW": "a model keyword",
}


def _word(term: str) -> str:
    for key, word in _TOKEN_WORDS.items():
        if term == key or term.endswith("__" + key) or term.endswith(key) and key == "SEP":
            return word
    return term.lower()


# Snippets whose parser state stands for one kind of mistake (Lark's match_examples).
_EXAMPLES = {
    "missing ')' to close the argument list": ["flow f {\n a(1\n}", "flow f {\n a(x=1, b=2\n}", "flow f {\n a(b(1)\n}"],
    "missing ']' to close the list": ["flow f {\n a([1, 2)\n}", "let x = [1, 2\n"],
    "missing '}' to close the body": ["flow f {\n a\n", "block b() {\n a\n", "flow f {\n repeat 2 {\n a\n}\n"],
    "missing '{' after the model name": ["flow f\n a\n}", "autoregressive f\n a\n}"],
    "missing value after '='": ["flow f {\n a(x=)\n}", "let x =\n"],
    "two statements on one line: separate them with a new line or ';'": ["flow f {\n a b c\n}", "flow f {\n a(1) b\n}"],
    "a model starts with 'flow NAME {' in .flow files or 'autoregressive NAME {' in .ar files": [
        "f {\n a\n}", "model f {\n a\n}"],
    "missing ':' and a type in the input declaration (e.g. 'input x: vector[4]')": ["flow f {\n input x vector[2]\n}"],
    "missing '[' with sizes after the type (e.g. 'vector[4]')": ["flow f {\n input x: vector\n}"],
}


def _innermost_open_bracket(text: str, upto: int) -> str | None:
    """The innermost '(' or '[' still open at offset ``upto`` (strings and comments skipped)."""
    stack: list[str] = []
    i = 0
    while i < min(upto, len(text)):
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack and stack[-1] in "([" else None


def _syntax_message(err: UnexpectedInput, parser: Lark, text: str, kind: str) -> tuple[str, Token | None]:
    """The message, and the token it is about when that is not the offending one (None: the offending one)."""
    if isinstance(err, UnexpectedCharacters):
        at = _offset(err)
        ch = text[at] if at < len(text) else ""
        return f"unexpected character {ch!r}", None
    if not isinstance(err, UnexpectedToken):
        return "unexpected end of file", None
    tok = err.token
    expected = {t.rsplit("__", 1)[-1] for t in err.expected}
    found = "end of file" if tok.type == "$END" else (
        "line break" if tok.type.endswith("_SEP") else repr(str(tok.value)))
    other = "autoregressive" if kind == "flow" else "flow"
    if "MODEL_KW" in expected and tok.value == other:
        ext = ".ar" if other == "autoregressive" else ".flow"
        return f"'{other}' models belong in {ext} files (this is a .{kind} file)", None
    history = list(getattr(err, "token_history", None) or [])
    prev = history[-1] if history else None
    if tok.type.endswith("NAME") and prev is not None and prev.type.endswith("NAME"):
        close = difflib.get_close_matches(str(prev.value), ["coupling", "autoregressive"], n=1, cutoff=0.6)
        if close:  # point at the misspelt word
            return (f"unknown layer family '{prev.value}' before '{tok.value}'; "
                    f"did you mean '{close[0]} {tok.value}'?"), prev
    closing = tok.type == "$END" or tok.value in ("}", "{") or tok.type.endswith(("_SEP", "MODEL_KW", "NAME"))
    opener = _innermost_open_bracket(text, getattr(tok, "start_pos", None) or len(text))
    if opener is not None and closing and ("RPAR" if opener == "(" else "RSQB") in expected:
        anchor = None
        if prev is not None and tok.type != "$END" and prev.type.endswith("_SEP"):
            anchor = prev  # the end of the line that lacks it
        what = "')' to close the argument list" if opener == "(" else "']' to close the list"
        return f"missing {what} (found {found})", anchor
    try:
        label = err.match_examples(parser.parse, _EXAMPLES, use_accepts=True)
    except Exception:  # match_examples replays the parser; an exotic state may defeat it
        label = None
    if label:
        return f"{label} (found {found})", None
    words = sorted({_word(t) for t in expected if not t.startswith(("__", "ANON")) and "anon" not in t.lower()})
    if words and len(words) <= 6:
        return f"unexpected {found}; expected {', '.join(words)}", None
    return f"unexpected {found}", None


def _token_end(tok: Token | None, line: int, column: int) -> tuple[int, int]:
    """Where ``tok`` ends, when the diagnostic points at its start and it is a token of the text (else 0, 0)."""
    if tok is None or tok.type == "$END" or tok.type.endswith("_SEP") or (tok.line, tok.column) != (line, column):
        return 0, 0
    return tok.end_line or 0, tok.end_column or 0


def parse_text(text: str, filename: str = "<string>", kind: str | None = None) -> Tree:
    """Parse ``text`` with the grammar of its file type; raise FlowDSLError on a syntax error."""
    kind = kind or file_kind(filename)
    parser = get_parser(kind)
    if not text.endswith("\n"):
        text += "\n"
    try:
        return parser.parse(text)
    except _Refused as err:
        start = span(filename, err.tok)
        pos = Pos(filename, start.line, start.column, *_token_end(err.tok, start.line, start.column))
        raise FlowDSLError([Diagnostic(pos=pos, severity="error", message=err.message)], {filename: text}) from None
    except UnexpectedInput as err:
        line, column = getattr(err, "line", 0), getattr(err, "column", 0)
        if isinstance(err, UnexpectedToken) and err.token.type == "$END":
            lines = text[:-1].split("\n")  # lines as Lark counts them (str.splitlines also splits at \r, \f, ...)
            line, column = len(lines), len(lines[-1]) + 1
        if isinstance(err, UnexpectedToken) and err.token.type.endswith("_SEP") and err.token.value[:1] != ";":
            # Point at the end of the line rather than at the start of the next one.
            line = err.token.line
            column = err.token.column
        try:
            msg, anchor = _syntax_message(err, parser, text, kind)
        except Exception:  # the message is a nicety; a bad spec must never end in a traceback
            msg, anchor = "syntax error", None
        if msg.startswith(("unknown layer family", "missing ')'", "missing ']'")):
            line, column = (anchor.line, anchor.column) if anchor is not None else (err.line, err.column)
        line, column = max(line, 1), max(column, 1)
        if isinstance(err, UnexpectedToken):
            end = _token_end(anchor or err.token, line, column)
        elif isinstance(err, UnexpectedCharacters) and text[_offset(err):_offset(err) + 1] not in ("", "\n"):
            end = (line, column + 1)  # the one character the lexer refused
        else:
            end = (0, 0)
        diag = Diagnostic(pos=Pos(filename, line, column, *end), severity="error", message=msg)
        raise FlowDSLError([diag], {filename: text}) from None
