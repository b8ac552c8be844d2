"""Files -> a compilation unit: the main program, everything it ``use``s, its constants and blocks.

``use "other.flow"`` resolves relative to the file that says it. Missing files and
``use`` cycles are diagnostics at the ``use`` statement; so are duplicate definitions.

Example:
    >>> unit = load_source("let w = 4\\nflow f {\\n  input x: vector[w]\\n}\\n", "f.flow")
    >>> unit.constants["w"], [m.name for m in unit.models]
    (4, ['f'])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from flowdsl.errors import Diagnostic, FlowDSLError, Pos, SpecError
from flowdsl.language import ast
from flowdsl.language.syntax import parse_program
from flowdsl.language.values import Value, evaluate

__all__ = ["Unit", "load_file", "load_source", "MAX_USE_DEPTH"]

MAX_USE_DEPTH = 32


@dataclass
class Unit:
    """What one main file sees: its models, and the constants and blocks of it and its ``use``d files."""

    main: str
    sources: dict[str, str] = field(default_factory=dict)
    programs: dict[str, ast.Program] = field(default_factory=dict)
    constants: dict[str, Value] = field(default_factory=dict)
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: files given as text (a checkpoint's sources), consulted before the disk
    files: dict[str, str] = field(default_factory=dict)

    @property
    def models(self) -> list[ast.ModelDef]:
        prog = self.programs.get(self.main)
        return prog.models if prog else []

    @property
    def source_hash(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.sources):
            h.update(name.encode() + b"\0" + self.sources[name].encode() + b"\0")
        return h.hexdigest()

    def error(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(pos, "error", message, hint))


def _read(path: Path) -> str | bytes:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _load(unit: Unit, text, filename: str, stack: tuple[str, ...]) -> None:
    try:
        prog = parse_program(text, filename)
    except FlowDSLError as err:
        unit.diagnostics.extend(err.diagnostics)
        if isinstance(text, str):
            unit.sources[filename] = text
        return
    unit.sources[filename] = text if isinstance(text, str) else ""
    unit.programs[filename] = prog
    if not prog.items:
        unit.diagnostics.append(Diagnostic(Pos(filename, 1, 1), "warning",
                                           "the file is empty: it defines no model, block or constant"))
    base = Path(filename).parent
    for item in prog.items:
        if isinstance(item, ast.Use):
            target = (base / item.path)
            key = str(target) if filename != "<string>" else item.path
            if key in stack:
                cycle = " -> ".join(Path(s).name for s in stack[stack.index(key):] + (key,))
                unit.error(item.pos, f"use cycle: {cycle}")
                continue
            if key in unit.programs:
                continue
            if len(stack) >= MAX_USE_DEPTH:
                unit.error(item.pos, f"'use' nested more than {MAX_USE_DEPTH} files deep")
                continue
            if key in unit.files:
                _load(unit, unit.files[key], key, stack + (key,))
                continue
            if not target.is_file():
                unit.error(item.pos, f"cannot find '{item.path}' (looked for {target})")
                continue
            try:
                text = _read(target)
            except OSError as err:
                unit.error(item.pos, f"cannot read '{item.path}': {err.strerror}")
                continue
            _load(unit, text, key, stack + (key,))
    # Definitions of used files come first (they were loaded above), then this file's.
    for item in prog.items:
        if isinstance(item, ast.Let):
            if item.name in unit.constants:
                unit.error(item.pos, f"constant '{item.name}' is defined twice")
                continue
            try:
                unit.constants[item.name] = evaluate(item.value, unit.constants)
            except SpecError as err:
                unit.diagnostics.append(err.at(item.pos))
        elif isinstance(item, ast.BlockDef):
            if item.name in unit.blocks:
                first = unit.blocks[item.name].pos
                unit.error(item.pos, f"block '{item.name}' is defined twice (first at {first})")
                continue
            if len(set(item.params)) != len(item.params):
                unit.error(item.pos, f"block '{item.name}' names a parameter twice")
            unit.blocks[item.name] = item
    if filename == unit.main:
        seen: dict[str, Pos] = {}
        for model in prog.models:
            if model.name in seen:
                unit.error(model.pos, f"model '{model.name}' is defined twice (first at {seen[model.name]})")
            seen.setdefault(model.name, model.pos)


def load_source(text: str | bytes, filename: str = "<string>", files: dict[str, str] | None = None) -> Unit:
    """Load a spec given as text (``use`` resolves relative to ``filename``'s folder, ``files`` first)."""
    unit = Unit(main=filename, files=dict(files or {}))
    _load(unit, text, filename, (filename,))
    return unit


def load_file(path: str | Path) -> Unit:
    """Load a spec file; a missing or unreadable file is a diagnostic, not an exception."""
    name = str(path)
    p = Path(path)
    if not p.is_file():
        unit = Unit(main=name)
        unit.error(Pos(name, 0, 0), "no such file" if not p.exists() else "not a file")
        return unit
    try:
        text = _read(p)
    except OSError as err:
        unit = Unit(main=name)
        unit.error(Pos(name, 0, 0), f"cannot read the file: {err.strerror}")
        return unit
    return load_source(text, name)
