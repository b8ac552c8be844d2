"""Hover text from the analysis: what the checker inferred about the thing under the cursor.

On a layer: its output shape, parameter count, log-det kind, dependency structure and the
registry's one-line summary (on one of its arguments: also its type, default and bound value);
on an ``input``: its shape; on a ``condition``: what a caller passes, its encoding, its ``embed`` net and
which layers read it; on a block call: the
layers it expands to; on a layer, block or constant name elsewhere: what it is.

Example:
    >>> from flowdsl.editor.documents import check_text
    >>> c = check_text("file:///p/f.flow", "/p/f.flow", 1,
    ...                "flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n")
    >>> print(hover_text(c, 3, 5))
    **coupling additive** (layer 0 of model `f`): additive coupling (NICE): y = x + t(x_kept) on the transformed part
    <BLANKLINE>
    - in (4,) -> out (4,)
    - parameters: 4,482
    - log-det: zero
    - dependency: coupling (2 of 4 positions kept, 2 transformed)
    >>> print(hover_text(c, 2, 4))
    **input x**: vector[4], shape (4,) (4 values)

    >>> c = check_text("file:///p/g.flow", "/p/g.flow", 1, "flow g {\\n  input x: vector[4]\\n"
    ...                "  condition c: sequence[6, 2] levels 3 embed mlp([8], out=5)\\n  coupling affine\\n}\\n")
    >>> print(hover_text(c, 3, 5))
    **condition c**: sequence[6, 2] levels 3 embed mlp(hidden=[8], out=5)
    <BLANKLINE>
    - a caller passes shape (6, 2), whole numbers 0..2 (a LongTensor [B, *shape])
    - encoded: sequence[6, 6], shape (6, 6) (one-hot)
    - embed: `mlp(hidden=[8])` (36,) -> (5,), 341 parameters (trains with the model)
    - the layers read vector[5], shape (5,)
    - read by 1 of 1 layer

On the ``base`` or ``output`` line: the distribution, the shape it reads, its parameters and report.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowdsl.analysis.ir import LayerNode, ModelIR
from flowdsl.editor.documents import Checked
from flowdsl.editor.positions import contains
from flowdsl.editor.schema import arguments, value_text
from flowdsl.errors import Pos
from flowdsl.language import ast
from flowdsl.layers.registry import LAYERS

__all__ = ["hover_text", "hover_in_used_file", "dependency_summary", "condition_lines"]

_MAX_LISTED = 24  # layers listed in a block call's expansion


def _span_size(pos: Pos) -> tuple[int, int]:
    return (pos.end_line - pos.line, pos.end_column - pos.column if pos.end_line == pos.line else 10**6)


def dependency_summary(dep) -> str:
    """One line about a declared Dependency (kind, and which positions it keeps or transforms)."""
    if dep is None:
        return "not declared"
    size = int(dep.size)
    transformed = int(dep.transformed.sum())
    if dep.kind == "coupling":
        return f"coupling ({size - transformed} of {size} positions kept, {transformed} transformed)"
    if dep.kind == "permutation":
        return f"permutation of {size} positions"
    if dep.kind == "elementwise":
        return f"elementwise on {size} positions ({transformed} transformed)"
    return f"{dep.kind} on {size} positions"


def _shape(shape) -> str:
    return "unknown" if shape is None else str(tuple(shape))


def _layer_lines(ir: ModelIR, node: LayerNode, copies: int) -> list[str]:
    summary = type(node.layer).summary
    head = f"**{node.key}** (layer {node.position} of model `{ir.name}`)" + (f": {summary}" if summary else "")
    lines = [head, ""]
    if node.info is None:
        lines.append("- not inferred (an error before or at this layer)")
    else:
        lines += [f"- in {_shape(node.in_shape)} -> out {_shape(node.out_shape)}", f"- parameters: {node.params:,}",
                  f"- log-det: {node.logdet}", f"- dependency: {dependency_summary(node.dependency)}"]
        if node.factored is not None:
            lines.append(f"- factors out {_shape(node.factored)} to the base")
        if node.report:
            lines.append(f"- {node.report}")
    if node.trace:
        lines.append("- expanded from " + " <- ".join(f"`{name}` at {pos.line}:{pos.column}"
                                                      for name, pos in reversed(node.trace)))
    if copies > 1:
        lines.append(f"- this line expands to {copies} layers (repeat/for/block); shown: the first")
    return lines


def _nodes_at(checked: Checked, file: str, line: int, column: int) -> Iterable[tuple[ModelIR, LayerNode]]:
    for ir in checked.analysis.models.values():
        for node in ir.layers:
            if node.pos.file == file and contains(node.pos, line, column):
                yield ir, node


def _layer_hover(checked: Checked, line: int, column: int, file: str = "") -> str | None:
    found = list(_nodes_at(checked, file or checked.path, line, column))
    if not found:
        return None
    smallest = min(_span_size(node.pos) for _, node in found)
    found = [(ir, n) for ir, n in found if _span_size(n.pos) == smallest]
    ir, node = found[0]
    return "\n".join(_argument_lines(node, line, column) + _layer_lines(ir, node, len(found)))


def _argument_lines(node: LayerNode, line: int, column: int) -> list[str]:
    """What the argument under the cursor is (its type and default) and the value it bound to."""
    for name, pos in node.arg_pos:
        if contains(pos, line, column) and name in type(node.layer).model_fields:
            arg = next(a for a in arguments(type(node.layer)) if a.name == name)
            value = value_text(getattr(node.layer, name))
            return [f"argument `{name}` of `{node.key}`: {arg.type_text} (default {arg.default}), here {value}", ""]
    return []


def _block_call_hover(checked: Checked, line: int, column: int, file: str = "") -> str | None:
    file = file or checked.path
    for ir in checked.analysis.models.values():
        calls: dict[Pos, list[LayerNode]] = {}
        for node in ir.layers:
            for _, pos in node.trace:
                if pos.file == file and contains(pos, line, column):
                    calls.setdefault(pos, []).append(node)
        if calls:
            pos = min(calls, key=_span_size)
            nodes = calls[pos]
            name = next(n for n, p in nodes[0].trace if p == pos)
            lines = [f"**block {name}** expands to {len(nodes)} layers in model `{ir.name}` "
                     f"({sum(n.params for n in nodes):,} parameters):", ""]
            for n in nodes[:_MAX_LISTED]:
                lines.append(f"- {n.position}: `{n.key}` -> {_shape(n.out_shape)}, {n.params:,} parameters")
            if len(nodes) > _MAX_LISTED:
                lines.append(f"- ... and {len(nodes) - _MAX_LISTED} more")
            return "\n".join(lines)
    return None


def _declaration_hover(checked: Checked, line: int, column: int) -> str | None:
    for ir in checked.analysis.models.values():
        inp, cond = ir.header.input, ir.header.condition
        if inp is not None and inp.pos.file == checked.path and contains(inp.pos, line, column):
            values = 1
            for s in inp.shape:
                values *= s
            dims = ", ".join(map(str, inp.shape))
            levels = f", {inp.levels} levels" if inp.levels else ""
            return f"**input {inp.name}**: {inp.type_name}[{dims}], shape {inp.shape} ({values:,} values{levels})"
        if cond is not None and cond.pos.file == checked.path and contains(cond.pos, line, column):
            return "\n".join(condition_lines(ir))
    return None


def condition_lines(ir: ModelIR) -> list[str]:
    """The hover of a model's condition: what a caller passes, its encoding, the ``embed`` net, its readers."""
    cond = ir.header.condition
    assert cond is not None, "condition_lines of a model without a condition"
    if cond.type_name == "label":
        passes = f"a class label 0..{(cond.levels or 0) - 1} (a LongTensor [B])"
    elif cond.integer:
        passes = f"shape {cond.shape}, whole numbers 0..{(cond.levels or 0) - 1} (a LongTensor [B, *shape])"
    else:
        passes = f"shape {cond.shape}, real values (a float tensor [B, *shape])"
    raw, encoded = cond.raw, cond.encoded
    lines = [f"**condition {cond.name}**: {cond.describe()}", "", f"- a caller passes {passes}",
             f"- encoded: {raw.describe()}, shape {raw.shape}" + (" (one-hot)" if cond.integer else "")]
    if cond.embed is not None:
        net_in, net_out = cond.net_shapes
        lines.append(f"- embed: `{cond.embed.describe()}` {_shape(net_in)} -> {_shape(net_out)}, "
                     f"{cond.embed_params:,} parameters (trains with the model)")
    lines.append(f"- the layers read {encoded.describe()}, shape {encoded.shape}" + (
        f" ({encoded.features:,} features flattened, or the map)" if encoded.layout != "vector" else ""))
    readers = sum(node.reads_condition for node in ir.layers)
    opted_out = sum(not node.reads for node in ir.layers)
    base = " and the base" if getattr(ir.header.base, "conditional", False) else ""
    lines.append(f"- read by {readers} of {len(ir.layers)} layer{'' if len(ir.layers) == 1 else 's'}{base}"
                 + (f" ({opted_out} say reads=false)" if opted_out else ""))
    return lines


def _sink_hover(checked: Checked, line: int, column: int) -> str | None:
    program = checked.program
    for model in program.models if program else ():
        ir = checked.analysis.models.get(model.name)
        for stmt in model.body:
            if ir is None or not isinstance(stmt, (ast.BaseDecl, ast.OutputDecl)):
                continue
            if not contains(stmt.pos, line, column):
                continue
            sink = ir.sink
            what = "base density" if sink.op == "base" else "output distribution"
            summary = getattr(type(sink.spec), "summary", "")
            lines = [f"**{sink.op} {sink.spec.describe()}** ({what} of model `{ir.name}`)"
                     + (f": {summary}" if summary else ""), "", f"- reads shape {_shape(sink.in_shape)}",
                     f"- parameters: {sink.params:,}"]
            if sink.info.report:
                lines.append(f"- {sink.info.report}")
            return "\n".join(lines)
    return None


def _name_hover(checked: Checked, word: str) -> str | None:
    unit = checked.analysis.unit
    if word in unit.blocks:
        block = unit.blocks[word]
        return f"**block {word}**({', '.join(block.params)}), defined at {block.pos}"
    if word in unit.constants:
        return f"**constant {word}** = `{unit.constants[word]!r}`"
    cls = LAYERS.get(word)
    if cls is not None:
        args = ", ".join(cls.model_fields)
        return f"**{word}**({args}): {getattr(cls, 'summary', '')}"
    return None


def hover_text(checked: Checked, line: int, column: int, word: str = "") -> str | None:
    """Markdown for the 1-based ``(line, column)`` of the document, or None when there is nothing to say."""
    word = word or checked.index.word_at(line - 1, column - 1)
    for find in (_layer_hover, _block_call_hover, _declaration_hover, _sink_hover):
        text = find(checked, line, column)
        if text is not None:
            return text
    return _name_hover(checked, word) if word else None


def hover_in_used_file(checked: Checked, file: str, line: int, column: int) -> str | None:
    """Hover at ``(line, column)`` of ``file``, a file the document ``use``s (a block library has no model
    of its own: the models of the documents that use it say what its layers become)."""
    return _layer_hover(checked, line, column, file) or _block_call_hover(checked, line, column, file)
