"""One self-contained HTML page: per model the report, the IR graph and the pictures, as data URIs.

Nothing is fetched: pictures are PNG data URIs, the IR graph an SVG data URI (drawn by
:func:`flowdsl.cli.graph.draw`), the style is inline. A small script counts the pictures that
loaded and any script error into ``<div id="status">`` (``data-loaded``, ``data-expected``,
``data-errors``), so that a headless browser's rendered DOM says whether the page works.

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n", "f.flow")
    >>> text = page(a, {"f": []}, dpi=30, graphs=False)
    >>> text.startswith("<!doctype html>"), 'data-expected="0"' in text, "<td>coupling additive</td>" in text
    (True, True, True)
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from flowdsl.explain.pictures import Picture
from flowdsl.explain.render import picture_bytes
from flowdsl.explain.report import COLUMNS, model_report

__all__ = ["page", "data_uri", "graph_svg"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1a202c; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; border-bottom: 1px solid #cbd5e0; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
td, th { border: 1px solid #e2e8f0; padding: 2px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; } .header { font-family: monospace; white-space: pre; }
.warning { color: #c05621; } .error { color: #c53030; } .note { color: #2c5282; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #edf2f7; }
figcaption { font-size: 0.85em; color: #4a5568; } #status { font-size: 0.7em; color: #a0aec0; }
"""

#: in <head>: counts script errors and failed resources from the start
_WATCH = """
window.explainErrors = 0;
window.addEventListener("error", function () { window.explainErrors += 1; }, true);
"""

_SCRIPT = """
(function () {
  var status = document.getElementById("status");
  window.addEventListener("load", function () {
    status.dataset.errors = String(window.explainErrors);
    var images = Array.prototype.slice.call(document.querySelectorAll("img.picture"));
    var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    status.dataset.loaded = String(loaded);
    status.textContent = "pictures loaded: " + loaded + " of " + images.length;
  });
})();
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def graph_svg(ir) -> bytes:
    """The IR graph as SVG (Graphviz when installed, else matplotlib)."""
    from flowdsl.cli.graph import draw

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.svg"
        draw(ir, path)
        return path.read_bytes()


def _table(report) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row in report.rows:
        cells = "".join(f'<td class="num">{html.escape(v)}</td>' if k == 5 else f"<td>{html.escape(v)}</td>"
                        for k, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _figure(picture: Picture, dpi: int) -> str:
    src = data_uri(picture_bytes(picture, "png", dpi), "image/png")
    return (f'<figure id="{html.escape(picture.name.replace(" ", "-"))}"><img class="picture" alt="'
            f'{html.escape(picture.title)}" src="{src}"><figcaption>{html.escape(picture.caption)}</figcaption>'
            f"</figure>")


def page(analysis, pictures: dict[str, list[Picture]], dpi: int = 100, graphs: bool = True) -> str:
    """The page for the models named in ``pictures`` (model name -> its pictures)."""
    parts, expected = [], 0
    for name, found in pictures.items():
        ir = analysis.models[name]
        report = model_report(analysis, ir)
        parts.append(f'<section class="model" id="model-{html.escape(name)}"><h2>{html.escape(report.header[0])}</h2>')
        parts.append(f'<div class="header">{html.escape(chr(10).join(report.header[1:]))}</div>')
        parts.append(_table(report) + f"<p>{html.escape(report.total)}</p>")
        if report.notes:
            items = "".join(f'<li class="{s}">{s}: {html.escape(m)}</li>' for s, m in report.notes)
            parts.append(f"<ul>{items}</ul>")
        if graphs:
            src = data_uri(graph_svg(ir), "image/svg+xml")
            parts.append(f'<figure class="graph"><img class="picture" alt="IR graph of {html.escape(name)}" '
                         f'src="{src}"><figcaption>The IR: every layer with its shapes, source line and '
                         f"parameters.</figcaption></figure>")
            expected += 1
        parts += [_figure(p, dpi) for p in found]
        expected += len(found)
        parts.append("</section>")
    title = f"flowdsl explain {analysis.unit.main}"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style><script>{_WATCH}</script></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}"
            f'<div id="status" data-expected="{expected}" data-loaded="0" data-errors="0">pictures not checked</div>'
            f"<script>{_SCRIPT}</script></body></html>\n")
