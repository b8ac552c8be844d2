"""What the registry's pydantic schemas say about a call's arguments, for completion.

For each field of a spec class: its name, a short type text, its default, and the words it accepts
(the values of a ``Literal``, the members of the registry family it binds, ``true``/``false``).

Example:
    >>> import flowdsl.layers
    >>> from flowdsl.layers.registry import LAYERS
    >>> fields = {f.name: f for f in arguments(LAYERS.get("autoregressive affine"))}
    >>> fields["direction"].type_text, fields["direction"].default, fields["direction"].values
    ('forward | inverse', 'forward', ('forward', 'inverse'))
    >>> "half" in arguments(LAYERS.get("coupling affine"))[0].values
    True
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache

from flowdsl.layers.registry import BASES, LAYERS, NETS, OUTPUTS, Family, Spec

__all__ = ["Argument", "arguments", "families", "lookup", "value_text"]


@dataclass(frozen=True)
class Argument:
    name: str
    type_text: str
    default: str  # "required" when there is none
    values: tuple[str, ...] = ()


@cache
def families() -> tuple[Family, ...]:
    """Every registry family whose members may be written in a spec, layers first."""
    from flowdsl.layers.ar_attention import PATTERNS
    from flowdsl.layers.masks import MASKS
    from flowdsl.layers.orders import MODEL_ORDERS, NET_ORDERS, PERMUTATIONS
    from flowdsl.layers.residual import LOGDETS

    return (LAYERS, NETS, BASES, OUTPUTS, MASKS, PATTERNS, NET_ORDERS, MODEL_ORDERS, PERMUTATIONS, LOGDETS)


def lookup(name: str) -> type[Spec] | None:
    """The spec class a call of ``name`` binds (a layer, net, mask, ...), None if there is none."""
    for family in families():
        cls = family.get(name)
        if cls is not None:
            return cls
    return None


def _parts(annotation, metadata) -> list[tuple[object, list]]:
    """``(type, metadata)`` pairs with Optional and Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _parts(base, list(metadata) + extra)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return [p for arg in typing.get_args(annotation) if arg is not type(None) for p in _parts(arg, metadata)]
    return [(annotation, list(metadata))]


def _validator_families(metadata: list) -> list[Family]:
    found: list[Family] = []
    for meta in metadata:
        func = getattr(meta, "func", None)
        owner = getattr(func, "__self__", None)
        if isinstance(owner, Family):
            found.append(owner)
        for cell in getattr(func, "__closure__", None) or ():
            if isinstance(cell.cell_contents, Family):
                found.append(cell.cell_contents)
    return found


def _values(annotation, metadata) -> tuple[list[str], str]:
    values: list[str] = []
    texts: list[str] = []
    for base, meta in _parts(annotation, metadata):
        if typing.get_origin(base) is typing.Literal:
            words = [str(v) for v in typing.get_args(base)]
            values += words
            texts.append(" | ".join(words))
            continue
        fams = _validator_families(meta)
        if not fams and isinstance(base, type) and issubclass(base, Spec):
            fams = [f for f in families() if f.members and all(issubclass(c, base) for c in f.members.values())]
        for family in fams:
            values += family.names()
        if base is bool:
            values += ["true", "false"]
        texts.append(_type_name(base))
    return list(dict.fromkeys(values)), " | ".join(dict.fromkeys(texts))


def _type_name(base) -> str:
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        inner = _parts(args[0], [])[0][0] if args else object
        return f"list of {_type_name(inner)}"
    return getattr(base, "__name__", str(base))


def value_text(value) -> str:
    """A bound argument value as a spec would write it (``[64, 64]``, ``true``, ``mlp(hidden=[8])``)."""
    if isinstance(value, Spec):
        return value.describe()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


@cache
def arguments(cls: type[Spec]) -> list[Argument]:
    """The arguments of a spec class, in declaration order."""
    out = []
    for name, info in cls.model_fields.items():
        values, type_text = _values(info.annotation, info.metadata)
        default = "required" if info.is_required() else value_text(info.get_default(call_default_factory=True))
        out.append(Argument(name, type_text, default, tuple(values)))
    return out
