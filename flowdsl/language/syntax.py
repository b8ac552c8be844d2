"""Parse tree -> AST: a Lark Transformer that builds frozen :mod:`flowdsl.language.ast` nodes.

Example:
    >>> prog = parse_program("let w = 2 * 32\\nflow f {\\n  input x: vector[4]\\n}\\n", "f.flow")
    >>> prog.items[0].value.op, prog.models[0].name
    ('*', 'f')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from lark import Token, Transformer, Tree
from lark.exceptions import VisitError
from lark.tree import Meta

from flowdsl.errors import Diagnostic, FlowDSLError, Pos, SpecError
from flowdsl.language import ast
from flowdsl.language.parser import file_kind, parse_text, span
from flowdsl.language.values import MAX_INT

__all__ = ["parse_program", "MAX_SOURCE_BYTES", "MAX_NESTING"]

MAX_SOURCE_BYTES = 1_000_000
MAX_NESTING = 200  # parse trees deeper than this are refused (they are walked recursively)


def _binop(op: Literal["+", "-", "*", "/", "**"]) -> Callable[[_ToAST, list[Any], Pos], ast.BinOp]:
    """The rule handler of a binary operator: ``left op right``."""
    def make(self: _ToAST, c: list[Any], pos: Pos) -> ast.BinOp:
        return ast.BinOp(pos=pos, op=op, left=c[0], right=c[1])
    return make


class _ToAST(Transformer):
    """Rule names arrive namespaced by the grammar import (``common__chain``); dispatch on the last part."""

    def __init__(self, filename: str):
        super().__init__()
        self.filename = filename

    def __default__(self, data, children, meta):
        handler = getattr(self, "_" + str(data).rsplit("__", 1)[-1], None)
        if handler is None:  # pragma: no cover - every rule has a handler
            raise SpecError(f"internal: no AST rule for {data}")
        return handler(children, self._pos(meta))

    def _pos(self, meta: Meta) -> Pos:
        if getattr(meta, "empty", True):
            return Pos(self.filename, 0, 0)
        return span(self.filename, meta)

    def _tok_pos(self, tok: Token) -> Pos:
        return span(self.filename, tok)

    # -- top level
    def _start(self, c, pos):
        return ast.Program(file=self.filename, items=tuple(c))

    def _use(self, c, pos):
        return ast.Use(pos=pos, path=_unquote(c[0]))

    def _let(self, c, pos):
        return ast.Let(pos=pos, name=str(c[0]), value=c[1])

    def _params(self, c, pos):
        return tuple(str(t) for t in c)

    def _block_def(self, c, pos):
        return ast.BlockDef(pos=pos, name=str(c[0]), params=c[1] or (), body=c[2])

    def _model(self, c, pos):
        return ast.ModelDef(pos=pos, model_kind=str(c[0]), name=str(c[1]), body=c[2])

    def _body(self, c, pos):
        return tuple(c)

    # -- statements
    def _input_decl(self, c, pos):
        name, (type_name, type_pos, dims), levels = c
        return ast.InputDecl(pos=pos, name=str(name), type_name=type_name, type_pos=type_pos, dims=dims, levels=levels)

    def _condition_decl(self, c, pos):
        name, (type_name, type_pos, dims), levels, embed = c
        return ast.ConditionDecl(pos=pos, name=str(name), type_name=type_name, type_pos=type_pos, dims=dims,
                                 levels=levels, embed=embed)

    def _type_expr(self, c, pos):
        return (str(c[0]), self._tok_pos(c[0]), tuple(c[1:]))

    def _base_decl(self, c, pos):
        return ast.BaseDecl(pos=pos, dist=c[0])

    def _output_decl(self, c, pos):
        return ast.OutputDecl(pos=pos, dist=c[0])

    def _repeat(self, c, pos):
        return ast.Repeat(pos=pos, count=c[0], body=c[1])

    def _for_loop(self, c, pos):
        return ast.ForLoop(pos=pos, var=str(c[0]), iterable=c[1], body=c[2])

    def _chain(self, c, pos):
        return ast.Chain(pos=pos, calls=tuple(c))

    def _layer_call(self, c, pos):
        qualifier, name, args = c
        return ast.LayerCall(pos=pos, qualifier=str(qualifier) if qualifier else None, name=str(name), args=args or ())

    def _arguments(self, c, pos):
        return tuple(a if isinstance(a, ast.Argument) else ast.Argument(pos=a.pos, value=a) for a in c if a is not None)

    def _keyword_arg(self, c, pos):
        return ast.Argument(pos=pos, name=str(c[0]), value=c[1])

    # -- expressions
    def _number(self, c, pos):
        text = str(c[0])
        if text.isdigit():  # (int() refuses more than 4300 digits: check the length first)
            if len(text) > len(str(MAX_INT)) or int(text) > MAX_INT:
                raise SpecError(f"number {_clip(text)} is too large (limit {MAX_INT})", pos)
            value = int(text)
        else:
            value = float(text)
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            raise SpecError(f"number {_clip(text)} is out of range", pos)
        return ast.Number(pos=pos, value=value)

    def _string(self, c, pos):
        return ast.String(pos=pos, value=_unquote(c[0]))

    def _name(self, c, pos):
        return ast.Name(pos=pos, id=str(c[0]))

    def _call(self, c, pos):
        return ast.Call(pos=pos, name=str(c[0]), args=c[1] or ())

    def _list(self, c, pos):
        return ast.ListExpr(pos=pos, items=tuple(x for x in c if x is not None))

    def _range(self, c, pos):
        return ast.RangeExpr(pos=pos, lo=c[0], hi=c[1])

    _add, _sub, _mul, _div, _pow = _binop("+"), _binop("-"), _binop("*"), _binop("/"), _binop("**")

    def _neg(self, c, pos):
        return ast.Neg(pos=pos, operand=c[0])

    def _unary(self, c, pos):  # unary plus
        return c[0]


def _clip(text: str) -> str:
    """A long literal, shortened for a message: its start and its length."""
    return text if len(text) <= 24 else f"{text[:16]}... ({len(text)} characters)"


def _column(text, index: int) -> int:
    """1-based column of ``index`` in ``text`` (str, or bytes decoded leniently)."""
    start = text.rfind(b"\n" if isinstance(text, bytes) else "\n", 0, index) + 1
    part = text[start:index]
    return len(part.decode("utf-8", "replace") if isinstance(part, bytes) else part) + 1


def _check_depth(tree: Tree, filename: str, text: str) -> None:
    """Refuse a parse tree deeper than :data:`MAX_NESTING` (it is walked recursively): at the first place,
    in the text, where it goes too deep."""
    stack, deepest = [(tree, 1)], []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            empty = getattr(meta, "empty", True)
            deepest.append((1, 1, 0, 0) if empty else (meta.line, meta.column, meta.end_line, meta.end_column))
            continue
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    if deepest:
        line, column, end_line, end_column = min(deepest)
        raise FlowDSLError([Diagnostic(Pos(filename, line, column, end_line, end_column), "error",
                                       f"the spec is nested more than {MAX_NESTING} levels deep")], {filename: text})


def _unquote(tok) -> str:
    text = str(tok)[1:-1]
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in text else text


def parse_program(text: str | bytes, filename: str = "<string>") -> ast.Program:
    """Parse a whole file into an :class:`ast.Program`; raise FlowDSLError with positioned diagnostics."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise FlowDSLError([Diagnostic(Pos(filename, line, _column(raw, err.start)), "error",
                                           f"the file is not UTF-8 text (byte {err.start})")]) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    if len(text) > MAX_SOURCE_BYTES:
        raise FlowDSLError([Diagnostic(Pos(filename, 1, 1), "error",
                                       f"the file is too large ({len(text)} characters; limit {MAX_SOURCE_BYTES})")])
    if "\x00" in text:
        at = text.index("\x00")
        line = text[:at].count("\n") + 1
        column = _column(text, at)
        raise FlowDSLError([Diagnostic(Pos(filename, line, column, line, column + 1), "error",
                                       "the file contains a NUL character")])
    tree = parse_text(text, filename, file_kind(filename))
    _check_depth(tree, filename, text)
    try:
        return _ToAST(filename).transform(tree)
    except SpecError as err:  # raised by a rule handler that Lark called without wrapping
        raise FlowDSLError([err.at(Pos(filename, 1, 1))], {filename: text}) from None
    except VisitError as err:
        orig = err.orig_exc
        if isinstance(orig, SpecError):
            raise FlowDSLError([orig.at(Pos(filename, 1, 1))], {filename: text}) from None
        raise
    except RecursionError:
        raise FlowDSLError([Diagnostic(Pos(filename, 1, 1), "error", "the spec is nested too deeply")],
                           {filename: text}) from None
