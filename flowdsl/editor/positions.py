"""Source positions between flowdsl and the Language Server Protocol.

flowdsl counts lines and columns from 1, in characters (:class:`~flowdsl.errors.Pos`, end exclusive,
0 when unknown); LSP counts from 0, columns in UTF-16 code units. :class:`LineIndex` converts both
ways for one text and finds the word under the cursor.

Example:
    >>> from flowdsl.errors import Pos
    >>> index = LineIndex("flow f {\\n  planar\\n}\\n")
    >>> index.to_range(Pos("f.flow", 2, 3, 2, 9))
    ((1, 2), (1, 8))
    >>> index.to_range(Pos("f.flow", 2, 3))  # end unknown: the word that starts there
    ((1, 2), (1, 8))
    >>> index.word_at(1, 4), index.to_pos(1, 4)
    ('planar', (2, 5))
"""

from __future__ import annotations

import re

from flowdsl.errors import Pos

__all__ = ["LineIndex", "contains", "WORD"]

#: a word as the grammar's NAME terminal spells it
WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class LineIndex:
    """Lines of one text (split at ``\\n`` as the parser counts them) and column conversions."""

    def __init__(self, text: str):
        self.lines = text.split("\n")

    def line(self, number: int) -> str:
        """0-based line ``number`` ('' beyond the end), without its ``\\r``."""
        return self.lines[number].rstrip("\r") if 0 <= number < len(self.lines) else ""

    def _lsp_column(self, line: int, column: int) -> int:
        """LSP column of a 1-based character column on 1-based ``line``."""
        return _utf16(self.line(line - 1)[:max(column - 1, 0)])

    def _char_column(self, line: int, character: int) -> int:
        """0-based character index of an LSP (UTF-16) column on 0-based ``line``."""
        text, units = self.line(line), 0
        for i, ch in enumerate(text):
            if units >= character:
                return i
            units += 2 if ord(ch) > 0xFFFF else 1
        return len(text)

    def to_range(self, pos: Pos) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((line, character), (end_line, end_character))``, 0-based; an unknown end ends the word there."""
        line = max(pos.line, 1)
        column = max(pos.column, 1)
        start = (line - 1, self._lsp_column(line, column))
        if pos.end_line > 0 and (pos.end_line, pos.end_column) > (line, column):
            return start, (pos.end_line - 1, self._lsp_column(pos.end_line, pos.end_column))
        if pos.line <= 0:  # the whole file: its first line
            return (0, 0), (0, _utf16(self.line(0)))
        text = self.line(line - 1)
        match = WORD.match(text, column - 1)
        end = match.end() if match else min(column, len(text))
        end = max(end, column)  # at least one character
        return start, (line - 1, _utf16(text[:end]))

    def to_pos(self, line: int, character: int) -> tuple[int, int]:
        """The 1-based ``(line, column)`` of an LSP position."""
        return line + 1, self._char_column(line, character) + 1

    def word_at(self, line: int, character: int) -> str:
        """The NAME the LSP position is in (or just after); '' if none."""
        text = self.line(line)
        at = self._char_column(line, character)
        for match in WORD.finditer(text):
            if match.start() <= at <= match.end():
                return match.group()
        return ""

    def prefix(self, line: int, character: int) -> str:
        """The text of ``line`` before the LSP position."""
        return self.line(line)[:self._char_column(line, character)]


def contains(pos: Pos, line: int, column: int) -> bool:
    """Whether the 1-based ``(line, column)`` lies in ``pos``'s span (its start word when the end is unknown)."""
    if pos.line <= 0 or (line, column) < (pos.line, pos.column):
        return False
    if pos.end_line > 0:
        return (line, column) < (pos.end_line, pos.end_column) or (line, column) == (pos.end_line, pos.end_column)
    return line == pos.line
