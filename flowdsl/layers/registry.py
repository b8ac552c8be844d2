"""The registry: the single place where a layer (or a net, mask, distribution, ...) is added.

A *spec* is a frozen pydantic model of one call's arguments: ``coupling affine(mask=half,
net=mlp([64]))`` binds to ``AffineCoupling(mask=HalfMask(), net=MLP(hidden=(64,)))``.
Specs are grouped in :class:`Family` objects (layers, nets, masks, bases, outputs, ...);
a family binds a :class:`~flowdsl.language.values.Symbol` to the member of that name, with
positional arguments, "did you mean" suggestions and positioned errors.

A layer kind is a :class:`Layer` subclass registered in :data:`LAYERS`; it declares

- its argument schema (the pydantic fields),
- ``infer(ctx) -> LayerInfo``: the shape rule, parameter count, log-det kind and
  declared dependency structure (a :class:`~flowdsl.layers.structure.Dependency`), raising
  :class:`~flowdsl.errors.SpecError` on a shape or invertibility violation,
- ``check(ctx, info) -> list[Finding]``: extra warnings and notes (optional),
- ``runtime``: ``"module:callable"`` of the torch builder, imported only by the compiler.

Example:
    >>> from flowdsl.language.values import Symbol
    >>> import flowdsl.layers
    >>> layer = LAYERS.bind(Symbol("permute", args=(Symbol("reverse"),)))
    >>> type(layer).__name__, layer.order.name
    ('PermuteSpec', 'reverse')
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import NoInfoValidatorFunction

from flowdsl.errors import Pos, SpecError
from flowdsl.language.limits import Limits
from flowdsl.language.values import Symbol, describe
from flowdsl.layers.facts import CausalFacts, ContextShape, Finding, LayerInfo, LogdetKind, OutputHead, SinkInfo

__all__ = [
    "Spec", "Family", "Layer", "LayerContext", "LayerInfo", "CausalFacts", "SinkInfo", "OutputHead", "Finding",
    "ContextShape", "LogdetKind", "LAYERS", "NETS", "BASES", "OUTPUTS",
    "Word", "choice", "symbolic", "suggest", "PositiveInt", "NonNegativeInt", "Seed", "seed32", "Bit",
    "register_layer",
    "bind_spec",
]


def suggest(name: str, candidates) -> str | None:
    """A "did you mean" hint for a misspelt ``name``."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class Spec(BaseModel):
    """Base of every bindable spec: frozen, no unknown fields, a ``kind`` name."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    #: the name used in specs (``"mlp"``, ``"coupling affine"``)
    name: ClassVar[str] = ""
    #: fields that may be given positionally, in order (default: every field, in declaration order)
    positional: ClassVar[tuple[str, ...] | None] = None

    def describe(self) -> str:
        """Spec-like text with the arguments that differ from their defaults: ``mlp(hidden=[32])``."""
        parts = []
        for key, info in type(self).model_fields.items():
            value = getattr(self, key)
            if not info.is_required() and value == info.get_default(call_default_factory=True):
                continue  # defaults are not repeated
            if isinstance(value, Spec):
                fields = type(value).model_fields
                text = (f"{value.name}({describe(_to_value(getattr(value, next(iter(fields)))))})"
                        if len(fields) == 1 else value.describe())
            else:
                text = describe(_to_value(value))
            parts.append(f"{key}={text}")
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def _to_value(v):
    if isinstance(v, (list, tuple)):
        return tuple(_to_value(x) for x in v)
    if isinstance(v, Spec):
        return Symbol(v.describe())
    return v


class Family:
    """Specs selected by name: ``Family("net")`` holds mlp, resnet, conv_net, made, ...

    Register a member with the ``@family.register`` class decorator (the class sets ``name``).
    """

    def __init__(self, what: str, catalog: str | None = None):
        self.what = what
        self._members: dict[str, type[Spec]] = {}
        #: ``"module:NAME"`` of the tuple declaring the built-in members (read on first use, not at import)
        self.catalog = catalog
        # the language server reads the catalog from two threads: another thread waits until it is complete
        self._loading = threading.RLock()
        self._ready = catalog is None

    @property
    def members(self) -> dict[str, type[Spec]]:
        if not self._ready:
            with self._loading:
                if self.catalog is not None:  # ``"module:NAME"``: a tuple of the built-in members, registered now
                    import importlib

                    (module, _, attr), self.catalog = self.catalog.partition(":"), None
                    for cls in getattr(importlib.import_module(module), attr):
                        self.register(cls)
                    self._ready = True
        return self._members

    def register(self, cls: type[Spec]) -> type[Spec]:
        if not cls.name:
            raise TypeError(f"{cls.__name__} has no name")
        if cls.name in self._members and self._members[cls.name] is not cls:
            raise ValueError(f"{self.what} '{cls.name}' is already registered by {self._members[cls.name].__name__}")
        self._members[cls.name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self.members)

    def get(self, name: str) -> type[Spec] | None:
        return self.members.get(name)

    def bind(self, sym: Symbol | str, pos: Pos | None = None) -> Spec:
        """Bind a symbol (or a bare name) to the member of that name; raise SpecError."""
        if isinstance(sym, str):
            sym = Symbol(sym, pos=pos or Pos())
        cls = self.members.get(sym.name)
        if cls is None:
            raise SpecError(f"unknown {self.what} '{sym.name}'", sym.pos if sym.pos.line else pos,
                            hint=suggest(sym.name, self.members) or f"known: {', '.join(self.names())}")
        return bind_spec(cls, sym, pos)

    def coerce(self, value):
        """Pydantic before-validator: turn a Symbol into the family's spec."""
        if isinstance(value, Spec):
            return value
        if isinstance(value, Symbol):
            return self.bind(value)
        if isinstance(value, str) and value in self.members:
            return self.bind(value)
        raise ValueError(f"expected a {self.what} ({', '.join(self.names())}), got {describe(value)}")


def bind_spec(cls: type[Spec], sym: Symbol, pos: Pos | None = None) -> Spec:
    """Bind a call's positional and keyword arguments to ``cls``'s fields and validate them."""
    where = sym.pos if sym.pos.line else (pos or sym.pos)
    fields = list(cls.model_fields)
    positional = list(cls.positional if cls.positional is not None else fields)
    data: dict[str, Any] = {}
    arg_pos: dict[str, Pos] = {}
    if len(sym.args) > len(positional):
        extra = len(sym.args) - len(positional)
        p = sym.arg_pos[len(positional)] if len(sym.arg_pos) > len(positional) else where
        takes = f"takes {len(positional)} positional argument{'s' if len(positional) != 1 else ''}"
        raise SpecError(f"{sym.name} {takes} ({', '.join(positional) or 'none'}); {extra} more given", p)
    for i, value in enumerate(sym.args):
        data[positional[i]] = value
        arg_pos[positional[i]] = sym.arg_pos[i] if i < len(sym.arg_pos) else where
    for i, (key, value) in enumerate(sym.kwargs):
        p = sym.kwarg_pos[i] if i < len(sym.kwarg_pos) else where
        if key not in fields:
            known = f"arguments: {', '.join(fields)}" if fields else "it takes none"
            raise SpecError(f"{sym.name} has no argument '{key}'", p, hint=suggest(key, fields) or known)
        if key in data:
            raise SpecError(f"argument '{key}' of {sym.name} given twice", p)
        data[key] = value
        arg_pos[key] = p
    # Symbolic arguments (nets, masks, estimators, ...) bind first, one by one, so that a problem
    # inside one of them (a SpecError with its own position) does not hide the others.
    problems: list[SpecError] = []
    bad: set[str] = set()
    for key in list(data):
        if not isinstance(data[key], Symbol):
            continue
        for meta in cls.model_fields[key].metadata:
            if not isinstance(meta, BeforeValidator):
                continue
            # The registry's before-validators (Word, family.coerce) take the value alone; one that
            # also wants pydantic's ``info`` raises TypeError here and is left to pydantic below.
            func = cast(NoInfoValidatorFunction, meta.func)
            try:
                data[key] = func(data[key])
            except SpecError as err:  # a new error at the argument (errors are built, never mutated)
                problems.append(err.replace(pos=err.pos or arg_pos.get(key, where), extra=[]))
                problems.extend(SpecError(d.message, d.pos, d.hint) for d in err.extra)
                bad.add(key)
            except (ValueError, TypeError):
                pass  # pydantic reports it below, at the argument's position
            break
    try:
        result = cls.model_validate({k: v for k, v in data.items() if k not in bad})
    except ValidationError as err:
        for e in err.errors():
            key = str(e["loc"][0]) if e["loc"] else None
            if key not in bad:  # a bad symbolic argument was left out: it is not "missing"
                p = arg_pos.get(key, where) if key is not None else where
                problems.append(SpecError(_pydantic_message(sym.name, key, e), p))
    else:
        if not problems:
            return result
    raise problems[0].replace(extra=[pr.at(where) for pr in problems[1:]]) from None


def _pydantic_message(owner: str, key: str | None, e: ErrorDetails) -> str:
    kind, ctx = e["type"], e.get("ctx", {})
    got = e.get("input")
    got_text = describe(_to_value(got)) if not isinstance(got, dict) else ""
    if _is_bare_name(got) and kind not in ("missing",):
        got_text += ", which is not a defined constant"
    if kind == "missing":
        return f"{owner} needs argument '{key}'"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"argument '{key}' of {owner} must be {bounds[kind]} {bound} (got {got_text})"
    if kind == "literal_error":
        return f"argument '{key}' of {owner} must be one of {ctx.get('expected', '')} (got {got_text})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"argument '{key}' of {owner} must be a whole number (got {got_text})"
    if kind in ("float_type", "float_parsing"):
        return f"argument '{key}' of {owner} must be a number (got {got_text})"
    if kind in ("bool_type", "bool_parsing"):
        return f"argument '{key}' of {owner} must be true or false (got {got_text})"
    if kind in ("tuple_type", "list_type"):
        return f"argument '{key}' of {owner} must be a list (got {got_text})"
    if kind == "string_type":
        return f"argument '{key}' of {owner} must be a string (got {got_text})"
    msg = e["msg"].removeprefix("Value error, ")
    where = f"argument '{key}' of {owner}" if key else owner
    return f"{where} {msg}" if msg.startswith("must") else f"{where}: {msg[:1].lower() + msg[1:]}"


def _is_bare_name(value) -> bool:
    if isinstance(value, tuple):
        return any(_is_bare_name(v) for v in value)
    return isinstance(value, Symbol) and not value.args and not value.kwargs


def _symbol_name(value):
    if isinstance(value, Symbol) and not value.args and not value.kwargs:
        return value.name
    return value


def _strict_int(value):
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number (got {describe(value)})")
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"must be a whole number (got {describe(value)})")
    return value


def _not_a_bit(value):
    raise ValueError(f"must be 0 or 1 (got {describe(value)})")


#: Field metadata letting a ``Literal`` field be written as a bare word (``order=reverse``):
#: ``order: Annotated[Literal["natural", "reverse"], Word] = "natural"``.
Word = BeforeValidator(_symbol_name)


def choice(*names: str) -> Any:
    """A field type accepting one of ``names`` written as a bare word, built at run time.

    For annotations built from names known only at run time (plugin layers); a built-in field
    spells the same type out, ``Annotated[Literal[...], Word]``, which a type checker can read.
    """
    return Annotated[Literal[names], Word]  # type: ignore[valid-type]  # names are a runtime tuple


def symbolic(family: Family, base: type) -> Any:
    """A field type accepting any member of ``family`` (a Symbol is bound on validation), built at run time.

    A built-in field spells it out, ``Annotated[Net, BeforeValidator(NETS.coerce)]``.
    """
    return Annotated[base, BeforeValidator(family.coerce)]


# Sizes are capped so that no spec can make the checker allocate absurd arrays before the limits apply.
PositiveInt = Annotated[int, BeforeValidator(_strict_int), Field(ge=1, le=2**24)]
NonNegativeInt = Annotated[int, BeforeValidator(_strict_int), Field(ge=0)]
#: a spec's seed (permute, made nets and models, invconv1x1): any whole number >= 0, one range everywhere; every
#: use reduces it mod 2**32 (:func:`seed32`), what numpy's RandomState takes
Seed = Annotated[int, BeforeValidator(_strict_int), Field(ge=0)]


def seed32(seed: int) -> int:
    """A spec seed as numpy's RandomState takes it: ``seed mod 2**32`` (so 2**40 seeds like 0)."""
    return int(seed) % 2**32
#: 0 or 1 (a parity, a mask bit); true/false are refused, not read as 1/0
Bit = Annotated[Literal[0, 1], BeforeValidator(lambda v: _strict_int(v) if not isinstance(v, bool) else _not_a_bit(v))]


# ----------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class LayerContext:
    """What a layer's rules see: the shape arriving at it and the model around it."""

    shape: tuple[int, ...]  # per-example input shape: (D,), (C, H, W), (T, C, H, W), (L,)
    model_kind: Literal["flow", "autoregressive"] = "flow"
    input_type: str = "vector"  # the model input's declared type: vector | image | sequence | video
    levels: int | None = None  # the model input's levels, if discrete
    context_features: int = 0  # numbers of the encoded condition a vector reader reads (0: it reads none)
    spec_dir: str = "."  # folder of the spec file (for data files a layer reads)
    position: int = 0  # the layer's 0-based position in its model (as LayerNode.position)
    previous: tuple[str, ...] = ()  # keys of the layers before this one
    output: Any = None  # an autoregressive model's ``output`` distribution spec (None: a flow, or none declared)
    input_shape: tuple[int, ...] = ()  # the model input's declared shape (``shape`` is what reaches this layer)
    limits: Limits = Limits()  # what a rule may build before refusing (sizes computed from the shapes first)
    #: the encoded condition this layer may read (None: unconditional, or ``reads=false``); its ``features``
    #: equal ``context_features``
    context: ContextShape | None = None

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def is_vector(self) -> bool:
        return len(self.shape) == 1


class Layer(Spec):
    """Base of every layer kind. Subclasses set ``name``, ``models``, ``runtime`` and ``infer``."""

    #: model kinds the layer may appear in
    models: ClassVar[frozenset[str]] = frozenset({"flow"})
    #: ``"module:callable"``; the callable takes ``(layer, node)`` and returns an nn.Module
    runtime: ClassVar[str] = ""
    #: one line for ``flowdsl layers`` and the report
    summary: ClassVar[str] = ""
    #: whether the layer moves data between shapes without computing (squeeze, split, permute)
    structural: ClassVar[bool] = False

    def infer(self, ctx: LayerContext) -> LayerInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, ctx: LayerContext, info: LayerInfo) -> list[Finding]:
        return []


# The built-in members are declared in flowdsl.layers.catalog, loaded on a family's first use.
LAYERS = Family("layer", catalog="flowdsl.layers.catalog:LAYER_SPECS")
NETS = Family("net", catalog="flowdsl.layers.catalog:NET_SPECS")
BASES = Family("base distribution", catalog="flowdsl.layers.catalog:BASE_SPECS")
OUTPUTS = Family("output distribution", catalog="flowdsl.layers.catalog:OUTPUT_SPECS")


def register_layer(cls):
    """Class decorator: add a Layer subclass to :data:`LAYERS`."""
    return LAYERS.register(cls)

