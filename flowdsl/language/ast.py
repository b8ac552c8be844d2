"""The abstract syntax tree: frozen, hashable pydantic models, each with its source position.

Built from the Lark parse tree by :mod:`flowdsl.language.syntax`; consumed by
:mod:`flowdsl.language.loader` and :mod:`flowdsl.language.expand`.
Every node has a ``kind`` tag (a discriminated union) and a ``pos``.

Example:
    >>> from flowdsl.language.syntax import parse_program
    >>> prog = parse_program("flow f {\\n  input x: vector[2]\\n  planar\\n}\\n", "f.flow")
    >>> [type(s).__name__ for s in prog.models[0].body]
    ['InputDecl', 'Chain']
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowdsl.errors import Pos

__all__ = [
    "Node", "Number", "String", "Name", "Call", "ListExpr", "RangeExpr", "BinOp", "Neg", "Expr",
    "Argument", "LayerCall", "Chain", "InputDecl", "ConditionDecl", "BaseDecl", "OutputDecl", "Let",
    "Repeat", "ForLoop", "Statement", "Use", "BlockDef", "ModelDef", "Program",
]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    pos: Pos


# ----------------------------------------------------------------------------- expressions
class Number(Node):
    kind: Literal["number"] = "number"
    value: int | float


class String(Node):
    kind: Literal["string"] = "string"
    value: str


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class Argument(Node):
    """One argument of a call: positional (``name`` is None) or keyword."""

    kind: Literal["argument"] = "argument"
    name: str | None = None
    value: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    name: str
    args: tuple[Argument, ...] = ()


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: tuple[Expr, ...] = ()


class RangeExpr(Node):
    """``lo..hi``, inclusive."""

    kind: Literal["range"] = "range"
    lo: Expr
    hi: Expr


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "**"]
    left: Expr
    right: Expr


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


Expr = Annotated[Number | String | Name | Call | ListExpr | RangeExpr | BinOp | Neg, Field(discriminator="kind")]


# ----------------------------------------------------------------------------- statements
class LayerCall(Node):
    """``[coupling|autoregressive] name(args)``: a layer, or a call of a block."""

    kind: Literal["layer_call"] = "layer_call"
    qualifier: str | None = None
    name: str
    args: tuple[Argument, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.qualifier} {self.name}" if self.qualifier else self.name


class Chain(Node):
    """``a -> b -> c``: layers applied in order (a single layer is a chain of one)."""

    kind: Literal["chain"] = "chain"
    calls: tuple[LayerCall, ...]


class InputDecl(Node):
    kind: Literal["input"] = "input"
    name: str
    type_name: str
    type_pos: Pos
    dims: tuple[Expr, ...]
    levels: Expr | None = None


class ConditionDecl(Node):
    """``condition c: vector[K] [levels V] [embed NET(..., out=F)]``."""

    kind: Literal["condition"] = "condition"
    name: str
    type_name: str
    type_pos: Pos
    dims: tuple[Expr, ...]
    levels: Expr | None = None
    embed: LayerCall | None = None


class BaseDecl(Node):
    kind: Literal["base"] = "base"
    dist: LayerCall


class OutputDecl(Node):
    kind: Literal["output"] = "output"
    dist: LayerCall


class Let(Node):
    kind: Literal["let"] = "let"
    name: str
    value: Expr


class Repeat(Node):
    kind: Literal["repeat"] = "repeat"
    count: Expr
    body: tuple[Statement, ...]


class ForLoop(Node):
    kind: Literal["for"] = "for"
    var: str
    iterable: Expr
    body: tuple[Statement, ...]


Statement = Annotated[
    Chain | InputDecl | ConditionDecl | BaseDecl | OutputDecl | Let | Repeat | ForLoop, Field(discriminator="kind")
]


# ----------------------------------------------------------------------------- top level
class Use(Node):
    kind: Literal["use"] = "use"
    path: str


class BlockDef(Node):
    kind: Literal["block"] = "block"
    name: str
    params: tuple[str, ...] = ()
    body: tuple[Statement, ...] = ()


class ModelDef(Node):
    kind: Literal["model"] = "model"
    model_kind: Literal["flow", "autoregressive"]
    name: str
    body: tuple[Statement, ...] = ()


class Program(BaseModel):
    """One parsed file."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    file: str
    items: tuple[Annotated[Use | Let | BlockDef | ModelDef, Field(discriminator="kind")], ...] = ()

    @property
    def models(self) -> list[ModelDef]:
        return [i for i in self.items if isinstance(i, ModelDef)]

    @property
    def blocks(self) -> list[BlockDef]:
        return [i for i in self.items if isinstance(i, BlockDef)]


for _cls in (Argument, Call, ListExpr, RangeExpr, BinOp, Neg, Repeat, ForLoop, BlockDef, ModelDef, Program):
    _cls.model_rebuild()
