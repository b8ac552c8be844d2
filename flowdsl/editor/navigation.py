"""Go-to-definition (blocks, constants, ``use`` files) and document symbols (models, blocks, constants).

Both read the parsed program (the AST), never the IR, so they work while a model has errors.

Example:
    >>> from flowdsl.editor.documents import check_text
    >>> c = check_text("file:///p/f.flow", "/p/f.flow", 1,
    ...                "let w = 4\\nblock step() {\\n  planar\\n}\\nflow f {\\n  input x: vector[w]\\n  step\\n}\\n")
    >>> [(loc.range.start.line, loc.range.start.character) for loc in definition(c, 7, 3)]
    [(1, 6)]
    >>> [(loc.range.start.line, loc.range.start.character) for loc in definition(c, 6, 19)]
    [(0, 4)]
    >>> [(s.name, s.kind.name) for s in symbols(c)]
    [('w', 'Constant'), ('step', 'Function'), ('f', 'Class')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path

from flowdsl.editor.diagnostics import location, lsp_range
from flowdsl.editor.documents import Checked
from flowdsl.editor.positions import LineIndex, contains
from flowdsl.errors import Pos
from flowdsl.language import ast

__all__ = ["definition", "symbols", "name_pos"]


def name_pos(text: str | None, pos: Pos, name: str) -> Pos:
    """The span of ``name`` at or after the start of ``pos`` (a definition's name), else ``pos``."""
    if not text or pos.line <= 0:
        return pos
    lines = text.split("\n")
    for number in range(pos.line - 1, min(pos.end_line or pos.line, len(lines))):
        start = pos.column - 1 if number == pos.line - 1 else 0
        m = re.compile(rf"\b{re.escape(name)}\b").search(lines[number], start)
        if m:
            return Pos(pos.file, number + 1, m.start() + 1, number + 1, m.end() + 1)
    return pos


def _lets(body: Iterable[ast.Statement]) -> Iterator[ast.Let]:
    for stmt in body:
        if isinstance(stmt, ast.Let):
            yield stmt
        elif isinstance(stmt, (ast.Repeat, ast.ForLoop)):
            yield from _lets(stmt.body)


def _used_file(checked: Checked, use: ast.Use) -> str | None:
    """The file a ``use`` loaded: among the unit's sources, the one that is the named file."""
    named = os.path.realpath(Path(checked.path).parent / use.path)
    for file in checked.analysis.unit.sources:
        if file != checked.path and os.path.realpath(file) == named:
            return file
    return named if os.path.isfile(named) else None


def definition(checked: Checked, line: int, column: int) -> list[types.Location]:
    """Where the block, constant or ``use`` file under the 1-based ``(line, column)`` is defined."""
    unit = checked.analysis.unit
    program = checked.program
    for item in program.items if program else ():
        if isinstance(item, ast.Use) and contains(item.pos, line, column):
            file = _used_file(checked, item)
            if file is None:
                return []
            start = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
            return [types.Location(uri=from_fs_path(file) or file, range=start)]
    word = checked.index.word_at(line - 1, column - 1)
    if not word:
        return []
    if word in unit.blocks:
        block = unit.blocks[word]
        return [location(checked, name_pos(checked.text_of(block.pos.file), block.pos, word))]
    found = []
    for prog in unit.programs.values():
        bodies: list[Iterable[ast.Statement]] = [[i for i in prog.items if isinstance(i, ast.Let)]]
        if prog.file == checked.path:
            bodies += [i.body for i in prog.items if isinstance(i, (ast.ModelDef, ast.BlockDef))
                       and contains(i.pos, line, column)]
        for body in bodies:
            for let in _lets(body):
                if let.name == word:
                    found.append(location(checked, name_pos(checked.text_of(let.pos.file), let.pos, word)))
    return found


def _symbol(index: LineIndex, text: str, pos: Pos, name: str, kind, detail: str = "",
            children: list[types.DocumentSymbol] | None = None) -> types.DocumentSymbol:
    return types.DocumentSymbol(name=name, kind=kind, range=lsp_range(index, pos), detail=detail or None,
                                selection_range=lsp_range(index, name_pos(text, pos, name)), children=children)


def symbols(checked: Checked) -> list[types.DocumentSymbol]:
    """The document's models (with their input and condition), blocks and constants, in order."""
    program = checked.program
    if program is None:
        return []
    index, text, kinds = checked.index, checked.text, types.SymbolKind
    out = []
    for item in program.items:
        if isinstance(item, ast.Let):
            out.append(_symbol(index, text, item.pos, item.name, kinds.Constant))
        elif isinstance(item, ast.BlockDef):
            out.append(_symbol(index, text, item.pos, item.name, kinds.Function, f"block({', '.join(item.params)})"))
        elif isinstance(item, ast.ModelDef):
            decls = [_symbol(index, text, s.pos, s.name, kinds.Variable, s.kind)
                     for s in item.body if isinstance(s, (ast.InputDecl, ast.ConditionDecl))]
            out.append(_symbol(index, text, item.pos, item.name, kinds.Class, item.model_kind, decls))
    return out
