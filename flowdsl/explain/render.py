"""Drawing pictures with matplotlib (imported on first use; no pyplot, no global state).

Each :class:`~flowdsl.explain.pictures.Panel` becomes one axes: its code array is handed to
``imshow`` as it is (a gap, code -1, is masked), with one colour per code and a legend of the codes
present; a real array uses a sequential colour map and may carry numbers; a network draws its units
and mask edges. :func:`save` writes every picture into one PNG or SVG (one sub-figure a picture);
:func:`picture_bytes` gives one picture's PNG or SVG for the HTML page.

Example:
    >>> import numpy as np
    >>> from flowdsl.explain.pictures import Panel, Picture
    >>> picture = Picture("demo", "demo", "a 2 x 2 set", ((Panel("set", np.array([[1, 0], [0, 1]])),),))
    >>> fig = figure(picture)
    >>> fig.axes[0].images[0].get_array().tolist()   # exactly the panel's codes
    [[1, 0], [0, 1]]
    >>> picture_bytes(picture, "svg", dpi=40)[:5]
    b'<?xml'
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from flowdsl.explain.pictures import Network, Panel, Picture

__all__ = ["require_matplotlib", "figure", "draw_picture", "save", "picture_bytes", "FORMATS"]

FORMATS = ("png", "svg")
_WIDTH = 3.3  # inches per panel column


def require_matplotlib():
    """matplotlib's Figure class, or a one-line error naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        from flowdsl.explain.model_pictures import explain_error

        raise explain_error("pictures need the 'matplotlib' package", "pip install 'flowdsl[plot]'") from None
    return Figure


def _is_strip(panel: Panel) -> bool:
    """A long row of cells (a sequence), drawn stretched rather than square."""
    return panel.image is not None and panel.image.shape[1] > max(16, 8 * panel.image.shape[0])


def _row_height(row, panel_width: float = _WIDTH) -> float:
    """Inches: strips are low; a square-celled image is as high as its aspect needs, at most 3.4."""
    if all(_is_strip(p) for p in row):
        return 1.6
    heights = [3.4 if p.image is None else min(3.4, 0.9 + (panel_width - 0.6) * p.image.shape[0] / p.image.shape[1])
               for p in row]
    return max(heights)


def _panel_width(picture: Picture) -> float:
    cols = max(len(row) for row in picture.rows)
    return min(18.0, max(6.0, _WIDTH * cols)) / cols


def _size(picture: Picture) -> tuple[float, float]:
    cols = max(len(row) for row in picture.rows)
    width = min(18.0, max(6.0, _WIDTH * cols))
    return width, sum(_row_height(row, _panel_width(picture)) for row in picture.rows) + 1.8


def _draw_codes(ax, panel: Panel) -> None:
    from matplotlib.colors import ListedColormap

    image = np.asarray(panel.image)
    h, w = image.shape
    x0, y0 = panel.origin
    extent = (x0 - 0.5, x0 + w - 0.5, y0 - 0.5, y0 + h - 0.5) if panel.bottom_up else \
        (x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)
    where = "lower" if panel.bottom_up else "upper"
    aspect = "auto" if _is_strip(panel) else "equal"
    if panel.colours:
        cmap = ListedColormap([c for _, c in panel.colours]).with_extremes(bad="white")
        ax.imshow(np.ma.masked_less(image, 0), cmap=cmap, vmin=-0.5, vmax=len(panel.colours) - 0.5,
                  interpolation="nearest", extent=extent, aspect=aspect, origin=where)
    else:
        ax.imshow(image, cmap="viridis", interpolation="nearest", extent=extent, aspect=aspect, origin=where)
    if panel.numbers is not None:
        for (i, j), value in np.ndenumerate(np.asarray(panel.numbers)):
            ax.text(x0 + j, y0 + i, str(value), ha="center", va="center", fontsize=6, color="white")
    if max(h, w) <= 40 and not _is_strip(panel):
        step = 1 if max(h, w) <= 16 else 4
        ax.set_xticks(np.arange(x0, x0 + w, step))
        ax.set_yticks(np.arange(y0, y0 + h, step))
        ax.set_xticks(np.arange(x0 - 0.5, x0 + w, 1), minor=True)
        ax.set_yticks(np.arange(y0 - 0.5, y0 + h, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    if _is_strip(panel) and h <= 2:
        ax.set_yticks([])
    if not panel.ticks:
        ax.set_xticks([])
        ax.set_yticks([])


def _draw_network(ax, net: Network) -> None:
    from matplotlib.collections import LineCollection

    sizes = [net.masks[0].shape[1]] + [m.shape[0] for m in net.masks]
    xs = [np.linspace(0.0, 1.0, s) if s > 1 else np.array([0.5]) for s in sizes]
    segments = []
    for k, mask in enumerate(net.masks):
        for o, i in np.argwhere(mask):
            segments.append([(xs[k][i], k), (xs[k + 1][o], k + 1)])
    ax.add_collection(LineCollection(segments, colors="#2b6cb0", linewidths=0.5, alpha=0.6))
    for k, x in enumerate(xs):
        ax.scatter(x, np.full(len(x), k), s=40, color="#f6ad55", zorder=3, edgecolors="0.3", linewidths=0.5)
        for xi, label in zip(x, net.labels[k]):
            ax.text(xi, k, label, ha="center", va="center", fontsize=5, zorder=4)
    ax.set_yticks(range(len(sizes)), net.titles, fontsize=7)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks([])
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.5, len(sizes) - 0.5)


def _legend(fig, picture: Picture) -> None:
    from matplotlib.patches import Patch

    seen: dict[str, str] = {}
    for panel in picture.panels:
        if panel.image is None or not panel.colours:
            continue
        for code in np.unique(panel.image):
            if 0 <= code < len(panel.colours):
                label, colour = panel.colours[int(code)]
                seen.setdefault(label, colour)
    if seen:
        handles = [Patch(facecolor=c, edgecolor="0.5", label=label) for label, c in seen.items()]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)


def draw_picture(fig, picture: Picture) -> None:
    """Draw ``picture`` into a Figure or SubFigure (sized by :func:`_size`)."""
    cols = max(len(row) for row in picture.rows)
    heights = [_row_height(row, _panel_width(picture)) for row in picture.rows]
    inches = _size(picture)[1]
    grid = fig.add_gridspec(len(picture.rows), cols, height_ratios=heights, left=0.06, right=0.98,
                            top=1 - 1.05 / inches, bottom=0.75 / inches, hspace=0.7, wspace=0.3)
    for r, row in enumerate(picture.rows):
        for c, panel in enumerate(row):
            ax = fig.add_subplot(grid[r, c])
            if panel.network is not None:
                _draw_network(ax, panel.network)
            elif panel.image is not None:
                _draw_codes(ax, panel)
            ax.set_title(panel.title, fontsize=8)
            ax.set_xlabel(panel.xlabel, fontsize=7)
            ax.set_ylabel(panel.ylabel, fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(picture.title, fontsize=11, x=0.02, y=1 - 0.08 / inches, ha="left", va="top")
    fig.text(0.02, 1 - 0.4 / inches, picture.caption, fontsize=7.5, ha="left", va="top", wrap=True, color="0.25")
    _legend(fig, picture)


def figure(picture: Picture, dpi: int = 100):
    """One picture as a matplotlib Figure (not attached to pyplot)."""
    fig = require_matplotlib()(figsize=_size(picture), dpi=dpi)
    draw_picture(fig, picture)
    return fig


def picture_bytes(picture: Picture, fmt: str = "png", dpi: int = 100) -> bytes:
    """One picture as PNG or SVG bytes."""
    out = io.BytesIO()
    figure(picture, dpi).savefig(out, format=fmt, dpi=dpi)
    return out.getvalue()


def save(pictures: list[Picture], path, dpi: int = 100) -> None:
    """Every picture, one below the other, into one PNG or SVG file (the suffix says which)."""
    path = Path(path)
    sizes = [_size(p) for p in pictures]
    fig = require_matplotlib()(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes)), dpi=dpi)
    subs = fig.subfigures(len(pictures), 1, height_ratios=[h for _, h in sizes], squeeze=False)[:, 0] \
        if len(pictures) > 1 else [fig]
    for sub, picture in zip(subs, pictures):
        draw_picture(sub, picture)
    fig.savefig(path, format=path.suffix.lower().lstrip("."), dpi=dpi)
