"""The checker's diagnostics as LSP diagnostics: spans, severity, block-call traces and hints.

A diagnostic keeps its start and end; its :class:`~flowdsl.errors.Related` notes (the block calls
that led to it) become related information, and its hint a related note at the same place. A
diagnostic in a ``use``d file is shown in the document at the place that leads there (the
outermost block call in the document, else its first ``use``), pointing at the real place.

Example:
    >>> from flowdsl.editor.documents import check_text
    >>> c = check_text("file:///p/f.flow", "/p/f.flow", 1, "flow f {\\n  input x: vector[4]\\n  planr\\n}\\n")
    >>> [(d.range.start.line, d.range.start.character, d.range.end.character, d.message) for d in to_lsp(c)]
    [(2, 2, 7, "unknown layer 'planr'")]
    >>> [r.message for r in to_lsp(c)[0].related_information]
    ["hint: did you mean 'planar'?"]
"""

from __future__ import annotations

from lsprotocol import types
from pygls.uris import from_fs_path

from flowdsl.editor.documents import Checked
from flowdsl.editor.positions import LineIndex
from flowdsl.errors import Diagnostic, Pos
from flowdsl.language import ast

__all__ = ["to_lsp", "lsp_range", "location"]

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "note": types.DiagnosticSeverity.Information,
}


def lsp_range(index: LineIndex, pos: Pos) -> types.Range:
    (line, char), (end_line, end_char) = index.to_range(pos)
    return types.Range(start=types.Position(line=line, character=char),
                       end=types.Position(line=end_line, character=end_char))


def location(checked: Checked, pos: Pos) -> types.Location:
    """The LSP location of ``pos`` (in the document or in a file it reads)."""
    text = checked.text_of(pos.file)
    uri = checked.uri if pos.file == checked.path else (from_fs_path(pos.file) or pos.file)
    return types.Location(uri=uri, range=lsp_range(LineIndex(text or ""), pos))


def _anchor(checked: Checked, diag: Diagnostic) -> Pos:
    """Where in the document a diagnostic of another file is shown."""
    for note in diag.related:
        if note.pos.file == checked.path:
            return note.pos
    program = checked.program
    uses = [item.pos for item in (program.items if program else ()) if isinstance(item, ast.Use)]
    return uses[0] if uses else Pos(checked.path, 1, 1)


def _convert(checked: Checked, diag: Diagnostic) -> types.Diagnostic:
    related = [types.DiagnosticRelatedInformation(location=location(checked, note.pos), message=note.message)
               for note in diag.related]
    if diag.hint:
        related.append(types.DiagnosticRelatedInformation(location=location(checked, diag.pos),
                                                          message=f"hint: {diag.hint}"))
    message, pos = diag.message, diag.pos
    if pos.file != checked.path:
        related.insert(0, types.DiagnosticRelatedInformation(location=location(checked, pos),
                                                             message=f"{diag.severity} here"))
        message, pos = f"{pos}: {message}", _anchor(checked, diag)
    return types.Diagnostic(range=lsp_range(checked.index, pos), message=message, severity=_SEVERITY[diag.severity],
                            source="flowdsl", related_information=related or None)


def to_lsp(checked: Checked) -> list[types.Diagnostic]:
    """Every diagnostic of the document's analysis, in the document's coordinates."""
    return [_convert(checked, d) for d in checked.analysis.diagnostics]
