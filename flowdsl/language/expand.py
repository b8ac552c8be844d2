"""A model's AST -> its declarations and a flat list of bound layers (blocks, repeat, for expanded).

Each expanded layer is a :class:`Site`: the layer spec bound from its call (typed and
range-checked by the registry), its position, and the chain of block calls that led to
it. Problems become diagnostics, with a related note at each block call that led to them;
expansion goes on past them, so that all are reported. Declarations (``input``, ``base``,
...) are checked by :mod:`flowdsl.language.declarations`, whose names are re-exported here.

Example:
    >>> from flowdsl.language.loader import load_source
    >>> import flowdsl.layers
    >>> unit = load_source("flow f {\\n  input x: vector[4]\\n  repeat 2 { permute(reverse) }\\n}\\n", "f.flow")
    >>> header, sites = expand_model(unit, unit.models[0], Limits())
    >>> [s.layer.name for s in sites], header.input.shape
    (['permute', 'permute'], (4,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import networkx as nx

from flowdsl.errors import Diagnostic, Pos, SpecError, trace_notes
from flowdsl.language import ast
from flowdsl.language.declarations import ConditionInfo, Decl, Declarations, Env, InputInfo, ModelHeader, Trace
from flowdsl.language.limits import Limits
from flowdsl.language.loader import Unit
from flowdsl.language.values import Symbol, Value, describe, evaluate
from flowdsl.layers.registry import BASES, LAYERS, Layer, suggest

__all__ = ["Limits", "Site", "InputInfo", "ConditionInfo", "ModelHeader", "expand_model", "block_cycles",
           "MAX_BLOCK_DEPTH"]

MAX_BLOCK_DEPTH = 64


@dataclass(frozen=True)
class Site:
    """One expanded layer: its bound spec, where it was written, and the block calls around it."""

    layer: Layer
    pos: Pos
    trace: Trace = ()  # (block name, call position), outermost first
    arg_pos: tuple[tuple[str, Pos], ...] = ()  # (argument name, position) as written in the call
    #: False where the call says ``reads=false``: the layer does not read the model's condition
    reads: bool = True

    @property
    def key(self) -> str:
        return self.layer.name


def block_cycles(blocks: dict[str, ast.BlockDef]) -> list[list[str]]:
    """Cycles of the block call graph (a block that calls itself, directly or not)."""
    graph = nx.DiGraph()
    for name, block in blocks.items():
        graph.add_node(name)
        for callee in _called_names(block.body):
            if callee in blocks:
                graph.add_edge(name, callee)
    order = {name: i for i, name in enumerate(blocks)}  # definition order, for a stable report
    cycles = []
    for c in nx.simple_cycles(graph):
        start = min(range(len(c)), key=lambda i: order[c[i]])
        cycles.append(c[start:] + c[:start])
    return sorted(cycles, key=lambda c: order[c[0]])


def _called_names(body: Iterable[ast.Statement]) -> set[str]:
    names: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.Chain):
            names.update(c.name for c in stmt.calls if c.qualifier is None)
        elif isinstance(stmt, (ast.Repeat, ast.ForLoop)):
            names |= _called_names(stmt.body)
    return names


class _Expander(Declarations):
    def __init__(self, unit: Unit, model: ast.ModelDef, limits: Limits, recursive: set[str]):
        self.unit = unit
        self.model = model
        self.limits = limits
        self.recursive = recursive
        self.sites: list[Site] = []
        self.diags: list[Diagnostic] = []
        self.decls: dict[str, Decl] = {}
        self.steps = 0
        self.stopped = False

    def error(self, pos: Pos, message: str, hint: str | None = None, trace: Trace = ()) -> None:
        self.diags.append(Diagnostic(pos, "error", message, hint, related=trace_notes(trace)))

    def spec_error(self, err: SpecError, pos: Pos, trace: Trace = ()) -> None:
        notes = trace_notes(trace)
        self.diags.append(err.at(pos, notes))
        for extra in err.extra:  # more problems of the same call: the same block calls led to them
            self.diags.append(dataclasses.replace(extra, related=extra.related + notes) if notes else extra)

    def eval(self, expr: ast.Expr, env: Env, trace: Trace = ()) -> Value | None:
        try:
            return evaluate(expr, env)
        except SpecError as err:
            self.spec_error(err, expr.pos, trace)
            return None

    # -- statements
    def body(self, stmts: Iterable[ast.Statement], env: Env, trace: Trace, top: bool) -> None:
        env = dict(env)
        for stmt in stmts:
            if self.stopped:
                return
            self.steps += 1
            if self.steps > 20 * self.limits.max_layers:
                self.error(stmt.pos, f"the model takes more than {20 * self.limits.max_layers} expansion steps",
                           hint="raise the layer limit if this is intended")
                self.stopped = True
                return
            if isinstance(stmt, ast.Let):
                value = self.eval(stmt.value, env, trace)
                if value is not None:
                    env[stmt.name] = value
            elif isinstance(stmt, (ast.InputDecl, ast.ConditionDecl, ast.BaseDecl, ast.OutputDecl)):
                self.declaration(stmt, env, trace, top)
            elif isinstance(stmt, ast.Repeat):
                self.repeat(stmt, env, trace)
            elif isinstance(stmt, ast.ForLoop):
                self.for_loop(stmt, env, trace)
            elif isinstance(stmt, ast.Chain):
                for call in stmt.calls:
                    self.call(call, env, trace)

    def repeat(self, stmt: ast.Repeat, env: Env, trace: Trace) -> None:
        count = self.eval(stmt.count, env, trace)
        if count is None:
            return
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.error(stmt.count.pos, f"repeat needs a whole number >= 0, got {describe(count)}", trace=trace)
            return
        if count > self.limits.max_layers:
            self.error(stmt.count.pos, f"repeat {count} exceeds the layer limit ({self.limits.max_layers})",
                       trace=trace)
            return
        for _ in range(count):
            before = len(self.diags)
            self.body(stmt.body, env, trace, top=False)
            if len(self.diags) > before or self.stopped:
                return  # report a broken body once, not once per repetition

    def for_loop(self, stmt: ast.ForLoop, env: Env, trace: Trace) -> None:
        values = self.eval(stmt.iterable, env, trace)
        if values is None:
            return
        if not isinstance(values, tuple):
            self.error(stmt.iterable.pos, f"for needs a list, a range or doubling(a, b), got {describe(values)}",
                       trace=trace)
            return
        for v in values:
            before = len(self.diags)
            self.body(stmt.body, {**env, stmt.var: v}, trace, top=False)
            if len(self.diags) > before or self.stopped:
                return

    def call(self, call: ast.LayerCall, env: Env, trace: Trace) -> None:
        if call.qualifier is None and call.name in self.unit.blocks and call.name not in env:
            self.block_call(call, env, trace)
            return
        cls = _layer_kind(call.key)
        if cls is None:
            candidates = [k for k, c in LAYERS.members.items()
                          if issubclass(c, Layer) and self.model.model_kind in c.models]
            candidates += list(self.unit.blocks)
            hint = suggest(call.key, candidates)
            if call.qualifier is None and call.name in env:
                self.error(call.pos, f"'{call.name}' is a constant, not a layer", trace=trace)
                return
            self.error(call.pos, f"unknown layer '{call.key}'", hint=hint or f"'flowdsl layers' lists the layers of "
                       f"{'flows' if self.model.model_kind == 'flow' else 'autoregressive models'}", trace=trace)
            return
        if self.model.model_kind not in cls.models:
            where = "autoregressive models (.ar)" if "autoregressive" in cls.models else "flows (.flow)"
            self.error(call.pos, f"'{call.key}' is a layer of {where}, not of "
                       f"{'flows' if self.model.model_kind == 'flow' else 'autoregressive models'}", trace=trace)
            return
        sym = self.symbol(call, env, trace)
        if sym is None:
            return
        sym, reads = self._reads(sym, trace)
        if reads is None:
            return
        try:
            layer = cast(Layer, LAYERS.bind(sym, call.pos))  # an instance of cls, a Layer
        except SpecError as err:
            if err.hint is None:
                err = err.replace(hint=_constant_hint(err.message, sym, env))
            self.spec_error(err, call.pos, trace)
            return
        if len(self.sites) >= self.limits.max_layers:
            self.error(call.pos, f"the model has more than {self.limits.max_layers} layers (the layer limit)",
                       trace=trace)
            self.stopped = True
            return
        names = list(cls.positional if cls.positional is not None else cls.model_fields)
        arg_pos = tuple(zip(names, sym.arg_pos)) + tuple((k, p) for (k, _), p in zip(sym.kwargs, sym.kwarg_pos))
        self.sites.append(Site(layer=layer, pos=call.pos, trace=trace, arg_pos=arg_pos, reads=reads))

    def _reads(self, sym: Symbol, trace: Trace) -> tuple[Symbol, bool | None]:
        """The call without its ``reads=`` argument (every layer takes it), and its value (None: reported)."""
        if not any(k == "reads" for k, _ in sym.kwargs):
            return sym, True
        kwargs, kwarg_pos, reads = [], [], True
        for (k, v), p in zip(sym.kwargs, sym.kwarg_pos):
            if k != "reads":
                kwargs.append((k, v))
                kwarg_pos.append(p)
            elif not isinstance(v, bool):
                self.error(p, f"reads must be true or false (whether the layer reads the condition), got "
                           f"{describe(v)}", trace=trace)
                return sym, None
            else:
                reads = v
        return Symbol(sym.name, sym.args, tuple(kwargs), sym.pos, sym.arg_pos, tuple(kwarg_pos)), reads

    def symbol(self, call: ast.LayerCall, env: Env, trace: Trace) -> Symbol | None:
        args: list[Value | None] = []
        kwargs: list[tuple[str, Value | None]] = []
        arg_pos: list[Pos] = []
        kwarg_pos: list[Pos] = []
        ok = True
        seen: set[str] = set()
        for a in call.args:
            value = self.eval(a.value, env, trace)
            ok = ok and value is not None
            if a.name is None:
                args.append(value)
                arg_pos.append(a.pos)
            else:
                if a.name in seen:
                    self.error(a.pos, f"argument '{a.name}' given twice", trace=trace)
                    ok = False
                seen.add(a.name)
                kwargs.append((a.name, value))
                kwarg_pos.append(a.pos)
        if not ok:
            return None
        return Symbol(call.key, tuple(args), tuple(kwargs), call.pos, tuple(arg_pos), tuple(kwarg_pos))

    def block_call(self, call: ast.LayerCall, env: Env, trace: Trace) -> None:
        block = self.unit.blocks[call.name]
        if call.name in self.recursive:
            return  # reported once, at the block definition
        if len(trace) >= MAX_BLOCK_DEPTH:
            self.error(call.pos, f"blocks nested more than {MAX_BLOCK_DEPTH} deep", trace=trace)
            return
        sym = self.symbol(call, env, trace)
        if sym is None:
            return
        if len(sym.args) > len(block.params):
            self.error(call.pos, f"block '{block.name}' takes {len(block.params)} argument"
                       f"{'s' if len(block.params) != 1 else ''} ({', '.join(block.params) or 'none'}); "
                       f"{len(sym.args)} given", trace=trace)
            return
        bound = dict(zip(block.params, sym.args))
        for (key, value), p in zip(sym.kwargs, sym.kwarg_pos):
            if key not in block.params:
                self.error(p, f"block '{block.name}' has no parameter '{key}'", hint=suggest(key, block.params),
                           trace=trace)
                return
            if key in bound:
                self.error(p, f"parameter '{key}' of block '{block.name}' given twice", trace=trace)
                return
            bound[key] = value
        missing = [p for p in block.params if p not in bound]
        if missing:
            self.error(call.pos, f"block '{block.name}' needs parameter{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(repr(m) for m in missing)}", trace=trace)
            return
        self.body(block.body, {**self.unit.constants, **bound}, trace + ((block.name, call.pos),), top=False)


def _layer_kind(key: str) -> type[Layer] | None:
    """The layer kind registered in LAYERS under ``key`` (None: no layer of that name)."""
    cls = LAYERS.get(key)
    return cls if cls is not None and issubclass(cls, Layer) else None


def _bare_names(value: Value) -> list[str]:
    if isinstance(value, tuple):
        return [n for v in value for n in _bare_names(v)]
    if isinstance(value, Symbol):
        inner = [n for v in value.args for n in _bare_names(v)] + [n for _, v in value.kwargs for n in _bare_names(v)]
        return inner if (value.args or value.kwargs) else [value.name]
    return []


def _constant_hint(message: str, sym: Symbol, env: Env) -> str | None:
    """"did you mean 'width'?" when an argument names a misspelt constant."""
    for name in _bare_names(sym.args) + _bare_names(tuple(v for _, v in sym.kwargs)):
        if name in message:
            hint = suggest(name, [k for k, v in env.items() if not isinstance(v, Symbol)])
            if hint:
                return hint
    return None


def expand_model(unit: Unit, model: ast.ModelDef, limits: Limits,
                 recursive: set[str] | None = None) -> tuple[ModelHeader, list[Site]]:
    """Expand one model: ``(ModelHeader, [Site, ...])``; diagnostics go to ``unit.diagnostics``."""
    ex = _Expander(unit, model, limits, recursive or set())
    ex.body(model.body, dict(unit.constants), (), top=True)
    decls = {k: v.value for k, v in ex.decls.items()}
    declared = any(isinstance(stmt, ast.InputDecl) for stmt in model.body)  # an invalid one was reported already
    if "input" not in decls and not declared and not any(d.message.startswith(("unknown input", "input"))
                                                         for d in ex.diags):
        if not any(d.severity == "error" and "size" in d.message for d in ex.diags):
            ex.error(model.pos, f"model '{model.name}' declares no input", hint="e.g. 'input x: vector[2]'")
    base = decls.get("base")
    if model.model_kind == "flow" and base is None:
        base = BASES.bind("normal")
    if getattr(base, "conditional", False) and "condition" not in decls \
            and not any(isinstance(stmt, ast.ConditionDecl) for stmt in model.body):  # (an invalid one: reported)
        ex.error(ex.conditional_base_pos or model.pos,
                 f"base {getattr(base, 'name', '')}(conditional=true) reads the model's condition, but model "
                 f"'{model.name}' declares none",
                 hint="declare one (e.g. 'condition c: vector[4]') or drop conditional=true")
    header = ModelHeader(
        name=model.name, kind=model.model_kind, pos=model.pos, file=unit.main,
        input=decls.get("input"), condition=decls.get("condition"), base=base, output=decls.get("output"),
    )
    unit.diagnostics.extend(ex.diags)
    return header, ex.sites
