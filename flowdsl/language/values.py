"""Values of evaluated expressions, and the evaluator for constant expressions.

A value is an ``int``, ``float``, ``str``, ``bool``, a ``tuple`` of values (a list or
range), or a :class:`Symbol`: a bare name or a call such as ``half``, ``checkerboard(0)``
or ``mlp([64, 64])``, which the registry later binds to a typed spec.

Example:
    >>> from flowdsl.language.syntax import parse_program
    >>> let = parse_program("let w = [2 ** 3, 1..3]\\n", "c.flow").items[0]
    >>> evaluate(let.value, {})
    (8, (1, 2, 3))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowdsl.errors import Pos, SpecError
from flowdsl.language import ast

__all__ = ["Symbol", "Value", "evaluate", "describe", "MAX_INT", "MAX_LIST"]

MAX_INT = 2**53
MAX_LIST = 100_000


@dataclass(frozen=True)
class Symbol:
    """A bare name or a call that is not a constant: bound later to a layer, net, mask, ..."""

    name: str
    args: tuple = ()
    kwargs: tuple = ()  # ((name, value), ...)
    pos: Pos = field(default=Pos(), compare=False)
    arg_pos: tuple = field(default=(), compare=False)  # one Pos per positional arg
    kwarg_pos: tuple = field(default=(), compare=False)  # one Pos per keyword arg

    def __str__(self) -> str:
        parts = [describe(a) for a in self.args] + [f"{k}={describe(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


Value = int | float | str | bool | tuple | Symbol


def describe(value: Value) -> str:
    """Spec-like text for a value (for messages and reports)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    return str(value)


def _number(value: Value, pos: Pos, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{what} needs a number, got {describe(value)}", pos)
    return value


def _whole(value: Value) -> int | None:
    """``value`` if it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _checked(value: int | float, pos: Pos) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError("arithmetic result is not a finite number", pos)
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpecError(f"number too large (limit {MAX_INT})", pos)
    return value


def _binop(op: str, left: Value, right: Value, pos: Pos) -> int | float:
    a = _number(left, pos, f"'{op}'")
    b = _number(right, pos, f"'{op}'")
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                raise SpecError("division by zero", pos)
            if isinstance(a, int) and isinstance(b, int) and a % b == 0:
                return a // b
            return a / b
        if op == "**":
            if a == 0 and b < 0:
                raise SpecError("division by zero (0 to a negative power)", pos)
            # log2 of the result's magnitude decides, before computing it: whole results stay below 2**64,
            # fractional ones within a float's range; one that would round to 0 is an underflow, not 0.0
            scale = b * math.log2(abs(a)) if a != 0 and abs(a) != 1 else 0.0
            whole = isinstance(a, int) and isinstance(b, int) and b >= 0
            if scale > (64 if whole else 1023):
                raise SpecError(f"number too large ({describe(a)} ** {describe(b)})", pos)
            if scale < -1074:
                raise SpecError(f"number too small ({describe(a)} ** {describe(b)} underflows to 0; "
                                f"the smallest is about 5e-324)", pos)
            result: int | float | complex = a**b
            if isinstance(result, complex):
                raise SpecError("a negative number to a fractional power is not a real number", pos)
            return result
    except OverflowError:
        raise SpecError("number too large", pos) from None
    raise SpecError(f"unknown operator {op}", pos)  # pragma: no cover


def doubling(first: Value, last: Value, pos: Pos) -> tuple[int, ...]:
    """``doubling(a, b)``: a, 2a, 4a, ... up to b (inclusive)."""
    lo = _number(first, pos, "doubling")
    hi = _number(last, pos, "doubling")
    if not isinstance(lo, int) or not isinstance(hi, int) or lo < 1:
        raise SpecError(f"doubling(a, b) needs whole numbers with a >= 1, got doubling({lo}, {hi})", pos)
    out: list[int] = []
    v = lo
    while v <= hi:
        out.append(v)
        v *= 2
    return tuple(out)


def evaluate(expr: ast.Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate a constant expression; names not bound in ``env`` become Symbols."""
    if isinstance(expr, ast.Number):
        return expr.value
    if isinstance(expr, ast.String):
        return expr.value
    if isinstance(expr, ast.Name):
        if expr.id in env:
            return env[expr.id]
        if expr.id in ("true", "false"):
            return expr.id == "true"
        return Symbol(expr.id, pos=expr.pos)
    if isinstance(expr, ast.ListExpr):
        if len(expr.items) > MAX_LIST:
            raise SpecError(f"list too long (limit {MAX_LIST})", expr.pos)
        return tuple(evaluate(i, env) for i in expr.items)
    if isinstance(expr, ast.RangeExpr):
        lo_value, hi_value = evaluate(expr.lo, env), evaluate(expr.hi, env)
        lo, hi = _whole(lo_value), _whole(hi_value)
        if lo is None or hi is None:
            raise SpecError(f"a range needs whole numbers, got {describe(lo_value)}..{describe(hi_value)}", expr.pos)
        if hi - lo + 1 > MAX_LIST:
            raise SpecError(f"range too long (limit {MAX_LIST})", expr.pos)
        return tuple(range(lo, hi + 1))
    if isinstance(expr, ast.BinOp):
        return _checked(_binop(expr.op, evaluate(expr.left, env), evaluate(expr.right, env), expr.pos), expr.pos)
    if isinstance(expr, ast.Neg):
        return -_number(evaluate(expr.operand, env), expr.pos, "'-'")
    if isinstance(expr, ast.Call):
        args = [a for a in expr.args if a.name is None]
        kwargs = [a for a in expr.args if a.name is not None]
        if expr.name == "doubling" and "doubling" not in env:
            if len(args) != 2 or kwargs:
                raise SpecError("doubling(a, b) takes two numbers", expr.pos)
            return doubling(evaluate(args[0].value, env), evaluate(args[1].value, env), expr.pos)
        if expr.name in env:
            raise SpecError(f"'{expr.name}' is a constant, not something to call", expr.pos)
        seen = set()
        for a in kwargs:
            if a.name in seen:
                raise SpecError(f"argument '{a.name}' given twice", a.pos)
            seen.add(a.name)
        return Symbol(
            expr.name,
            args=tuple(evaluate(a.value, env) for a in args),
            kwargs=tuple((a.name, evaluate(a.value, env)) for a in kwargs),
            pos=expr.pos,
            arg_pos=tuple(a.pos for a in args),
            kwarg_pos=tuple(a.pos for a in kwargs),
        )
    raise SpecError(f"internal: cannot evaluate {type(expr).__name__}", expr.pos)  # pragma: no cover
