"""Efros-Leung texture synthesis (nonparametric): the acceptance spec, the PNG reader, the conditionals, errors.

- texture.ar compiles, samples, and log_prob raises a clear error (a sampler, not a likelihood);
- the dependency-free PNG reader agrees with Pillow (grey, RGB, RGBA, palette, 16-bit, 1-bit) and
  undoes every row filter;
- each conditional is the histogram of the example's centre values whose causal neighbourhood is
  within (1 + eps) of the best Gaussian-weighted SSD (a plain-loop reference);
- causal by perturbation, normalised over every tiny image, cached == naive; positioned errors.
"""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import spec_path
from PIL import Image

import flowdsl
from flowdsl.layers.ar_texture import gaussian_weights, read_png
from flowdsl.runtime.ar_cache import step_conditionals
from flowdsl.testing import check_autoregressive

spec = spec_path  # shared helper in conftest


def encode_png(pixels: np.ndarray, filters=(0, 1, 2, 3, 4)) -> bytes:
    """A minimal 8-bit grey PNG writer that uses the given row filters in turn (to test the reader)."""
    h, w = pixels.shape
    raw, prev = b"", np.zeros(w, dtype=np.int64)
    for r in range(h):
        kind, line = filters[r % len(filters)], pixels[r].astype(np.int64)
        left = np.concatenate([[0], line[:-1]])
        up_left = np.concatenate([[0], prev[:-1]])
        if kind == 0:
            pred = np.zeros(w, dtype=np.int64)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - up_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        raw += bytes([kind]) + bytes(((line - pred) % 256).astype(np.uint8))
        prev = line

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_spec(folder, body: str, pixels=None, name="src.png") -> str:
    if pixels is not None:
        (folder / name).write_bytes(encode_png(np.asarray(pixels, dtype=np.uint8)))
    path = folder / "t.ar"
    path.write_text("autoregressive t {\n" + body + "}\n")
    return str(path)


# ----------------------------------------------------------------------------- the acceptance spec
def test_acceptance_spec_samples_and_refuses_log_prob():
    assert flowdsl.analyze_file(spec("texture.ar")).ok
    m = flowdsl.compile_file(spec("texture.ar"))
    torch.manual_seed(0)
    x = m.sample(1)
    assert x.shape == (1, 1, 32, 32) and 0 <= x.min() and x.max() < 256
    source = read_png(spec("texture.png"))[0]
    assert set(x.unique().tolist()) <= set(np.unique(source).tolist())  # every value comes from the example
    with pytest.raises(NotImplementedError, match="sampler and defines no likelihood"):
        m.log_prob(x)


# ----------------------------------------------------------------------------- the PNG reader
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "I;16", "1"])
def test_png_reader_agrees_with_pillow(mode, tmp_path):
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 256, (7, 9, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray(rng.randint(0, 65536, (7, 9)).astype(np.uint16))
    elif mode == "P":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        img = rgb.convert(mode)
    path = tmp_path / "x.png"
    img.save(path)
    pixels, top = read_png(path)
    expected = np.asarray(img.convert("RGB") if mode == "P" else img).astype(np.int64)
    if expected.ndim == 2:
        expected = expected[:, :, None]
    expected = expected.transpose(2, 0, 1)
    if mode in ("RGBA", "LA"):
        expected = expected[:-1]
    assert np.array_equal(pixels, expected) and top == {"I;16": 65535, "1": 1}.get(mode, 255)


def test_png_reader_undoes_every_filter(tmp_path):
    pixels = np.random.RandomState(1).randint(0, 256, (10, 13))
    (tmp_path / "f.png").write_bytes(encode_png(pixels))
    assert np.array_equal(read_png(tmp_path / "f.png")[0][0], pixels)


# ----------------------------------------------------------------------------- the conditionals
def reference(source: np.ndarray, x: np.ndarray, window: int, eps: float, levels: int) -> np.ndarray:
    """Plain loops: per target pixel, the histogram of the matching candidates' centre values."""
    half, (hs, ws), (h, w) = window // 2, source.shape, x.shape
    taps = gaussian_weights(window)
    out = np.zeros((h, w, levels))
    for r, c in itertools.product(range(h), range(w)):
        dists = {}
        for i, j in itertools.product(range(half, hs), range(half, ws - half)):
            d = 0
            for (dy, dx), wt in taps:
                if 0 <= r + dy and 0 <= c + dx < w:
                    d += wt * (int(x[r + dy, c + dx]) - int(source[i + dy, j + dx])) ** 2
            dists[(i, j)] = d
        best = min(dists.values())
        for (i, j), d in dists.items():
            if d <= best * (1 + eps):
                out[r, c, source[i, j]] += 1
    return out


@pytest.mark.parametrize("window,eps", [(3, 0.0), (3, 0.5), (5, 0.1)])
def test_conditionals_are_the_matching_histograms(tmp_path, window, eps):
    rng = np.random.RandomState(window)
    source = rng.randint(0, 4, (6, 7))
    path = write_spec(tmp_path, f"    input x: image[1, 4, 5] levels 4\n"
                                f"    nonparametric(window={window}, source=\"src.png\", eps={eps})\n",
                      source * 64)  # 8-bit values 0, 64, 128, 192 -> levels 0..3
    m = flowdsl.compile_file(path).double()
    x = torch.as_tensor(rng.randint(0, 4, (2, 1, 4, 5)))
    probs = m.conditionals(x).softmax(-1).reshape(2, 4, 5, 4).numpy()
    for b in range(2):
        counts = reference(source, x[b, 0].numpy(), window, eps, 4)
        assert np.allclose(probs[b], counts / counts.sum(-1, keepdims=True), atol=1e-12)


def test_tiny_texture_model_is_causal_and_normalised(tmp_path, float64):
    source = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]]) * 255
    m = flowdsl.compile_file(write_spec(tmp_path, "    input x: image[1, 2, 3] levels 2\n"
                                                  "    nonparametric(window=3, source=\"src.png\", eps=0.2)\n", source))
    report = check_autoregressive(m, examples=8, seed=0, complete=False, normalisation=False)
    assert report["causality"] == 0.0
    grid = torch.tensor(list(itertools.product(range(2), repeat=6))).reshape(-1, 1, 2, 3)
    logp = m.dist.log_prob(m.conditionals(grid), grid.reshape(len(grid), -1)).sum(-1)
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-12


def test_cached_and_naive_sampling_draw_the_same_texture(tmp_path):
    source = np.random.RandomState(2).randint(0, 256, (8, 8))
    m = flowdsl.compile_file(write_spec(tmp_path, "    input x: image[1, 5, 6] levels 256\n"
                                                  "    nonparametric(window=3, source=\"src.png\")\n", source))
    x = torch.randint(0, 256, (2, 1, 5, 6))
    assert torch.equal(step_conditionals(m, x), m.conditionals(x))
    torch.manual_seed(4)
    a = m.sample(2)
    torch.manual_seed(4)
    assert torch.equal(a, m.sample(2, cached=False))


# ----------------------------------------------------------------------------- errors
def errors(path):
    return [(d.pos.line, d.pos.column, d.message) for d in flowdsl.analyze_file(path).diagnostics
            if d.severity == "error"]


def test_missing_source_is_a_positioned_error(tmp_path):
    path = write_spec(tmp_path, "    input x: image[1, 8, 8] levels 256\n"
                                "    nonparametric(window=7, source=\"gone.png\")\n")
    (line, col, msg), = errors(path)
    assert (line, col) == (3, 29) and msg.startswith("texture source 'gone.png' not found")


def test_even_window_is_a_positioned_error(tmp_path):
    path = write_spec(tmp_path, "    input x: image[1, 8, 8] levels 256\n"
                                "    nonparametric(window=6, source=\"src.png\")\n",
                      np.zeros((8, 8)))
    assert errors(path) == [(3, 19, "argument 'window' of nonparametric must be odd (got 6): the neighbourhood is "
                                    "centred on the pixel")]


def test_source_problems(tmp_path):
    body = "    input x: image[{c}, 8, 8] levels 256\n    nonparametric(window={w}, source=\"src.png\")\n"
    small = write_spec(tmp_path, body.format(c=1, w=7), np.zeros((3, 3)))
    assert errors(small)[0][2].startswith("the source (3x3) is smaller than the causal part of a 7x7 window")
    colour = write_spec(tmp_path, body.format(c=3, w=3), np.zeros((6, 6)))
    assert errors(colour)[0][2] == "the source has 1 channel, but the model's input has 3"
    (tmp_path / "src.png").write_bytes(b"not an image")
    assert errors(write_spec(tmp_path, body.format(c=1, w=3)))[0][2] == (
        "cannot read texture source 'src.png': not a PNG file")
    other = write_spec(tmp_path, "    input x: image[1, 8, 8] levels 256\n    nonparametric(source=\"src.png\")\n"
                                 "    output logistic_mixture(2)\n", np.zeros((8, 8)))
    assert "needs output categorical" in errors(other)[0][2]
