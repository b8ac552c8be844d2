"""Diagnostics: source spans, messages, related notes, and the one error root of flowdsl.

Every problem found in a spec becomes a :class:`Diagnostic` with a position (a span: where the
construct starts and, when known, where it ends) and, optionally, :class:`Related` notes that
point elsewhere (the block calls that led to it, ...). A stage that finds errors raises
:class:`FlowDSLError` carrying *all* of them, sorted. Diagnostics and :class:`SpecError`\\ s are
built, never mutated: a catcher that knows more makes a new one (:meth:`SpecError.replace`).

Example:
    >>> pos = Pos(file="spec.flow", line=2, column=5, end_line=2, end_column=13)
    >>> call = Pos(file="spec.flow", line=5, column=3, end_line=5, end_column=7)
    >>> d = Diagnostic(pos=pos, severity="error", message="unknown layer 'cuopling'",
    ...                related=trace_notes((("step", call),)))
    >>> print(d.render(source="block step() {\\n    cuopling\\n}\\nflow f {\\n  step\\n}\\n"))
    spec.flow:2:5: error: unknown layer 'cuopling'
            cuopling
            ^~~~~~~~
    spec.flow:5:3: note: in block 'step' called here
          step
          ^~~~
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Pos", "Related", "Diagnostic", "FlowDSLError", "SpecError", "Severity", "render_all", "has_errors",
    "trace_notes", "escape",
]

Severity = Literal["error", "warning", "note"]
_SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
_WINDOW = 120  # characters of a long source line shown around the caret
#: characters a terminal would act on rather than show: C0/C1 controls (ESC, BEL, ...), DEL, bidi overrides
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """``text`` with the characters a terminal would act on written as escapes (``\\x1b``, ``\\u202e``).

    >>> print(escape("red: " + chr(27) + "[31m, reversed: " + chr(0x202E)))
    red: \\x1b[31m, reversed: \\u202e
    """
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text)


@dataclass(frozen=True, order=True)
class Pos:
    """A span in a source file: 1-based start line and column; line 0 means "the whole file".

    ``end_line``/``end_column`` (exclusive, as Lark counts them) are 0 when the end is unknown.
    Positions compare, sort and hash by their start only: the end is extra detail for the caret.
    """

    file: str = "<string>"
    line: int = 0
    column: int = 0
    end_line: int = field(default=0, compare=False)
    end_column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"

    @property
    def width(self) -> int:
        """Characters the span covers on its start line: 0 when the end is unknown or on another line."""
        if self.end_line != self.line or self.end_column <= self.column:
            return 0
        return self.end_column - self.column


@dataclass(frozen=True)
class Related:
    """A note attached to a diagnostic, at another place (e.g. the block call that led to it)."""

    pos: Pos
    message: str


def trace_notes(trace: Iterable[tuple[str, Pos]]) -> tuple[Related, ...]:
    """Related notes for a block-call trace (``(block name, call position)`` pairs, outermost first)."""
    return tuple(Related(pos, f"in block '{name}' called here") for name, pos in trace)


def _excerpt(pos: Pos, source: str | None) -> str:
    """The source line of ``pos`` and its underline (``^~~~``), indented; "" when there is none to show."""
    if source is None or pos.line <= 0:
        return ""
    lines = source.split("\n")  # the parser counts lines at "\n" only
    if pos.line > len(lines):
        return ""
    raw = lines[pos.line - 1].rstrip("\r")
    line = escape(raw.expandtabs(4))
    column = len(escape(raw[:max(pos.column - 1, 0)].expandtabs(4)))  # display columns: tabs expanded, escaped
    end = len(escape(raw[:pos.column - 1 + pos.width].expandtabs(4))) if pos.width else column + 1
    end = max(min(end, len(line)), column + 1)
    if len(line) > _WINDOW:  # show a window around the column of a very long line
        start = max(0, min(column - _WINDOW // 2, len(line) - _WINDOW))
        shift = 3 if start else 0
        end = min(end, start + _WINDOW)
        line = ("..." if start else "") + line[start:start + _WINDOW] + ("..." if start + _WINDOW < len(line) else "")
        column, end = column - start + shift, max(end - start + shift, column - start + shift + 1)
    underline = " " * column + "^" + "~" * (end - column - 1)
    return f"\n    {line}\n    {underline}"


@dataclass(frozen=True)
class Diagnostic:
    """One message about a spec: where, how bad, what; a hint, and notes at related places."""

    pos: Pos
    severity: Severity
    message: str
    hint: str | None = None
    related: tuple[Related, ...] = ()

    def sort_key(self):
        return (self.pos.file, self.pos.line, self.pos.column, _SEVERITY_RANK[self.severity], self.message)

    def render(self, source: str | None = None, sources: Mapping[str, str] | None = None) -> str:
        """Render as ``file:line:col: severity: message``, the source line underlined, the hint, then the
        related notes (``file:line:col: note: ...`` with their own line).

        ``source`` is the text of this diagnostic's file; ``sources`` maps file names to texts, for
        related notes in other files (and for this file when ``source`` is not given).
        """
        sources = sources or {}
        if source is None:
            source = sources.get(self.pos.file)
        text = f"{escape(str(self.pos))}: {self.severity}: {escape(self.message)}" + _excerpt(self.pos, source)
        if self.hint:
            text += f"\n    hint: {escape(self.hint)}"
        for note in self.related:
            note_source = sources.get(note.pos.file, source if note.pos.file == self.pos.file else None)
            text += f"\n{escape(str(note.pos))}: note: {escape(note.message)}" + _excerpt(note.pos, note_source)
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

    ``pos`` may be None when the raiser does not know it; the catcher makes a copy at the
    position of the construct it was working on (:meth:`with_pos`), it never edits the error.
    """

    message: str
    pos: Pos | None = None
    hint: str | None = None
    arg: str | None = None
    extra: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(self.message)

    def replace(self, **changes) -> SpecError:
        """A new error with some fields changed (its own copy of ``extra`` unless one is given)."""
        changes.setdefault("extra", list(self.extra))
        return dataclasses.replace(self, **changes)

    def with_pos(self, pos: Pos | None) -> SpecError:
        """A new error at ``pos``."""
        return self.replace(pos=pos)

    def at(self, pos: Pos, related: tuple[Related, ...] = ()) -> Diagnostic:
        """The diagnostic: at the error's own position, else at ``pos``."""
        return Diagnostic(pos=self.pos or pos, severity="error", message=self.message, hint=self.hint,
                          related=tuple(related))


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def render_all(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    sources = sources or {}
    ordered = sorted(diagnostics, key=Diagnostic.sort_key)
    return "\n".join(d.render(sources.get(d.pos.file), sources) for d in ordered)
