"""Diagnostics: source positions, messages, and the one error root of flowdsl.

Every problem found in a spec becomes a :class:`Diagnostic` with a position; a stage
that finds errors raises :class:`FlowDSLError` carrying *all* of them, sorted.

Example:
    >>> pos = Pos(file="spec.flow", line=2, column=5)
    >>> d = Diagnostic(pos=pos, severity="error", message="unknown layer 'cuopling'")
    >>> print(d.render(source="flow f {\\n    cuopling\\n}\\n"))
    spec.flow:2:5: error: unknown layer 'cuopling'
            cuopling
            ^
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

__all__ = ["Pos", "Diagnostic", "FlowDSLError", "SpecError", "Severity", "render_all", "has_errors"]

Severity = Literal["error", "warning", "note"]
_SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}


@dataclass(frozen=True, order=True)
class Pos:
    """A position in a source file (1-based line and column); line 0 means "the whole file"."""

    file: str = "<string>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One message about a spec: where, how bad, what."""

    pos: Pos
    severity: Severity
    message: str
    hint: str | None = None

    def sort_key(self):
        return (self.pos.file, self.pos.line, self.pos.column, _SEVERITY_RANK[self.severity], self.message)

    def render(self, source: str | None = None) -> str:
        """Render as ``file:line:col: severity: message``, then the source line and a caret."""
        text = f"{self.pos}: {self.severity}: {self.message}"
        if source is not None and self.pos.line > 0:
            lines = source.split("\n")  # the parser counts lines at "\n" only
            if self.pos.line <= len(lines):
                line = lines[self.pos.line - 1].rstrip("\r").expandtabs(4)
                column = max(self.pos.column - 1, 0)
                if len(line) > 120:  # show a window around the column of a very long line
                    start = max(0, min(column - 60, len(line) - 120))
                    line = ("..." if start else "") + line[start:start + 120] + ("..." if start + 120 < len(line) else "")
                    column = column - start + (3 if start else 0)
                caret = " " * column + "^"
                text += f"\n    {line}\n    {caret}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class FlowDSLError(Exception):
    """The one error root: carries every diagnostic of the failed stage (errors first by position)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics: list[Diagnostic] = sorted(diagnostics, key=Diagnostic.sort_key)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self) -> str:
        return render_all(self.diagnostics, self.sources)


@dataclass
class SpecError(Exception):
    """Raised inside a stage for one problem; the stage turns it into a Diagnostic.

    ``pos`` may be None when the raiser does not know it; the catcher fills in the
    position of the construct it was working on.
    """

    message: str
    pos: Pos | None = None
    hint: str | None = None
    arg: str | None = None
    extra: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(self.message)

    def at(self, pos: Pos) -> Diagnostic:
        return Diagnostic(pos=self.pos or pos, severity="error", message=self.message, hint=self.hint)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def render_all(diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None) -> str:
    sources = sources or {}
    ordered = sorted(diagnostics, key=Diagnostic.sort_key)
    return "\n".join(d.render(sources.get(d.pos.file)) for d in ordered)
