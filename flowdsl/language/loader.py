"""Files -> a compilation unit: the main program, everything it ``use``s, its constants and blocks.

``use "other.flow"`` resolves relative to the file that says it. Every path is resolved once (its real
path: links followed, ``..`` removed), so each file is loaded once however it is spelt, and ``use``
cycles are found on the resolved files. ``use`` loads only ``.flow``/``.ar`` regular files inside the
project root (:func:`~flowdsl.language.spec_files.project_root`; ``root=`` names another,
``allow_outside=True`` lifts the confinement); a refusal never quotes the refused file and says the
same whether or not it exists. Missing files, cycles and duplicate definitions are diagnostics at the
``use`` statement.

Example:
    >>> unit = load_source("let w = 4\\nflow f {\\n  input x: vector[w]\\n}\\n", "f.flow")
    >>> unit.constants["w"], [m.name for m in unit.models]
    (4, ['f'])
    >>> [d.message for d in load_source('use "/etc/passwd"\\n', "f.flow").diagnostics]
    ["'use' loads only .flow and .ar spec files, not '/etc/passwd'"]
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from flowdsl.errors import Diagnostic, FlowDSLError, Pos, SpecError
from flowdsl.language import ast
from flowdsl.language.spec_files import SpecFileError, is_spec_name, path_problem, project_root, read_spec
from flowdsl.language.syntax import parse_program
from flowdsl.language.values import Value, evaluate

__all__ = ["Unit", "load_file", "load_source", "MAX_USE_DEPTH", "MAX_USE_FILES", "MAX_UNIT_CHARACTERS"]

MAX_USE_DEPTH = 32
MAX_USE_FILES = 256  # files one unit may load
MAX_UNIT_CHARACTERS = 8_000_000  # characters of all its files together


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
    #: the folder ``use`` may not leave (resolved), unless ``allow_outside``
    root: str = ""
    allow_outside: bool = False
    #: the ``use`` graph on resolved files (real paths): an edge per ``use``, node attribute ``name`` the shown name
    uses: nx.DiGraph = field(default_factory=nx.DiGraph, repr=False)
    characters: int = 0

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


def _identity(name: str) -> str:
    return "<string>" if name == "<string>" else os.path.realpath(name)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _target(unit: Unit, item: ast.Use, filename: str) -> tuple[str, str, str | bytes | None] | None:
    """``(shown name, identity, text or None to read it from disk)`` of a ``use``; None after reporting why not."""
    written = item.path
    problem = path_problem(written)
    if problem is not None:
        unit.error(item.pos, f"cannot use this file: {problem}")
        return None
    if not is_spec_name(written):
        unit.error(item.pos, f"'use' loads only .flow and .ar spec files, not '{written}'")
        return None
    legacy = written if filename == "<string>" else str(Path(filename).parent / written)
    shown = os.path.normpath(legacy)
    for key in (legacy, shown):  # a checkpoint's sources, under the name they were saved with
        if key in unit.files:
            return key, _identity(key), unit.files[key]
    real = os.path.realpath(shown)
    if not unit.allow_outside and not _inside(real, unit.root):
        unit.error(item.pos, f"'use' of a file outside the project root {unit.root}: '{written}'",
                   "move the file into the project, or allow it (loader option allow_outside=True, "
                   "flag --allow-outside)")
        return None
    if not is_spec_name(real):
        unit.error(item.pos, f"'{written}' is a link to a file that is not a .flow or .ar spec")
        return None
    return shown, real, None


def _use(unit: Unit, item: ast.Use, filename: str, stack: tuple[str, ...]) -> None:
    target = _target(unit, item, filename)
    if target is None:
        return
    shown, ident, text = target
    unit.uses.add_edge(stack[-1], ident)
    if ident in stack:
        cycle = [unit.uses.nodes[s].get("name", s) for s in stack[stack.index(ident):]] + [shown]
        unit.error(item.pos, "use cycle: " + " -> ".join(Path(s).name for s in cycle))
        return
    if unit.uses.nodes[ident].get("loaded"):
        return
    if len(stack) >= MAX_USE_DEPTH:
        unit.error(item.pos, f"'use' nested more than {MAX_USE_DEPTH} files deep")
        return
    if sum(1 for _, done in unit.uses.nodes(data="loaded") if done) >= MAX_USE_FILES:
        unit.error(item.pos, f"the spec uses more than {MAX_USE_FILES} files")
        return
    if text is None:
        try:
            text = read_spec(ident, follow=False)
        except SpecFileError as err:
            if err.missing:
                unit.error(item.pos, f"cannot find '{item.path}' (looked for {shown})")
            else:
                unit.error(item.pos, f"cannot use '{item.path}': {err.message}")
            return
    if unit.characters + len(text) > MAX_UNIT_CHARACTERS:
        unit.error(item.pos, f"the spec and the files it uses exceed {MAX_UNIT_CHARACTERS:,} characters")
        return
    if shown in unit.sources or shown in unit.programs:  # another file shown under this name: show the real path
        shown = ident
    _load(unit, text, shown, stack + (ident,))


def _load(unit: Unit, text, filename: str, stack: tuple[str, ...]) -> None:
    unit.uses.add_node(stack[-1], name=filename, loaded=True)
    unit.characters += len(text)
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
    for item in prog.items:
        if isinstance(item, ast.Use):
            _use(unit, item, filename, stack)
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


def _root(filename: str, root: str | Path | None) -> str:
    if root is not None:
        return os.path.realpath(root)
    return str(project_root(filename))  # "<string>": from the working folder


def load_source(text: str | bytes, filename: str = "<string>", files: dict[str, str] | None = None, *,
                root: str | Path | None = None, allow_outside: bool = False) -> Unit:
    """Load a spec given as text (``use`` resolves relative to ``filename``'s folder, ``files`` first).

    ``root``: the folder ``use`` may not leave (default: the project root of ``filename``);
    ``allow_outside``: let ``use`` load spec files anywhere.
    """
    unit = Unit(main=filename, files=dict(files or {}), root=_root(filename, root), allow_outside=allow_outside)
    _load(unit, text, filename, (_identity(filename),))
    return unit


def load_file(path: str | Path, *, root: str | Path | None = None, allow_outside: bool = False) -> Unit:
    """Load a spec file; a missing, unreadable, non-regular or oversized file is a diagnostic, not an exception."""
    name = str(path)
    try:
        text = read_spec(name)
    except SpecFileError as err:
        unit = Unit(main=name)
        unit.error(Pos(name, 0, 0), err.message)
        return unit
    return load_source(text, name, root=root, allow_outside=allow_outside)
