"""The ``@layer`` decorator: a user-defined layer from one decorated class (see :mod:`flowdsl.plugins`).

Example:
    >>> from flowdsl.runtime.base import Bijection
    >>> @layer("doc_scale2", dependency="elementwise")
    ... class Scale2(Bijection):
    ...     def __init__(self, shape):
    ...         super().__init__()
    ...     def forward(self, x, context=None):
    ...         return 2 * x, x.new_full((x.shape[0],), x[0].numel() * 0.6931471805599453)
    ...     def inverse(self, y, context=None):
    ...         return y / 2, -y.new_full((y.shape[0],), y[0].numel() * 0.6931471805599453)
    >>> unregister("doc_scale2")
"""

from __future__ import annotations

import inspect
import math
import typing
from types import SimpleNamespace
from typing import Annotated

import numpy as np
from pydantic import BeforeValidator, Field, create_model

from flowdsl.errors import Diagnostic, FlowDSLError, Pos, SpecError
from flowdsl.layers.registry import LAYERS, NETS, Layer, LayerContext, LayerInfo, _strict_int, choice, symbolic
from flowdsl.layers.structure import Dependency

__all__ = ["layer", "unregister", "PluginError", "RUNTIMES", "PluginLayer"]

#: builders of user-defined layers, found by the compiler as ``flowdsl.plugins:RUNTIMES.<name>``
RUNTIMES = SimpleNamespace()
#: names filled in by the compiler, not arguments of the spec
RESERVED = ("shape", "in_shape", "out_shape", "context_features", "node")


class PluginError(FlowDSLError):
    """A plugin could not be loaded or declares an impossible contract."""

    def __init__(self, where: str, message: str, hint: str | None = None):
        super().__init__([Diagnostic(Pos(where), "error", message, hint)])


class PluginLayer(Layer):
    """Base of the spec classes :func:`layer` generates from a torch class."""

    def infer(self, ctx: LayerContext) -> LayerInfo:
        c = type(self)._contract
        args = _spec_args(self)
        out = tuple(ctx.shape) if c["shape"] == "same" else _call_rule(c["shape"], "shape", ctx.shape, args)
        out = tuple(int(v) for v in out)
        if "flow" in type(self).models and math.prod(out) != math.prod(ctx.shape):
            raise SpecError(f"{self.name} maps {list(ctx.shape)} to {list(out)}: a bijection keeps the number of "
                            f"dimensions ({math.prod(ctx.shape)} -> {math.prod(out)})")
        dep = _dependency(c, ctx.shape, args)
        params = c["params"]
        if callable(params):
            params = _call_rule(params, "params", ctx.shape, args)
        elif params is None:
            params = _count_params(self, ctx, out, dep)
        return LayerInfo(out_shape=out, params=int(params), logdet=c["logdet"], dependency=dep,
                         reads_condition=bool(c["conditional"] and ctx.context_features), report=c["summary"] or "",
                         meta={"plugin": c["origin"]})


def _call_rule(rule, what: str, shape, args):
    try:
        return rule(tuple(shape), **args)
    except SpecError:
        raise
    except (ValueError, TypeError, AssertionError) as err:
        raise SpecError(str(err) or f"the {what} rule refuses input {list(shape)}") from None


def _dependency(c: dict, shape, args) -> Dependency | None:
    dep = c["dependency"]
    size = math.prod(shape)
    if dep is None:
        return None
    if callable(dep):
        out = _call_rule(dep, "dependency", shape, args)
        return out if isinstance(out, Dependency) else Dependency.explicit(np.asarray(out, dtype=bool))
    if dep == "elementwise":
        return Dependency.elementwise(size)
    if dep == "dense":
        return Dependency.dense(size)
    if dep == "autoregressive":
        return Dependency.autoregressive(np.arange(size))
    if dep == "coupling":
        if c["kept"] is not None:
            kept = _call_rule(c["kept"], "kept", shape, args)
        elif "mask" in args:
            kept = args["mask"].kept(tuple(shape))
        else:
            kept = np.arange(size) < size // 2
        return Dependency.coupling(np.asarray(kept, dtype=bool))
    raise SpecError(f"unknown dependency kind '{dep}'")  # pragma: no cover - refused by layer()


_COUNTS: dict = {}
#: parameters are counted on the CPU when the meta device cannot run the layer's __init__, up to this input size
MAX_CPU_COUNT_SIZE = 1_000_000


def _build_on(device: str, builder, spec, node):
    """Build the layer's module on ``device``; a ValueError from the layer becomes a SpecError in its words."""
    import torch

    try:
        with torch.device(device):
            return builder(spec, node)
    except ValueError as err:  # the layer refuses its arguments or shape
        raise SpecError(str(err) or f"{spec.name} refuses these arguments") from None


def _unbuildable(spec, err: Exception) -> SpecError:
    return SpecError(f"{spec.name} could not be built to count its parameters ({type(err).__name__}: {err})",
                     hint="declare the count with @layer(..., params=...)")


def _count_params(spec, ctx: LayerContext, out, dep) -> int:
    """Build the module, on the meta device first (nothing allocated), and count its parameters."""

    from flowdsl.runtime.base import BuildNode

    key = (spec, tuple(ctx.shape), ctx.context_features)
    try:
        if key in _COUNTS:
            return _COUNTS[key]
    except TypeError:  # an unhashable argument: count every time
        key = None
    node = BuildNode(in_shape=tuple(ctx.shape), out_shape=out, dependency=dep, context_features=ctx.context_features,
                     levels=ctx.levels, model_kind=ctx.model_kind, spec_dir=ctx.spec_dir, position=ctx.position)
    builder = getattr(RUNTIMES, type(spec).name)
    try:
        module = _build_on("meta", builder, spec, node)
    except SpecError:
        raise
    except Exception as err:  # data-dependent code (numpy masks, nonzero): build it for real if it is small
        if math.prod(ctx.shape) > MAX_CPU_COUNT_SIZE:
            raise _unbuildable(spec, err) from None
        try:
            module = _build_on("cpu", builder, spec, node)
        except SpecError:
            raise
        except Exception as err2:
            raise _unbuildable(spec, err2) from None
    count = sum(p.numel() for p in module.parameters())
    if key is not None:
        _COUNTS[key] = count
    return count


# ----------------------------------------------------------------------------- the decorator
_DEPENDENCIES = ("elementwise", "coupling", "autoregressive", "dense")


def _strict_float(value):
    if isinstance(value, bool):
        from flowdsl.language.values import describe

        raise ValueError(f"must be a number (got {describe(value)})")
    return value


def _field_type(annotation):
    """Spec-language friendly versions of plain Python types."""
    from flowdsl.layers.masks import Mask, MaskField
    from flowdsl.layers.nets import Net

    if annotation is int:
        return Annotated[int, BeforeValidator(_strict_int)]
    if annotation is float:
        return Annotated[float, BeforeValidator(_strict_float)]
    if typing.get_origin(annotation) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(annotation)):
        return choice(*typing.get_args(annotation))
    if annotation is Net:
        return symbolic(NETS, Net)
    if annotation is Mask:
        return MaskField
    return annotation


def _fields(cls, name: str) -> dict:
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception as err:
        raise PluginError(cls.__module__, f"layer '{name}': cannot read the argument types of "
                                          f"{cls.__qualname__}.__init__ ({err})") from None
    fields = {}
    for i, p in enumerate(sig.parameters.values()):
        if i == 0 or p.name in RESERVED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(p.name)
        if ann is None:
            if p.default is p.empty or p.default is None:
                raise PluginError(cls.__module__, f"layer '{name}': argument '{p.name}' of {cls.__qualname__} needs "
                                                  f"a type annotation")
            ann = type(p.default)
        default = p.default
        if isinstance(default, str) and _is_spec_type(ann):
            default = _spec_value(default, cls, name, p.name)
        fields[p.name] = (_field_type(ann), ... if default is p.empty else Field(default, validate_default=True))
    return fields


def _is_spec_type(annotation) -> bool:
    from flowdsl.layers.registry import Spec

    return isinstance(annotation, type) and issubclass(annotation, Spec)


def _spec_value(text: str, cls, name: str, arg: str):
    """A default written in the spec language (``"mlp([64, 64])"``), as the value a spec would give."""
    from flowdsl.language.syntax import parse_program
    from flowdsl.language.values import evaluate

    try:
        return evaluate(parse_program(f"let v = {text}\n", "<default>").items[0].value, {})
    except (FlowDSLError, SpecError) as err:
        raise PluginError(cls.__module__, f"layer '{name}': the default of '{arg}' is not a spec value: {text!r}",
                          hint=str(err).splitlines()[0]) from None


def _builder(cls):
    sig = inspect.signature(cls)
    wanted = [r for r in RESERVED if r in sig.parameters]

    def build(spec, node):
        extras = {"shape": node.in_shape, "in_shape": node.in_shape, "out_shape": node.out_shape,
                  "context_features": node.context_features, "node": node}
        return cls(**_spec_args(spec), **{k: extras[k] for k in wanted})

    return build


def _origin(cls) -> str:
    """Where a class is defined: its file (a module loaded twice under two names is still one) and name."""
    try:
        where = inspect.getfile(cls)
    except (TypeError, OSError):
        where = cls.__module__
    return f"{where}:{cls.__qualname__}"


def _spec_args(spec) -> dict:
    return {k: getattr(spec, k) for k in type(spec).model_fields}


def _register(spec_cls, name: str, origin: str) -> None:
    old = LAYERS.members.get(name)
    if old is not None and old is not spec_cls:
        if getattr(old, "_origin", None) != origin:
            raise PluginError(origin, f"layer '{name}' is already registered by {old.__module__}.{old.__qualname__}",
                              hint="pick another name")
        del LAYERS.members[name]  # the same class, defined again (a module loaded twice)
    LAYERS.register(spec_cls)


def layer(name: str, *, shape="same", dependency="dense", logdet: str = "exact", params=None, kept=None,
          models=("flow",), summary: str | None = None, conditional: bool = False, runtime=None):
    """Class decorator: register a user-defined layer under ``name`` (see the module docs).

    On a torch class, generates its spec (arguments from ``__init__``) and contract; on a
    :class:`~flowdsl.layers.registry.Layer` subclass, registers it as it is, with ``runtime`` (a torch
    class or a ``build(spec, node)`` function) as its compiled form.
    """
    if not isinstance(dependency, str) and dependency is not None and not callable(dependency):
        raise PluginError("<plugin>", f"layer '{name}': dependency must be a name, a function or None")
    if isinstance(dependency, str) and dependency not in _DEPENDENCIES:
        raise PluginError("<plugin>", f"layer '{name}': unknown dependency '{dependency}'",
                          hint=f"one of {', '.join(_DEPENDENCIES)}, a function or None")

    def decorate(cls):
        origin = _origin(cls)
        doc = summary or (inspect.getdoc(cls) or "").split("\n")[0]
        if isinstance(cls, type) and issubclass(cls, Layer):
            cls.name = name
            if runtime is not None:
                build = _builder(runtime) if isinstance(runtime, type) else runtime
                setattr(RUNTIMES, name, lambda spec, node: build(spec, node))
                cls.runtime = f"flowdsl.plugins:RUNTIMES.{name}"
            if not cls.summary:
                cls.summary = doc
            cls._origin = origin
            _register(cls, name, origin)
            return cls
        if not (hasattr(cls, "forward") and hasattr(cls, "inverse")):
            raise PluginError(cls.__module__, f"layer '{name}': {cls.__qualname__} needs forward and inverse methods")
        fields = _fields(cls, name)
        spec_cls = create_model(f"{cls.__name__}Spec", __base__=PluginLayer, __module__=cls.__module__, **fields)
        spec_cls.name = name
        spec_cls.models = frozenset(models)
        spec_cls.summary = doc
        spec_cls.runtime = f"flowdsl.plugins:RUNTIMES.{name}"
        spec_cls._contract = {"shape": shape, "dependency": dependency, "logdet": logdet, "params": params,
                              "kept": kept, "summary": doc, "conditional": conditional, "origin": origin}
        spec_cls._origin = origin
        setattr(RUNTIMES, name, _builder(cls))
        _register(spec_cls, name, origin)
        cls.flowdsl_spec = spec_cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove a user-defined layer from the registry (tests that define throwaway layers)."""
    cls = LAYERS.members.get(name)
    if cls is None or getattr(cls, "_origin", None) is None:
        raise KeyError(f"'{name}' is not a user-defined layer")
    del LAYERS.members[name]
    if hasattr(RUNTIMES, name):
        delattr(RUNTIMES, name)
