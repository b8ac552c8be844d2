"""The checked documents of an editor session and the ``use`` graph between files.

:func:`check_text` runs the same analysis as ``flowdsl check`` on an editor buffer (open buffers of
``use``d files are read before the disk); :class:`Documents` keeps the latest result per document
and answers which open documents read a given file, so that an edit there re-checks them.

Example:
    >>> docs = Documents()
    >>> checked = check_text("file:///p/a.flow", "/p/a.flow", 1, "let w = 2\\nflow f {\\n  input x: vector[w]\\n}\\n")
    >>> docs.store(checked)
    >>> checked.ok, list(checked.analysis.models), docs.dependents("/p/b.flow")
    (True, ['f'], [])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from flowdsl.analysis.analyze import Analysis, analyze_unit
from flowdsl.editor.positions import LineIndex
from flowdsl.language import ast
from flowdsl.language.loader import load_source

__all__ = ["Checked", "Documents", "check_text", "canonical"]


def canonical(path: str) -> str:
    """The one name a file goes by in the dependency graph (its real path)."""
    return os.path.realpath(path)


@dataclass
class Checked:
    """One analysed version of a document."""

    uri: str
    path: str
    version: int | None
    text: str
    analysis: Analysis
    index: LineIndex
    #: real paths of the files the document ``use``s, directly or not
    depends_on: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.analysis.ok

    @property
    def program(self) -> ast.Program | None:
        """The document's parse (None after a syntax error)."""
        return self.analysis.unit.programs.get(self.path)

    def text_of(self, file: str) -> str | None:
        """The text of the document or of a file it reads, as the analysis saw it."""
        return self.text if file == self.path else self.analysis.unit.sources.get(file)


def check_text(uri: str, path: str, version: int | None, text: str,
               open_files: dict[str, str] | None = None) -> Checked:
    """Analyse ``text`` as the file ``path``; ``open_files`` (path -> text) are read before the disk."""
    unit = load_source(text, path, files=open_files or {})
    analysis = analyze_unit(unit)
    deps = frozenset(canonical(f) for f in unit.sources if f != path)
    return Checked(uri, path, version, text, analysis, LineIndex(text), deps)


@dataclass
class Documents:
    """The latest check of every open document, and the last one that parsed (for completion)."""

    checked: dict[str, Checked] = field(default_factory=dict)
    parsed: dict[str, Checked] = field(default_factory=dict)

    def store(self, checked: Checked) -> None:
        self.checked[checked.uri] = checked
        if checked.program is not None:
            self.parsed[checked.uri] = checked

    def forget(self, uri: str) -> None:
        self.checked.pop(uri, None)
        self.parsed.pop(uri, None)

    def get(self, uri: str) -> Checked | None:
        return self.checked.get(uri)

    def last_parsed(self, uri: str) -> Checked | None:
        return self.parsed.get(uri)

    def dependents(self, path: str) -> list[str]:
        """URIs of the checked documents that read ``path`` (directly or through another file)."""
        real = canonical(path)
        return sorted(uri for uri, c in self.checked.items() if real in c.depends_on)


def open_file_map(paths_and_texts: dict[str, str]) -> dict[str, str]:
    """Open buffers keyed by every name the loader may look them up by (as given, and the real path)."""
    files: dict[str, str] = {}
    for path, text in paths_and_texts.items():
        files[path] = text
        files[canonical(path)] = text
        files[str(Path(path))] = text
    return files
