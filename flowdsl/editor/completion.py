"""Completion from the text before the cursor and the registry: layers, arguments and their values.

At the start of a statement (or after ``->``): layer names of the file's model kind, the unit's
blocks and the statement keywords; after ``coupling``/``autoregressive``, ``base``, ``output``:
those families; inside a call's parentheses: the callee's argument names (with their types and
defaults) and, after ``name=``, the words the argument accepts (masks, orders, nets, ...). Works on
half-typed lines: only the text is read, the last analysis that parsed gives blocks and constants.
After ``use "``: the spec files and folders next to the document. In a ``condition`` declaration:
the types, then ``levels`` and ``embed``, the nets after ``embed`` and, in its parentheses, the net's
arguments and ``out=``; every layer call also offers ``reads=`` (``true``/``false``).

Example:
    >>> items = complete("flow f {\\n  input x: vector[4]\\n  coupling affine(mask=", "f.flow")
    >>> sorted(i.label for i in items)
    ['channel', 'checkerboard', 'half']
    >>> [(i.label, i.detail) for i in complete("flow f {\\n  permute(", "f.flow") if i.label == "order"]
    [('order', 'order: Order = reverse')]
    >>> "planar" in {i.label for i in complete("flow f {\\n  pla", "f.flow")}
    True
    >>> [i.label for i in complete("flow f {\\n  condition c: vector[8] ", "f.flow")]
    ['levels', 'embed']
    >>> "conv_net" in {i.label for i in complete("flow f {\\n  condition c: image[1, 8, 8] embed ", "f.flow")}
    True
    >>> [i.label for i in complete("flow f {\\n  condition c: vector[8] embed mlp(", "f.flow")][:2]
    ['out', 'hidden']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from lsprotocol import types

from flowdsl.editor.schema import arguments, lookup
from flowdsl.language.declarations import CONDITION_TYPES, INPUT_TYPES
from flowdsl.language.loader import Unit
from flowdsl.language.parser import file_kind
from flowdsl.layers.registry import BASES, LAYERS, NETS, OUTPUTS, Family, Layer, Spec

__all__ = ["complete", "open_brackets"]

_TOP_KEYWORDS = ("use", "let", "block")
_BODY_KEYWORDS = ("input", "condition", "base", "output", "let", "repeat", "for")
_CALLEE = re.compile(r"(?:(coupling|autoregressive)[ \t]+)?([A-Za-z_]\w*)[ \t]*$")
_KIND = types.CompletionItemKind
_MAX_FILES = 500  # entries of one folder offered after 'use "'


_BRACKET_TOKENS = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"?|[()\[\]{},]')


def open_brackets(text: str) -> list[tuple[str, int, int, int]]:
    """The brackets still open at the end of ``text``: ``(char, offset, commas, offset after the last comma)``.

    Strings and comments are skipped, as the lexer skips them.

    >>> open_brackets('f(a, "(", g[1, 2], # )\\n')
    [('(', 1, 3, 18)]
    """
    stack: list[tuple[str, int, int, int]] = []
    for m in _BRACKET_TOKENS.finditer(text):
        ch, i = m.group(), m.start()
        if ch in "([{":
            stack.append((ch, i, 0, i + 1))
        elif ch in ")]}":
            if stack:
                stack.pop()
        elif ch == "," and stack:
            char, at, commas, _ = stack[-1]
            stack[-1] = (char, at, commas + 1, i + 1)
    return stack


def _item(label: str, kind, detail: str = "", doc: str = "", insert: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(label=label, kind=kind, detail=detail or None, documentation=doc or None,
                                insert_text=insert)


def _family_items(family: Family, kind=_KIND.EnumMember) -> list[types.CompletionItem]:
    return [_item(name, kind, family.what, getattr(family.get(name), "summary", "")) for name in family.names()]


def _layer_items(model_kind: str, qualifier: str | None = None) -> list[types.CompletionItem]:
    items = []
    for name in LAYERS.names():
        cls = LAYERS.get(name)
        if cls is None or not issubclass(cls, Layer) or model_kind not in cls.models:
            continue
        first, _, rest = name.partition(" ")
        if qualifier is not None:
            if rest and first == qualifier:
                items.append(_item(rest, _KIND.Function, f"{name} layer", cls.summary))
        else:
            items.append(_item(name, _KIND.Function, "layer", cls.summary))
    return items


def _argument_items(callee: str, commas: int, segment: str, unit: Unit | None,
                    cls: type[Spec] | None = None) -> list[types.CompletionItem]:
    cls = cls or lookup(callee)
    keyword = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*[A-Za-z_0-9]*", segment)
    is_layer = isinstance(cls, type) and issubclass(cls, Layer)
    if is_layer and keyword and keyword.group(1) == "reads":
        return [_item(v, _KIND.EnumMember, "reads: bool") for v in ("true", "false")]
    if cls is None:
        block = unit.blocks.get(callee) if unit else None
        if block is None or keyword:
            return _constant_items(unit)
        return [_item(p, _KIND.Variable, f"parameter of block {callee}") for p in block.params] + _constant_items(unit)
    args = arguments(cls)
    if keyword:
        for arg in args:
            if arg.name == keyword.group(1):
                return [_item(v, _KIND.EnumMember, f"{arg.name}: {arg.type_text}") for v in arg.values]
        return []
    if not re.fullmatch(r"\s*[A-Za-z_0-9]*", segment):
        return []
    items = [_item(a.name, _KIND.Property, f"{a.name}: {a.type_text} = {a.default}", insert=f"{a.name}=")
             for a in args]
    if is_layer:  # every layer call takes reads= (expand.py strips it)
        items.append(_item("reads", _KIND.Property, "reads: bool = true (false: the layer ignores the condition)",
                           insert="reads="))
    positional = cls.positional if cls.positional is not None else tuple(a.name for a in args)
    if commas < len(positional):  # the value of the positional argument written here
        here = next((a for a in args if a.name == positional[commas]), None)
        if here is not None:
            items += [_item(v, _KIND.EnumMember, f"{here.name}: {here.type_text}") for v in here.values]
    return items + _constant_items(unit)


def _constant_items(unit: Unit | None) -> list[types.CompletionItem]:
    return [_item(name, _KIND.Constant, f"= {value!r}") for name, value in (unit.constants.items() if unit else ())]


def _statement_items(before: str, in_body: bool, model_kind: str, unit: Unit | None) -> list[types.CompletionItem]:
    line = re.split(r"[;{}]", before.rsplit("\n", 1)[-1])[-1]
    if m := re.fullmatch(r"\s*(coupling|autoregressive)[ \t]+\w*", line):
        return _layer_items(model_kind, m.group(1))
    if re.fullmatch(r"\s*base[ \t]+\w*", line):
        return _family_items(BASES)
    if re.fullmatch(r"\s*output[ \t]+\w*", line):
        return _family_items(OUTPUTS)
    if m := _CONDITION_TAIL.fullmatch(line):
        return _condition_items(m)
    if m := re.fullmatch(r"\s*(input|condition)[ \t]+\w+[ \t]*:[ \t]*\w*", line):
        names = INPUT_TYPES if m.group(1) == "input" else CONDITION_TYPES
        return [_item(t, _KIND.TypeParameter, f"{m.group(1)} type") for t in names]
    at_start = re.fullmatch(r"\s*\w*", line) is not None
    if not in_body:
        keywords = _TOP_KEYWORDS + (("autoregressive",) if model_kind == "autoregressive" else ("flow",))
        return [_item(k, _KIND.Keyword) for k in keywords] if at_start else []
    if at_start or re.search(r"->\s*\w*$", line):
        items = _layer_items(model_kind)
        items += [_item(name, _KIND.Module, f"block {name}({', '.join(b.params)})")
                  for name, b in (unit.blocks.items() if unit else ())]
        if at_start:
            items += [_item(k, _KIND.Keyword) for k in _BODY_KEYWORDS]
        return items
    return _constant_items(unit)


#: a condition declaration typed up to its type (``condition c: image[1, 8, 8] le``), its levels or ``embed``
_CONDITION_TAIL = re.compile(r"\s*condition[ \t]+\w+[ \t]*:[ \t]*(\w+)[ \t]*\[[^\]]*\]"
                             r"(?P<levels>[ \t]+levels[ \t]+[^ \t]+)?(?P<embed>[ \t]+embed)?[ \t]+\w*")


def _condition_items(m: re.Match) -> list[types.CompletionItem]:
    """After a condition's type: ``levels`` (not on a label) and ``embed``; after ``embed``: the nets."""
    if m.group("embed"):
        return _family_items(NETS, _KIND.Function)
    items = [_item("embed", _KIND.Keyword, "embed NET(..., out=F): a context encoder that trains with the model")]
    if m.group("levels") is None and m.group(1) != "label":
        items.insert(0, _item("levels", _KIND.Keyword, "levels V: whole values 0..V-1, one-hot encoded"))
    return items


def _embed_net(before: str) -> str | None:
    """The net of a condition's ``embed NET(`` whose parenthesis opens at the end of ``before``."""
    m = re.search(r"(?:^|[\n;{])[ \t]*condition\b[^\n;{}]*\bembed[ \t]+([A-Za-z_]\w*)[ \t]*$", before)
    return m.group(1) if m else None


def _embed_items(net: str, commas: int, segment: str, unit: Unit | None) -> list[types.CompletionItem]:
    """Inside ``embed NET(``: the net's arguments and ``out=``, the features the layers read."""
    cls = NETS.get(net)
    if cls is None:
        return _constant_items(unit)
    out = _item("out", _KIND.Property, "out: int (required): the features the embed net gives the layers",
                insert="out=")
    if re.fullmatch(r"\s*out\s*=\s*\w*", segment):
        return _constant_items(unit)
    items = _argument_items(net, commas, segment, unit, cls)
    return [out, *items] if re.fullmatch(r"\s*[A-Za-z_0-9]*", segment) else items


def _use_items(folder: Path, written: str) -> list[types.CompletionItem]:
    """Spec files and folders under ``folder`` for a ``use "...`` being typed (no links, no hidden files)."""
    head, _, _ = written.rpartition("/")
    base = folder / head if head else folder
    if not base.is_dir():
        return []
    items = []
    for entry in sorted(base.iterdir())[:_MAX_FILES]:
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        text = f"{head}/{entry.name}" if head else entry.name
        if entry.is_dir():
            items.append(_item(text + "/", _KIND.Folder, "folder"))
        elif entry.suffix in (".flow", ".ar"):
            items.append(_item(text, _KIND.File, "spec file"))
    return items


def complete(before: str, filename: str, unit: Unit | None = None) -> list[types.CompletionItem]:
    """Completion items for a cursor after ``before`` (the document's text up to it) in ``filename``."""
    model_kind = "autoregressive" if file_kind(filename) == "ar" else "flow"
    use = re.search(r'(?:^|[\n;])[ \t]*use[ \t]+"([^"\n]*)$', before)
    if use:
        return _use_items(Path(filename).parent, use.group(1))
    stack = open_brackets(before)
    parens = [entry for entry in stack if entry[0] != "{"]
    if parens:
        char, at, commas, seg_start = parens[-1]
        if char == "[":
            return _constant_items(unit)
        m = _CALLEE.search(before[:at])
        if not m:
            return _constant_items(unit)
        net = _embed_net(before[:at]) if char == "(" else None
        if net is not None:
            return unique(_embed_items(net, commas, before[seg_start:], unit))
        callee = f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(2)
        return unique(_argument_items(callee, commas, before[seg_start:], unit))
    return unique(_statement_items(before, any(e[0] == "{" for e in stack), model_kind, unit))


def unique(items: Iterable[types.CompletionItem]) -> list[types.CompletionItem]:
    """Items with the first of each label kept."""
    seen: dict[str, types.CompletionItem] = {}
    for item in items:
        seen.setdefault(item.label, item)
    return list(seen.values())
