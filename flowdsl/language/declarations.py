"""A model's declarations: ``input``, ``condition``, ``base`` and ``output``, checked and bound.

:class:`ModelHeader` is what the rest of the compiler learns from them (the input's type,
shape and levels, the label condition, the base density of a flow or the output
distribution of an autoregressive model). The checks live in :class:`Declarations`, the
part of the expander (:mod:`flowdsl.language.expand`) that handles declaration statements:
it states, as annotated attributes and abstract methods, what it needs from that expander.

Example:
    >>> from flowdsl.language.loader import load_source
    >>> from flowdsl.language.expand import Limits, expand_model
    >>> unit = load_source("flow f {\\n  input x: image[1, 4, 4] levels 2\\n  input y: vector[2]\\n}\\n", "f.flow")
    >>> header, _ = expand_model(unit, unit.models[0], Limits())
    >>> header.input.type_name, header.input.shape, header.input.levels
    ('image', (1, 4, 4), 2)
    >>> [d.message for d in unit.diagnostics]
    ["'input' is declared twice (first at f.flow:2:3)"]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from flowdsl.errors import Pos, SpecError
from flowdsl.language import ast
from flowdsl.language.conditions import (
    CONDITION_SIZES,
    CONDITION_TYPES,
    MAX_LEVELS,
    ConditionInfo,
    check_embed_out,
    raw_size,
    split_embed_out,
)
from flowdsl.language.limits import Limits
from flowdsl.language.values import Symbol, Value, describe
from flowdsl.layers.registry import BASES, NETS, OUTPUTS, Spec, suggest

__all__ = ["InputInfo", "ConditionInfo", "ModelHeader", "Declarations", "INPUT_TYPES", "CONDITION_TYPES"]


INPUT_TYPES = {"vector": 1, "image": 3, "sequence": 1, "video": 4}  # type name -> number of sizes

#: the block calls that led to a statement: (block name, call position), outermost first
Trace = tuple[tuple[str, Pos], ...]
Env = Mapping[str, Value]


@dataclass(frozen=True)
class InputInfo:
    name: str
    type_name: str
    shape: tuple[int, ...]
    levels: int | None
    pos: Pos


@dataclass(frozen=True)
class ModelHeader:
    """A model's declarations."""

    name: str
    kind: str  # "flow" | "autoregressive"
    pos: Pos
    file: str
    input: InputInfo | None = None
    condition: ConditionInfo | None = None
    base: Spec | None = None
    output: Spec | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decl:
    """One accepted declaration: where it was written, and what it declares."""

    pos: Pos
    value: Any


class Declarations(ABC):
    """Declaration statements, for the expander that inherits this.

    The expander sets ``model``, ``limits`` and ``decls`` (kind -> :class:`Decl`, filled here), and
    implements ``error``, ``spec_error``, ``eval`` and ``symbol``.
    """

    model: ast.ModelDef
    limits: Limits
    decls: dict[str, Decl]
    #: where a base's ``conditional=true`` was written (for the error when the model declares no condition)
    conditional_base_pos: Pos | None = None

    @abstractmethod
    def error(self, pos: Pos, message: str, hint: str | None = None, trace: Trace = ()) -> None:
        """Report an error at ``pos``."""

    @abstractmethod
    def spec_error(self, err: SpecError, pos: Pos, trace: Trace = ()) -> None:
        """Report a SpecError (and the problems it carries) at ``pos``."""

    @abstractmethod
    def eval(self, expr: ast.Expr, env: Env, trace: Trace = ()) -> Value | None:
        """The value of ``expr``, or None when it is reported as wrong."""

    @abstractmethod
    def symbol(self, call: ast.LayerCall, env: Env, trace: Trace) -> Symbol | None:
        """The call with its arguments evaluated, or None when one of them is wrong."""

    def declaration(self, stmt: ast.InputDecl | ast.ConditionDecl | ast.BaseDecl | ast.OutputDecl, env: Env,
                    trace: Trace, top: bool) -> None:
        what = stmt.kind
        if not top:
            self.error(stmt.pos, f"'{what}' declarations belong directly in the model, not in a block or loop",
                       trace=trace)
            return
        if what in self.decls:
            self.error(stmt.pos, f"'{what}' is declared twice (first at {self.decls[what].pos})")
            return
        info: InputInfo | ConditionInfo | Spec | None
        if isinstance(stmt, ast.InputDecl):
            info = self.input_decl(stmt, env)
        elif isinstance(stmt, ast.ConditionDecl):
            info = self.condition_decl(stmt, env)
        else:
            family = BASES if isinstance(stmt, ast.BaseDecl) else OUTPUTS
            if isinstance(stmt, ast.BaseDecl) and self.model.model_kind != "flow":
                self.error(stmt.pos, "'base' declares the base density of a flow; autoregressive models use 'output'")
                return
            if isinstance(stmt, ast.OutputDecl) and self.model.model_kind != "autoregressive":
                self.error(stmt.pos, "'output' declares the distribution of an autoregressive model; flows use 'base'")
                return
            sym = self.symbol(stmt.dist, env, trace)
            if sym is None:
                return
            try:
                info = family.bind(sym, stmt.dist.pos)
            except SpecError as err:
                self.spec_error(err, stmt.dist.pos)
                return
            if isinstance(stmt, ast.BaseDecl) and getattr(info, "conditional", False):
                # where 'conditional' was written (keyword or positional), for the error when no condition exists
                fields = list(type(info).positional or type(info).model_fields)
                where = dict(zip((k for k, _ in sym.kwargs), sym.kwarg_pos)).get("conditional")
                if where is None and "conditional" in fields and fields.index("conditional") < len(sym.arg_pos):
                    where = sym.arg_pos[fields.index("conditional")]
                self.conditional_base_pos = where or stmt.dist.pos
        if info is not None:
            self.decls[what] = Decl(stmt.pos, info)

    def _dims(self, dims: tuple[ast.Expr, ...], env: Env, type_name: str, type_pos: Pos,
              expected: int, hint: str | None = None) -> tuple[int, ...] | None:
        if len(dims) != expected:
            hint = hint or {1: f"{type_name}[N]", 3: "image[C, H, W]", 4: "video[T, C, H, W]"}.get(expected)
            self.error(type_pos, f"{type_name} takes {expected} size{'s' if expected > 1 else ''}, got {len(dims)}",
                       hint=hint)
            return None
        out: list[int] = []
        for d in dims:
            v = self.eval(d, env)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                self.error(d.pos, f"a size must be a whole number >= 1, got {describe(v)}")
                return None
            out.append(v)
        return tuple(out)

    def input_decl(self, stmt: ast.InputDecl, env: Env) -> InputInfo | None:
        if stmt.type_name not in INPUT_TYPES:
            self.error(stmt.type_pos, f"unknown input type '{stmt.type_name}'",
                       hint=suggest(stmt.type_name, INPUT_TYPES) or f"types: {', '.join(INPUT_TYPES)}")
            return None
        shape = self._dims(stmt.dims, env, stmt.type_name, stmt.type_pos, INPUT_TYPES[stmt.type_name])
        if shape is None:
            return None
        if prod(shape) > self.limits.max_input_size:
            self.error(stmt.pos, f"the input has {prod(shape)} elements (limit {self.limits.max_input_size})")
            return None
        levels: int | None = None
        if stmt.levels is not None:
            value = self.eval(stmt.levels, env)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 2**24:
                self.error(stmt.levels.pos, f"levels must be a whole number from 2 to {2**24}, got {describe(value)}")
                return None
            levels = value
        return InputInfo(stmt.name, stmt.type_name, shape, levels, stmt.pos)

    def condition_decl(self, stmt: ast.ConditionDecl, env: Env) -> ConditionInfo | None:
        kind = stmt.type_name
        if kind not in CONDITION_SIZES:
            self.error(stmt.type_pos, f"unknown condition type '{kind}'",
                       hint=suggest(kind, CONDITION_TYPES) or f"conditions: {', '.join(CONDITION_TYPES)}")
            return None
        sizes = CONDITION_SIZES[kind]
        hint = "sequence[L] or sequence[L, C]" if kind == "sequence" else None
        if len(stmt.dims) not in sizes:
            self.error(stmt.type_pos, f"{kind} takes {' or '.join(map(str, sizes))} size{'s' if max(sizes) > 1 else ''}"
                       f", got {len(stmt.dims)}", hint=hint or {1: f"{kind}[N]", 3: "image[C, H, W]"}[sizes[0]])
            return None
        dims = self._dims(stmt.dims, env, kind, stmt.type_pos, len(stmt.dims))
        if dims is None:
            return None
        levels: int | None = None
        if kind == "label":
            if dims[0] < 2:
                self.error(stmt.dims[0].pos, f"a label condition needs at least 2 classes, got {dims[0]}")
                return None
            if stmt.levels is not None:
                self.error(stmt.levels.pos, "a label's classes are its size, label[K]: it takes no levels")
                return None
            levels, dims = dims[0], ()
        elif stmt.levels is not None:
            value = self.eval(stmt.levels, env)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_LEVELS:
                self.error(stmt.levels.pos, f"levels must be a whole number from 2 to {MAX_LEVELS}, got "
                           f"{describe(value)}")
                return None
            levels = value
        if raw_size(kind, dims, levels) > self.limits.max_input_size:
            flag = self.limits.flag("max_input_size")
            self.error(stmt.pos, f"the condition has {raw_size(kind, dims, levels)} numbers once encoded (limit "
                       f"{self.limits.max_input_size})", hint=f"raise the limit with {flag}")
            return None
        info = ConditionInfo(stmt.name, kind, dims, levels, stmt.pos)
        if stmt.embed is None:
            return info
        return self._embedded(info, stmt.embed, env)

    def _embedded(self, info: ConditionInfo, call: ast.LayerCall, env: Env) -> ConditionInfo | None:
        """The condition with its context encoder, ``embed NET(..., out=F)``, bound and checked."""
        if call.qualifier is not None:
            self.error(call.pos, f"'{call.key}' is a layer, not a net: embed takes a net such as mlp([64], out=16)")
            return None
        sym = self.symbol(call, env, ())
        if sym is None:
            return None
        net_sym, out, out_pos = split_embed_out(sym)
        try:
            out_value = check_embed_out(out, call.pos, out_pos)
            net = NETS.bind(net_sym, call.pos)
            with_net = ConditionInfo(info.name, info.type_name, info.shape, info.levels, info.pos, net, out_value,
                                     call.pos)
            net_in, net_out = with_net.net_shapes
            net.validate_io(net_in, net_out)  # type: ignore[attr-defined]
            params = with_net.embed_params
        except SpecError as err:
            self.spec_error(err, call.pos)
            return None
        if params > self.limits.max_params:
            self.error(call.pos, f"the embed net has {params:,} parameters (limit {self.limits.max_params:,})",
                       hint=f"raise the limit with {self.limits.flag('max_params')}")
            return None
        return with_net
