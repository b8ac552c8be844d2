"""The user's own data files: ``.npy`` arrays, ``.npz`` archives, folders of PNG files.

Nothing is ever unpickled (``allow_pickle=False``). Every file is checked before it is used, and
a bad one is one error naming the file (``PATH: error: ...``), never a traceback: unreadable,
corrupt or truncated files; 0-d, empty, structured, object, text, complex arrays; NaN or infinite
values (with their count); fewer than 2 examples; labels that are not whole numbers >= 0 or not
one per example; PNGs whose header declares more than :data:`MAX_PIXELS` pixels (checked before
decoding), more than :data:`MAX_VALUES` values in all. 16-bit greyscale PNGs keep their 65536
levels; 16-bit colour PNGs are refused (Pillow decodes them to 8 bits). This module imports no torch.

Example:
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(20).reshape(10, 2) % 3)
    >>> ds = from_npy(Path(path))
    >>> ds.train.shape, ds.levels
    ((9, 2), 3)
    >>> np.save(path, np.array([1.0, np.nan, np.inf]))
    >>> from_npy(Path(path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    flowdsl.errors.FlowDSLError: ...x.npy: error: the array has 2 non-finite value(s) (NaN or infinity)
"""

from __future__ import annotations

import pickle
import zipfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.training.dataset import ContextError, Dataset, context_error, data_error, describe_shape, split

__all__ = ["from_npy", "from_npz", "from_pngs", "user_dataset", "npz_get", "read_png", "check_array",
           "check_context", "MAX_PIXELS", "MAX_VALUES"]

#: pixels one PNG may declare in its header (width * height), checked before decoding
MAX_PIXELS = 4096 * 4096
#: values a data file (or a folder of PNGs) may hold in all (int64: 2 GiB)
MAX_VALUES = 2**28

_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, SyntaxError,
                KeyError, IndexError, TypeError)


def file_error(path, message: str, hint: str | None = None) -> FlowDSLError:
    """One error naming the file: ``PATH: error: MESSAGE``."""
    return FlowDSLError([Diagnostic(Pos(str(path)), "error", message, hint)])


@contextmanager
def _reading(path, what: str, more: tuple = ()):
    """Turn any failure to read or decode ``path`` into one error naming it."""
    try:
        yield
    except FlowDSLError:
        raise
    except _READ_ERRORS + more as err:
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:300] or type(err).__name__
        raise file_error(path, f"cannot read {what}: {reason}") from None


def check_array(x: np.ndarray, path, what: str = "the array", examples: bool = True) -> np.ndarray:
    """``x`` if it is usable data (real numbers, finite, not empty; examples first), else one error."""
    kind = x.dtype.kind
    if x.dtype.names is not None or kind == "V":
        raise file_error(path, f"{what} is a structured array ({x.dtype}); save one numeric array")
    if kind == "c":
        raise file_error(path, f"{what} is complex ({x.dtype}); flows and autoregressive models take real data",
                         "save the real and imaginary parts as two features")
    if kind not in "biuf":
        raise file_error(path, f"{what} holds {x.dtype} values, not numbers")
    if examples and x.ndim == 0:
        raise file_error(path, f"{what} is a single number (0-d); data is an array of examples, examples first")
    if x.size == 0:
        raise file_error(path, f"{what} is empty (shape {list(x.shape)})")
    if x.size > MAX_VALUES:
        raise file_error(path, f"{what} holds {x.size:,} values, more than the limit of {MAX_VALUES:,}")
    if examples and len(x) < 2:
        raise file_error(path, f"{what} has {len(x)} example; a train and a test split need at least 2")
    if kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise file_error(path, f"{what} has {bad} non-finite value(s) (NaN or infinity)")
    return x


def _labels(y, x, path, what: str):
    if y is None:
        return None
    y = check_array(np.asarray(y), path, what, examples=False)
    if y.ndim > 1 and y.size == len(y):
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != len(x):
        raise file_error(path, f"{what} must be one label per example: {len(x)} examples, labels of shape "
                               f"{list(y.shape)}")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise file_error(path, f"{what} must be whole numbers (class indices)")
    if y.min() < 0:
        raise file_error(path, f"{what} must be >= 0 (class indices), found {y.min():g}")
    return y.astype(np.int64)


def npz_get(z, *names):
    return next((z[k] for k in names if k in z.files), None)


_DATA_KEYS = ("train", "x_train", "test", "x_test", "x", "data", "arr_0")


def check_context(ctx, path, what: str, rows: int | None = None, examples: str = "") -> np.ndarray:
    """The condition's values ``ctx`` (``what``: "the array 'theta'"): usable numbers (:func:`check_array`)
    and, with ``rows``, one row per example of ``examples``; else a ContextError naming the file."""
    try:
        ctx = check_array(np.asarray(ctx), path, what, examples=False)
    except FlowDSLError as err:
        raise ContextError(err.diagnostics) from None
    if rows is not None and (ctx.ndim == 0 or len(ctx) != rows):
        have = "a single value" if ctx.ndim == 0 else f"{len(ctx)} rows"
        raise context_error(f"{what} has {have}, but {examples} has {rows} examples: the values of the condition "
                            f"are one row per example", None, Pos(str(path)))
    return ctx


def _paired(path, key: str, ctx, x, what: str):
    return check_context(ctx, path, f"the array '{key}'", len(x), what)


def from_npz(path: Path, name: str, condition: str | None = None) -> Dataset:
    """A ``.npz`` archive: ``x`` (or ``train``/``test``), and the condition's values under its name
    (``condition``: ``theta``, or ``theta_train``/``theta_test``) or class labels (``y``, ``y_train``/``y_test``)."""
    c = condition if condition and condition not in _DATA_KEYS else None
    with _reading(path, "the .npz archive"), np.load(path, allow_pickle=False) as z:
        train, test = npz_get(z, "train", "x_train"), npz_get(z, "test", "x_test")
        paired = c is not None and any(k in z.files for k in (c, f"{c}_train", f"{c}_test"))
        if paired:
            y_tr, y_te, y = npz_get(z, f"{c}_train"), npz_get(z, f"{c}_test"), npz_get(z, c)
        else:
            y_tr, y_te = npz_get(z, "y_train", "train_labels"), npz_get(z, "y_test", "test_labels")
            y = npz_get(z, "y", "labels")
        x = npz_get(z, "x", "data", "arr_0")
        files = list(z.files)
    key = c if paired else next((k for k in ("y", "labels", "y_train", "train_labels") if k in files), "")
    if train is None:
        if x is None:
            raise file_error(path, f"no array named train, x_train, x, data or arr_0 (found: {', '.join(files)})")
        check_array(x, path, "the array 'x'")
        if paired and y is None:
            raise context_error(f"the archive has no array '{c}' beside 'x' (it has {', '.join(files)})", None,
                                Pos(str(path)))
        y = _paired(path, c, y, x, "'x'") if paired else _labels(y, x, path, "the labels 'y'")
        train, test, y_tr, y_te = split(x, y, 0.1)
    else:
        check_array(train, path, "the array 'train'")
        if paired:
            if y_tr is None:
                raise context_error(f"the archive has no array '{c}_train' beside 'train' (it has "
                                    f"{', '.join(files)})", None, Pos(str(path)))
            y_tr = _paired(path, f"{c}_train", y_tr, train, "'train'")
        else:
            y_tr = _labels(y_tr, train, path, "the labels 'y_train'")
        if test is None:
            train, test, y_tr, y_te = split(train, y_tr, 0.1)
        else:
            check_array(test, path, "the array 'test'", examples=False)
            if test.ndim == 0 or test.shape[1:] != train.shape[1:]:
                raise file_error(path, f"the test examples are {list(test.shape[1:])}, the train examples "
                                       f"{list(train.shape[1:])}")
            if paired:
                if y_te is None:
                    raise context_error(f"the archive has '{c}_train' but no '{c}_test' beside 'test'", None,
                                        Pos(str(path)))
                y_te = _paired(path, f"{c}_test", y_te, test, "'test'")
                if y_te.shape[1:] != y_tr.shape[1:]:
                    raise context_error(f"the arrays '{c}_train' and '{c}_test' differ in shape per example: "
                                        f"{list(y_tr.shape[1:])} and {list(y_te.shape[1:])}", None, Pos(str(path)))
            else:
                y_te = _labels(y_te, test, path, "the labels 'y_test'")
    if (y_tr is None) != (y_te is None):
        raise file_error(path, "labels for only one of the train and test splits")
    ds = user_dataset(name, train, test, y_tr, y_te, raw_context=paired)
    return replace(ds, context_from=f"{path}, key '{key}'", context_key=key) if y_tr is not None else ds


def read_png(path) -> tuple[np.ndarray, int]:
    """One PNG as ``[C, H, W]`` integers (C = 1 grey or 3 colour) and its levels (256, or 65536 for a
    16-bit greyscale PNG); the header's size is checked against :data:`MAX_PIXELS` before decoding."""
    import warnings

    from PIL import Image

    with _reading(path, "the image", (Image.DecompressionBombError,)), warnings.catch_warnings(), \
            _opened(path) as im:  # catch_warnings: _opened silences Pillow's bomb warning only here
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise file_error(path, f"the image is {w}x{h} pixels, more than the limit of {MAX_PIXELS:,} pixels")
        raw = str(im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else "")
        wide = ";16" in raw or im.mode in ("I;16", "I;16B", "I;16L", "I")
        if wide and im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise file_error(path, f"the image is a 16-bit colour PNG ({im.mode}), which would be read with 8 bits",
                             "save it as 8-bit colour or 16-bit greyscale")
        if wide:
            a = np.asarray(im).astype(np.int64)[None]
            return np.clip(a, 0, 65535), 65536
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).astype(np.int64), 256


@contextmanager
def _opened(path):
    """``Image.open`` with Pillow's own bomb limit turned into ours (the header's size, before decoding)."""
    import warnings

    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError:
        raise file_error(path, f"the image declares more than the limit of {MAX_PIXELS:,} pixels") from None
    with im:
        yield im


def from_pngs(folder: Path) -> Dataset:
    files = sorted(folder.rglob("*.png"))
    if not files:
        raise data_error(f"{folder}: no .png files in this folder")
    classes = sorted({f.parent.relative_to(folder).as_posix() for f in files})
    images, labels, depths, total = [], [], set(), 0
    for f in files:
        a, levels = read_png(f)
        total += a.size
        if total > MAX_VALUES:
            raise file_error(folder, f"the images hold more than the limit of {MAX_VALUES:,} values in all")
        images.append(a)
        depths.add(levels)
        labels.append(classes.index(f.parent.relative_to(folder).as_posix()))
    if len(depths) > 1:
        raise file_error(folder, "the images mix 8-bit and 16-bit PNGs")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise data_error(f"{folder}: the images differ in size or colour: {', '.join(map(describe_shape, shapes))}")
    if len(images) < 2:
        raise file_error(folder, "one image; a train and a test split need at least 2")
    x = np.stack(images)
    if x.shape[1] == 3 and (x == x[:, :1]).all():  # grey images: one channel
        x = x[:, :1]
    y = np.asarray(labels) if len(classes) > 1 else None
    x_tr, x_te, y_tr, y_te = split(x, y, 0.1)
    return replace(user_dataset(folder.name, x_tr, x_te, y_tr, y_te), levels=depths.pop(), exact_levels=True)


def user_dataset(name, train, test, y_tr, y_te, raw_context: bool = False) -> Dataset:
    """The user's arrays as a :class:`Dataset`: integer-valued data as int64 with its levels (max + 1),
    real data as float32; labels as int64 with their classes, or (``raw_context``) the condition's values
    as read, checked against the declaration later (:func:`flowdsl.training.paired.fit_condition`)."""
    discrete = all(a.dtype.kind in "biu" or (a.dtype.kind == "f" and np.all(a == np.round(a)) and
                                              np.all(np.abs(a) < 2**53)) for a in (train, test))
    levels = None
    if discrete:
        train, test = train.astype(np.int64), test.astype(np.int64)
        levels = int(max(train.max(initial=0), test.max(initial=0))) + 1
    else:
        train, test = train.astype(np.float32), test.astype(np.float32)
    classes = 0
    if y_tr is not None and y_te is not None and not raw_context:
        y_tr, y_te = y_tr.astype(np.int64).reshape(-1), y_te.astype(np.int64).reshape(-1)
        classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    elif y_tr is None or y_te is None:
        y_tr = y_te = None
    return Dataset(name, train, test, levels, y_tr, y_te, classes, exact_levels=False)


def load_npy(path) -> np.ndarray:
    """A ``.npy`` array, checked (:func:`check_array`) from its header before its values are read."""
    with _reading(path, "the .npy file"):
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY":
            raise file_error(path, "not a .npy file (it does not start with the NumPy header)")
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            dtype = read_header(f)[2]
        if dtype.hasobject:
            raise file_error(path, "the array holds Python objects (dtype object), which are never unpickled",
                             "save a numeric array")
        head = np.load(path, allow_pickle=False, mmap_mode="r")
        if not isinstance(head, np.ndarray):
            raise file_error(path, "not a .npy array")
        if head.size > MAX_VALUES:
            raise file_error(path, f"the array holds {head.size:,} values, more than the limit of {MAX_VALUES:,}")
        x = np.array(head)
        del head
    return x


def from_npy(path: Path) -> Dataset:
    """A ``.npy`` array, examples first; 10% held out as the test split."""
    x = check_array(load_npy(path), path)
    x_tr, x_te, _, _ = split(x, None, 0.1)
    return user_dataset(path.stem, x_tr, x_te, None, None)
