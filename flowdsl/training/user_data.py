"""The user's own data files: ``.npy`` arrays, ``.npz`` archives, folders of PNG files.

Nothing is ever unpickled (``allow_pickle=False``). This module imports no torch.

Example:
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(20).reshape(10, 2) % 3)
    >>> ds = from_npy(Path(path))
    >>> ds.train.shape, ds.levels
    ((9, 2), 3)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from flowdsl.training.dataset import Dataset, data_error, describe_shape, split

__all__ = ["from_npy", "from_npz", "from_pngs", "user_dataset", "npz_get"]


def npz_get(z, *names):
    return next((z[k] for k in names if k in z.files), None)


def from_npz(path: Path, name: str) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        train, test = npz_get(z, "train", "x_train"), npz_get(z, "test", "x_test")
        y_tr, y_te = npz_get(z, "y_train", "train_labels"), npz_get(z, "y_test", "test_labels")
        if train is None:
            x = npz_get(z, "x", "data", "arr_0")
            if x is None:
                raise data_error(f"{path}: no array named train, x_train, x, data or arr_0 "
                                 f"(found: {', '.join(z.files)})")
            train, test, y_tr, y_te = split(x, npz_get(z, "y", "labels"), 0.1)
    if test is None:
        train, test, y_tr, y_te = split(train, y_tr, 0.1)
    return user_dataset(name, train, test, y_tr, y_te)


def from_pngs(folder: Path) -> Dataset:
    from PIL import Image

    files = sorted(folder.rglob("*.png"))
    if not files:
        raise data_error(f"{folder}: no .png files in this folder")
    classes = sorted({f.parent.relative_to(folder).as_posix() for f in files})
    images, labels = [], []
    for f in files:
        with Image.open(f) as im:
            images.append(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
        labels.append(classes.index(f.parent.relative_to(folder).as_posix()))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise data_error(f"{folder}: the images differ in size or colour: {', '.join(map(describe_shape, shapes))}")
    x = np.stack(images).astype(np.int64)
    if (x == x[:, :1]).all():  # grey images: one channel
        x = x[:, :1]
    y = np.asarray(labels) if len(classes) > 1 else None
    x_tr, x_te, y_tr, y_te = split(x, y, 0.1)
    return replace(user_dataset(folder.name, x_tr, x_te, y_tr, y_te), levels=256, exact_levels=True)


def user_dataset(name, train, test, y_tr, y_te) -> Dataset:
    discrete = all(a.dtype.kind in "biu" or (a.dtype.kind == "f" and np.all(a == np.round(a))) for a in (train, test))
    levels = None
    if discrete:
        train, test = train.astype(np.int64), test.astype(np.int64)
        levels = int(max(train.max(initial=0), test.max(initial=0))) + 1
    else:
        train, test = train.astype(np.float32), test.astype(np.float32)
    classes = 0
    if y_tr is not None and y_te is not None:
        y_tr, y_te = y_tr.astype(np.int64).reshape(-1), y_te.astype(np.int64).reshape(-1)
        classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    else:
        y_tr = y_te = None
    return Dataset(name, train, test, levels, y_tr, y_te, classes, exact_levels=False)


def from_npy(path: Path) -> Dataset:
    """A ``.npy`` array, examples first; 10% held out as the test split."""
    x = np.load(path, allow_pickle=False)
    x_tr, x_te, _, _ = split(x, None, 0.1)
    return user_dataset(path.stem, x_tr, x_te, None, None)
