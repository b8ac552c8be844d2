"""One block of a Markdown file between two marker lines, replaced in place: how every benchmark writes its table.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "doc.md"
    >>> _ = p.write_text("# Doc\\n")
    >>> replace_block(p, "<!-- t:start -->", "<!-- t:end -->", "| a |")
    >>> replace_block(p, "<!-- t:start -->", "<!-- t:end -->", "| b |")
    >>> p.read_text()
    '# Doc\\n\\n<!-- t:start -->\\n| b |\\n<!-- t:end -->\\n'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["replace_block"]


def replace_block(path: Path, begin: str, end: str, block: str) -> None:
    """Put ``block`` between the markers ``begin`` and ``end`` of ``path`` (appended, after a blank line,
    with its markers when the file has none; the file is created when missing)."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    new = f"{begin}\n{block}\n{end}"
    if begin in text and end in text[text.index(begin):]:
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        text = text[:start] + new + text[stop:]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + new + "\n"
    path.write_text(text)
