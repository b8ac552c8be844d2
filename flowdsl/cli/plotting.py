"""Pictures and sounds of samples: image grids, 2-D scatter + density, waveforms, WAV files.

Image grids are written pixel-exact with Pillow (a cell is ``scale`` x the image, ``pad``
pixels apart: see :func:`grid_size`); plots use matplotlib's Agg backend at a fixed size.
Both come with ``pip install 'flowdsl[plot]'``. No torch here: everything takes numpy arrays.

Example:
    >>> grid_size(16, 8, 8, scale=4)  # 4 x 4 cells of 32 x 32 pixels, 2 pixels apart
    (138, 138)
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> image_grid(np.zeros((3, 1, 8, 8), dtype=int), path, levels=17, cols=3, scale=2)
    (56, 20)
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

__all__ = [
    "grid_size", "to_rgb", "image_grid", "scatter_density", "waveform_plot", "write_wav", "path_plot",
    "OCCLUDED", "PLOT_SIZE",
]

#: the colour of occluded pixels in completion pictures
OCCLUDED = (150, 30, 30)
#: (width, height) in pixels of the matplotlib pictures (scatter + density, waveforms, paths)
PLOT_SIZE = (800, 400)
_DPI = 100


def _require(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        from flowdsl.errors import Diagnostic, FlowDSLError, Pos

        raise FlowDSLError([Diagnostic(Pos("plot"), "error", f"pictures need the '{module.split('.')[0]}' package",
                                       "pip install 'flowdsl[plot]'")]) from None


def default_scale(h: int, w: int) -> int:
    """Small images are enlarged to about 32 pixels a side."""
    return max(1, 32 // max(h, w))


def grid_size(n: int, h: int, w: int, cols: int | None = None, scale: int | None = None, pad: int = 2):
    """(width, height) in pixels of a grid of ``n`` images of ``h x w``."""
    scale = scale or default_scale(h, w)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    return cols * (w * scale + pad) + pad, rows * (h * scale + pad) + pad


def to_rgb(images, levels: int | None) -> np.ndarray:
    """[N, C, H, W] integers in 0..levels-1 (or reals, min-max scaled) -> [N, H, W', 3] uint8.

    One channel is grey, three are RGB; other channel counts are laid side by side in grey.
    """
    x = np.asarray(images, dtype=np.float64)
    if levels:
        x = x / max(levels - 1, 1)
    else:
        lo, hi = np.nanmin(x), np.nanmax(x)
        x = (x - lo) / (hi - lo if hi > lo else 1.0)
    x = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    n, c, h, w = x.shape
    if c == 3:
        return x.transpose(0, 2, 3, 1)
    grey = x.transpose(0, 2, 1, 3).reshape(n, h, c * w)
    return np.repeat(grey[..., None], 3, axis=3)


def image_grid(images, path, levels: int | None = None, cols: int | None = None, scale: int | None = None,
               pad: int = 2, rgb: np.ndarray | None = None):
    """Write a PNG grid of [N, C, H, W] images (or of ready ``rgb`` [N, H, W, 3] uint8); returns its size."""
    image = _require("PIL.Image")
    tiles = rgb if rgb is not None else to_rgb(images, levels)
    n, h, w, _ = tiles.shape
    scale = scale or default_scale(h, w)
    cols = cols or math.ceil(math.sqrt(n))
    width, height = grid_size(n, h, w, cols, scale, pad)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    big = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h * scale + pad), pad + c * (w * scale + pad)
        canvas[y:y + h * scale, x:x + w * scale] = big[i]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.fromarray(canvas).save(path)
    return width, height


def _figure(panels: int = 1):
    mpl = _require("matplotlib")
    mpl.use("Agg", force=False)
    plt = _require("matplotlib.pyplot")
    fig, axes = plt.subplots(1, panels, figsize=(PLOT_SIZE[0] / _DPI, PLOT_SIZE[1] / _DPI), dpi=_DPI, squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path) -> tuple[int, int]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return PLOT_SIZE


def scatter_density(samples, path, density=None, data=None, title: str = ""):
    """Samples as a scatter (over the data in grey, if given) and ``density = (xs, ys, log p[len(ys), len(xs)])``
    as a heat map beside it."""
    plt, fig, (left, right) = _figure(2)
    if data is not None:
        left.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data")
    left.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:blue", label="samples")
    left.set_title(f"{title} samples".strip())
    left.set_aspect("equal", adjustable="datalim")
    if density is not None:
        xs, ys, logp = density
        right.imshow(np.exp(logp - np.max(logp)), origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
                     cmap="magma", aspect="auto")
        right.set_title("density (model)")
    else:
        right.hist2d(samples[:, 0], samples[:, 1], bins=64, cmap="magma")
        right.set_title("sample histogram")
    fig.tight_layout()
    return _save(plt, fig, path)


def path_plot(points, path, data=None, title: str = "interpolation"):
    """A 2-D path (the interpolation's points, in order) over the data."""
    plt, fig, (ax,) = _figure(1)
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.8")
    ax.plot(points[:, 0], points[:, 1], "-o", c="tab:red", ms=4)
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    return _save(plt, fig, path)


def waveform_plot(signals, path, rows: int = 4):
    """The first ``rows`` signals ([N, L], in [-1, 1]) one above another."""
    plt, fig, axes = _figure(1)
    ax = axes[0]
    for i, s in enumerate(np.asarray(signals)[:rows]):
        ax.plot(np.arange(len(s)), s * 0.45 - 1.1 * i, lw=0.6)
    ax.set_yticks([])
    ax.set_xlabel("sample")
    return _save(plt, fig, path)


def write_wav(signals, path, rate: int = 16000, gap: float = 0.25) -> int:
    """16-bit mono WAV of the signals ([N, L] in [-1, 1]), ``gap`` seconds of silence between; returns frames."""
    silence = np.zeros(int(rate * gap))
    parts = []
    for s in np.asarray(signals, dtype=np.float64):
        parts += [s, silence]
    pcm = (np.clip(np.concatenate(parts[:-1]) if parts else silence, -1, 1) * 32767).astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return len(pcm)
