"""Hypothesis strategies: inputs of any shape and levels, layer arguments from the registry, whole specs.

Nothing here names a layer: :func:`layer_calls` draws any registered layer of a model kind
and valid arguments from its pydantic schema (bounds, choices, lists, nested specs such as
nets, masks and orders, and explicit lists sized to the layer's input), binds them through
the registry and keeps the draws whose shape rule accepts the input. :func:`specs` chains
such calls into a whole spec that the checker accepts. A layer added tomorrow, or a
user-defined one (:mod:`flowdsl.plugins`), is drawn the day it is registered.

``small=True`` (the default) keeps sizes small enough to compile and brute-force; ``extreme=True``
favours the bounds of every range (the largest and smallest valid values).

Example:
    >>> from hypothesis import given, settings
    >>> import flowdsl
    >>> @settings(max_examples=3, deadline=None, database=None)
    ... @given(specs("flow", max_layers=2))
    ... def test_accepted(text):
    ...     assert flowdsl.analyze_source(text, "t.flow").ok
    >>> test_accepted()
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

from flowdsl.errors import FlowDSLError, SpecError
from flowdsl.language.values import Symbol, describe
from flowdsl.layers.registry import LAYERS, OUTPUTS, Family, Layer, LayerContext, Spec
from flowdsl.testing.inputs import EXPLICIT_MAX, inputs, labels, one_hot

__all__ = [
    "inputs", "labels", "one_hot", "values_for", "arguments", "call_text", "layer_calls", "LayerDraw", "specs",
    "registered_layers", "EXPLICIT_MAX", "CONDITION_KINDS",
]

_SMALL_SPAN = 7  # small=True: whole numbers at most this far above their lower bound
_SMALL_FLOAT = 4.0


# ----------------------------------------------------------------------------- values from a schema
@dataclass(frozen=True)
class _Opts:
    small: bool
    extreme: bool
    size: int | None  # flattened size of the layer's input (for explicit lists)
    depth: int = 0


def _unwrap(annotation, metadata=()):
    """``(base type, [constraints])`` with Annotated layers and FieldInfo metadata flattened."""
    meta = list(metadata)
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, meta = args[0], meta + list(args[1:])
    flat = []
    for m in meta:
        flat.extend(getattr(m, "metadata", None) or [m]) if type(m).__name__ == "FieldInfo" else flat.append(m)
    return annotation, flat


def _bounds(meta):
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False),
                                     ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is None or isinstance(v, bool):
                continue
            if is_lo and (lo is None or v >= lo):
                lo, lo_open = v, is_open
            elif not is_lo and (hi is None or v <= hi):
                hi, hi_open = v, is_open
    return lo, lo_open, hi, hi_open


def _ints(meta, o: _Opts):
    lo, lo_open, hi, hi_open = _bounds(meta)
    lo = -8 if lo is None else math.floor(lo) + (1 if lo_open and float(lo).is_integer() else 0)
    lo = max(lo, -(2**31))
    hi = 2**31 if hi is None else math.ceil(hi) - (1 if hi_open and float(hi).is_integer() else 0)
    if hi < lo:
        return st.nothing()
    body = st.integers(lo, min(hi, lo + _SMALL_SPAN) if o.small else hi)
    if o.extreme:
        return st.one_of(st.sampled_from(sorted({lo, hi})), body)
    return body


def _floats(meta, o: _Opts):
    lo, lo_open, hi, hi_open = _bounds(meta)
    lo_f = -1e6 if lo is None else float(lo)
    hi_f = 1e6 if hi is None else float(hi)
    if o.small:  # moderate values, a margin away from open bounds (extreme=True explores the edges)
        span_lo, span_hi = max(lo_f, -_SMALL_FLOAT), min(hi_f, _SMALL_FLOAT if lo_f < _SMALL_FLOAT else lo_f + 1)
        margin = 1e-3 * max(1.0, span_hi - span_lo)
        if lo_open and span_lo == lo_f:
            span_lo = lo_f + min(margin, (span_hi - span_lo) / 4)
        if hi_open and span_hi == hi_f:
            span_hi = hi_f - min(margin, (span_hi - span_lo) / 4)
        body = st.floats(span_lo, span_hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    else:
        body = st.floats(lo_f, hi_f, exclude_min=lo_open, exclude_max=hi_open, allow_nan=False,
                         allow_infinity=False, allow_subnormal=False)
    if not o.extreme:
        return body
    edges = [np.nextafter(lo_f, np.inf) if lo_open else lo_f, np.nextafter(hi_f, -np.inf) if hi_open else hi_f]
    return st.one_of(st.sampled_from([float(e) for e in edges]), body)


def _named_subclasses(base: type) -> list[type[Spec]]:
    seen, out, todo = set(), [], [base]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                if sub.__dict__.get("name") or getattr(sub, "name", ""):
                    out.append(sub)
    return sorted({c for c in out if c.name}, key=lambda c: (c.name, c.__qualname__))


def _explicit_lists(o: _Opts):
    """Explicit lists sized to the layer's input: 0/1 masks and permutations."""
    if not o.size or o.size > 64:
        return []
    n = o.size
    bits = st.lists(st.integers(0, 1), min_size=n, max_size=n).map(tuple)
    perm = st.permutations(list(range(n))).map(tuple)
    return [bits, perm]


def values_for(annotation, metadata=(), *, small: bool = True, extreme: bool = False, size: int | None = None,
               _depth: int = 0):
    """A strategy of spec-language values (numbers, bare words, lists, calls) for one field type.

    Returns None for a type it cannot draw (the field then keeps its default).

    Example:
        >>> from hypothesis import find
        >>> from flowdsl.layers.registry import PositiveInt
        >>> find(values_for(PositiveInt), lambda v: v > 3)
        4
    """
    o = _Opts(small, extreme, size, _depth)
    base, meta = _unwrap(annotation, metadata)
    origin = typing.get_origin(base)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        options = [values_for(a, meta, small=small, extreme=extreme, size=size, _depth=_depth)
                   for a in typing.get_args(base) if a is not type(None)]
        options = [s for s in options if s is not None]
        return st.one_of(options) if options else None
    if origin is typing.Literal:
        return st.sampled_from([Symbol(v) if isinstance(v, str) else v for v in typing.get_args(base)])
    if origin in (tuple, list):
        args = typing.get_args(base)
        item = values_for(args[0], small=small, extreme=extreme, size=size, _depth=_depth + 1) if args else None
        if item is None:
            return None
        if len(args) > 1 and args[1] is not Ellipsis:
            return st.tuples(*[values_for(a, small=small, extreme=extreme, size=size, _depth=_depth + 1)
                               for a in args])
        return st.lists(item, min_size=1, max_size=3 if small else 6).map(tuple)
    if base is bool:
        return st.booleans()
    if base is int:
        return _ints(meta, o)
    if base is float:
        return st.one_of(_floats(meta, o), _ints(meta, o)) if not small else _floats(meta, o)
    if base is str:
        return st.sampled_from(["x", "data.txt"])
    if isinstance(base, type) and issubclass(base, Spec):
        if _depth > 3:
            return None
        members = [m for m in _named_subclasses(base) if not issubclass(m, Layer)]
        options = [_member(m, o) for m in members] + _explicit_lists(o)
        return st.one_of(options) if options else None
    return None


def _member(cls: type[Spec], o: _Opts):
    args = arguments(cls, small=o.small, extreme=o.extreme, size=o.size, _depth=o.depth + 1)
    return args.map(lambda kw: Symbol(cls.name, kwargs=tuple(kw.items())) if kw else Symbol(cls.name))


@st.composite
def arguments(draw, cls: type[Spec], *, small: bool = True, extreme: bool = False, size: int | None = None,
              _depth: int = 0):
    """Keyword arguments for ``cls`` (a layer, net, mask, ... spec class): ``{name: value}``.

    Optional arguments are left out about half the time (their defaults apply).
    """
    out = {}
    for key, info in cls.model_fields.items():
        required = info.is_required()
        if not required and not draw(st.booleans()):
            continue
        strategy = values_for(info.annotation, info.metadata, small=small, extreme=extreme, size=size,
                              _depth=_depth)
        if strategy is None:
            if required:
                reject()
            continue
        out[key] = draw(strategy)
    return out


def call_text(name: str, args: dict) -> str:
    """Spec text of a call: ``coupling affine(mask=half, clamp=2.0)``; a bare name without arguments."""
    if not args:
        return name
    return f"{name}({', '.join(f'{k}={describe(v)}' for k, v in args.items())})"


# ----------------------------------------------------------------------------- layers
def registered_layers(kind: str = "flow", runnable: bool = True) -> list[str]:
    """Names of the registered layers of a model kind (with a runtime, if ``runnable``)."""
    return [n for n in LAYERS.names() if kind in LAYERS.get(n).models and (LAYERS.get(n).runtime or not runnable)]


@dataclass(frozen=True)
class LayerDraw:
    """One drawn layer: its text, bound spec and the output shape its rule inferred."""

    text: str
    layer: Layer
    out_shape: tuple[int, ...]


def _bind(name: str, args: dict) -> Layer | None:
    try:
        return LAYERS.bind(Symbol(name, kwargs=tuple(args.items())))
    except (SpecError, FlowDSLError, ValueError, TypeError):
        return None


def _draw_layer(draw, ctx: LayerContext, names, small: bool, extreme: bool, tries: int, runnable: bool,
                exclude=None):
    pool = sorted(names) if names is not None else registered_layers(ctx.model_kind, runnable)
    size = math.prod(ctx.shape) if ctx.shape else None
    for _ in range(tries if pool else 0):
        name = draw(st.sampled_from(pool))
        args = draw(arguments(LAYERS.get(name), small=small, extreme=extreme, size=size))
        if exclude is not None and exclude(call_text(name, args)):
            continue
        layer = _bind(name, args)
        if layer is None:
            continue
        try:
            info = layer.infer(ctx)
        except SpecError:
            continue
        return LayerDraw(call_text(name, args), layer, tuple(info.out_shape))
    return None


@st.composite
def layer_calls(draw, ctx: LayerContext, *, names=None, small: bool = True, extreme: bool = False, tries: int = 12,
                runnable: bool = True):
    """A registered layer (of ``ctx.model_kind``) with arguments its schema and shape rule accept at ``ctx``.

    ``names`` restricts the draw to some layers (default: every registered one).

    Example:
        >>> from hypothesis import find
        >>> from flowdsl.layers.registry import LayerContext
        >>> find(layer_calls(LayerContext(shape=(4,)), names=["permute"]), lambda d: True).text
        'permute'
    """
    drawn = _draw_layer(draw, ctx, names, small, extreme, tries, runnable)
    if drawn is None:
        reject()
    return drawn


# ----------------------------------------------------------------------------- whole specs
_FLOW_INPUTS = ("vector", "image")
_AR_INPUTS = ("vector", "sequence", "image", "video")


@st.composite
def _input(draw, kind: str, small: bool):
    types = _FLOW_INPUTS if kind == "flow" else _AR_INPUTS
    t = draw(st.sampled_from(types))
    side = st.sampled_from([1, 2, 4]) if small else st.sampled_from([1, 2, 3, 4, 8])
    if t in ("vector", "sequence"):
        shape = (draw(st.integers(2, 8 if small else 32)),)
    elif t == "image":
        shape = (draw(st.integers(1, 3)), draw(side), draw(side))
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(side), draw(side))
    ar = kind == "autoregressive"
    return t, shape, draw(st.integers(2, 4 if small else 256) if ar else st.one_of(st.none(), st.integers(2, 256)))


#: the condition types :func:`specs` can declare
CONDITION_KINDS = ("label", "vector", "image", "sequence")


def _condition(draw, kinds) -> tuple[str, object]:
    """``(declaration text, encoded ContextShape)`` of a drawn small condition of one of ``kinds``."""
    from flowdsl.language.conditions import condition_shapes

    kind = draw(st.sampled_from(tuple(kinds)))
    sizes = {"label": st.tuples(st.integers(2, 4)), "vector": st.tuples(st.integers(1, 4)),
             "image": st.tuples(st.integers(1, 2), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4])),
             "sequence": st.one_of(st.tuples(st.integers(1, 4)), st.tuples(st.integers(1, 4), st.integers(1, 2)))}
    dims = draw(sizes[kind])
    levels = dims[0] if kind == "label" else draw(st.one_of(st.none(), st.integers(2, 3)))
    text = f"condition y: {kind}[{', '.join(map(str, dims))}]" + (f" levels {levels}" if levels and kind != "label"
                                                                   else "")
    return text, condition_shapes(kind, () if kind == "label" else dims, levels)


@st.composite
def specs(draw, kind: str = "flow", *, max_layers: int = 4, min_layers: int = 1, names=None, small: bool = True,
          extreme: bool = False, conditional: bool | None = None, runnable: bool = True, limits=None,
          max_size: int | None = None, exclude=None, conditions=("label",)):
    """The text of a whole spec the checker accepts: one ``flow`` (or ``autoregressive``) model.

    Arguments:
        kind: ``"flow"`` or ``"autoregressive"``.
        max_layers, min_layers: how many layer statements to chain.
        names: restrict the layers drawn (default: every registered layer of the kind).
        small: sizes small enough to compile and brute-force; extreme: favour range bounds.
        conditional: with a ``condition y: ...`` (None: either).
        conditions: the condition types to draw from (:data:`CONDITION_KINDS`; default labels only), small
            sizes, with or without ``levels``.
        runnable: only layers that have a runtime (so the spec compiles).
        limits: :class:`flowdsl.Limits` the spec must respect.
        max_size: reject inputs with more numbers than this.
        exclude: ``exclude(text) -> bool``: layer calls and spec texts never to use (known problems, say).
    """
    from flowdsl.api import analyze_source

    ext = "flow" if kind == "flow" else "ar"
    t, shape, levels = draw(_input(kind, small))
    if max_size is not None and math.prod(shape) > max_size:
        reject()
    cond = draw(st.booleans()) if conditional is None else conditional
    header = [f"    input x: {t}[{', '.join(map(str, shape))}]" + (f" levels {levels}" if levels else "")]
    context = None
    if cond:
        text, context = _condition(draw, conditions)
        header.append(f"    {text}")
    output = None
    if kind == "autoregressive":
        out_names = [n for n in OUTPUTS.names() if n]
        out_name = draw(st.sampled_from(out_names))
        out_args = draw(arguments(OUTPUTS.get(out_name), small=small, extreme=extreme))
        output = _bind_family(OUTPUTS, out_name, out_args)
        if output is None:
            reject()
        header.append(f"    output {call_text(out_name, out_args)}")
    calls: list[str] = []
    cur = shape
    previous: tuple[str, ...] = ()
    count = draw(st.integers(min_layers, max_layers))
    for i in range(count):
        ctx = LayerContext(shape=cur, model_kind=kind, input_type=t, levels=levels,
                           context_features=context.features if context is not None else 0, context=context,
                           position=i, previous=previous, output=output, input_shape=shape)
        for _ in range(4):  # a layer its rule accepts may still fail a model check (causality, coverage, ...)
            drawn = _draw_layer(draw, ctx, names, small, extreme, 12, runnable, exclude)
            if drawn is None:
                break
            text = _render(kind, header, calls + [drawn.text])
            if (exclude is None or not exclude(text)) and analyze_source(text, f"t.{ext}", limits).ok:
                break
            drawn = None
        if drawn is None:
            if i < min_layers:
                reject()
            break
        calls.append(drawn.text)
        cur = drawn.out_shape
        previous = previous + (drawn.layer.name,)
    return _render(kind, header, calls)


def _bind_family(family: Family, name: str, args: dict):
    try:
        return family.bind(Symbol(name, kwargs=tuple(args.items())))
    except (SpecError, FlowDSLError, ValueError, TypeError):
        return None


def _render(kind: str, header: list[str], calls: list[str]) -> str:
    word = "flow" if kind == "flow" else "autoregressive"
    return f"{word} m {{\n" + "\n".join(header + [f"    {c}" for c in calls]) + "\n}\n"
