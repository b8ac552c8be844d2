"""Paired data: the values of a model's ``condition`` beside its examples, checked against the declaration.

Where the values come from (:func:`flowdsl.training.data.load_data`):

- a ``.npz`` with ``x`` and an array named as the condition (``theta``; or ``theta_train`` /
  ``theta_test`` beside ``train`` / ``test``), one row per example
  (:func:`flowdsl.training.user_data.from_npz`);
- a data file (``.npy``, or a ``.npz`` holding one array ``x``) and ``--context FILE`` (a ``.npy``, or a
  ``.npz`` with the condition's name as key): :func:`load_paired`, split with the examples;
- class labels: the built-in ``digits``/``mnist``, a ``.npz``'s ``y``, PNG sub-folders (``label[K]`` only).

:func:`fit_condition` checks the values against the condition (shape per example, whole numbers in
``0..levels-1`` for a label or ``levels V``, the label range) and gives them the type the model takes
(int64 for integer conditions, float32 otherwise); a contradiction is a :class:`ContextError` at the
spec's ``condition`` declaration naming the data, the file, the key and the declaration.
:func:`sampling_contexts` reads the ``--context`` of ``flowdsl sample``/``complete``. This module
imports no torch.

Example:
    >>> from flowdsl.api import analyze_source
    >>> header = analyze_source("flow f {\\n input x: vector[2]\\n condition c: vector[3]\\n"
    ...                         " coupling affine(mask=[1, 0])\\n}\\n", "f.flow").model().header
    >>> x, c = np.zeros((10, 2)), np.ones((10, 3))
    >>> ds = fit_condition(Dataset("d", x[:8], x[8:], train_labels=c[:8], test_labels=c[8:]), header)
    >>> ds.context_shape, ds.train_labels.dtype
    ((3,), dtype('float32'))
    >>> fit_condition(Dataset("d", x[:8], x[8:], train_labels=c[:8, :2], test_labels=c[8:, :2]), header)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    flowdsl.training.dataset.ContextError: f.flow:3:2: error: the values of c in data 'd' are vector[2] per ...
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from flowdsl.errors import FlowDSLError, Pos
from flowdsl.training.dataset import ContextError, Dataset, context_error, describe_shape, split
from flowdsl.training.user_data import _reading, check_array, check_context, file_error, load_npy, user_dataset

__all__ = ["conform", "read_context_file", "load_paired", "fit_condition", "sampling_contexts", "choose_contexts",
           "CONTEXT_FILE"]

#: the ``context_key`` of values read from a ``--context`` file
CONTEXT_FILE = "--context"
_LABEL_KEYS = ("y", "labels", "y_train", "train_labels")


def conform(have: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Whether per-example values of shape ``have`` are read as ``want``: the same, or as many values with
    ``want`` a vector (flattened), a label (``[1]``) or ``have`` lacking only the leading channel axis."""
    have, want = tuple(have), tuple(want)
    return have == want or (math.prod(have) == math.prod(want) and (len(want) <= 1 or have == want[1:]))


def _shape_text(shape: tuple[int, ...]) -> str:
    return describe_shape(shape) if shape else "single numbers"


def read_context_file(path, key: str | None = None) -> tuple[np.ndarray, str]:
    """The array of a ``.npy`` (or of a ``.npz`` under ``key``, or its only array), checked; and where it was
    read, in words (``ctx.npz, key 'theta'``). Any failure is a :class:`ContextError` naming the file."""
    try:
        return _read_context_file(Path(path), key)
    except ContextError:
        raise
    except FlowDSLError as err:  # unreadable, corrupt, not numbers ...: still a refusal of the --context
        raise ContextError(err.diagnostics) from None


def _read_context_file(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    if not path.is_file():
        raise context_error(f"{path}: no such file", None, Pos(str(path)))
    if path.suffix.lower() == ".npz":
        with _reading(path, "the .npz archive"), np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            name = key if key in files else (files[0] if len(files) == 1 else None)
            if name is None:
                raise context_error(f"the archive has no array '{key}' (it has {', '.join(files) or 'none'})",
                                    f"save the condition's values as '{key}'", Pos(str(path)))
            a = z[name]
        where = f"{path}, key '{name}'"
    elif path.suffix.lower() == ".npy":
        a, where = load_npy(path), str(path)
    else:
        raise context_error("a context file must be a .npy array (or a .npz with the condition's name as key)",
                            None, Pos(str(path)))
    return check_context(a, path, "the context array"), where


def load_paired(data, context, condition: str | None) -> Dataset:
    """The examples of ``data`` (a ``.npy``, or a ``.npz`` of one array ``x``) paired row by row with the
    values in ``context``, split together (10% test, the split of unpaired data)."""
    from flowdsl.training.user_data import npz_get

    data = Path(data)
    if data.suffix.lower() == ".npy" and data.is_file():
        x = check_array(load_npy(data), data)
    elif data.suffix.lower() == ".npz" and data.is_file():
        with _reading(data, "the .npz archive"), np.load(data, allow_pickle=False) as z:
            if any(k in z.files for k in ("train", "x_train", "test", "x_test")):
                raise context_error("--context pairs its rows with one array of examples, but this archive holds "
                                    "train/test splits", f"save the values in the archive as "
                                    f"'{condition or 'c'}_train' and '{condition or 'c'}_test' instead",
                                    Pos(str(data)))
            x = npz_get(z, "x", "data", "arr_0")
            files = list(z.files)
        if x is None:
            raise file_error(data, f"no array named x, data or arr_0 (found: {', '.join(files)})")
        x = check_array(x, data, "the array 'x'")
    else:
        what = "a folder of PNGs" if data.is_dir() else ("not a file" if not data.exists() else "not a .npy or .npz")
        raise context_error(f"--context pairs values with the examples of a .npy or .npz file; '{data}' is {what}",
                            "built-in data sets bring their own labels (or none)", Pos(str(data)))
    ctx, where = read_context_file(context, condition)
    check_context(ctx, context, "the context array", len(x), f"the data {data}")
    x_tr, x_te, c_tr, c_te = split(x, ctx, 0.1)
    ds = user_dataset(data.stem, x_tr, x_te, c_tr, c_te, raw_context=True)
    return replace(ds, context_from=where, context_key=CONTEXT_FILE)


def _whole(a: np.ndarray) -> bool:
    return a.dtype.kind in "biu" or bool(np.all(a == np.round(a)))


def fit_condition(ds: Dataset, header, sources=None) -> Dataset:
    """``ds`` with its condition's values checked against ``header.condition`` and typed for the model (int64
    for labels and ``levels``, float32 otherwise); unchanged when the model is unconditional."""
    cond = header.condition
    if cond is None:
        return ds
    model = f"{header.kind} '{header.name}'"
    declared = cond.describe()
    origin = f" ({ds.context_from})" if ds.context_from else ""

    def fail(message: str, hint: str | None = None):
        return context_error(message, hint, cond.pos, sources)

    if ds.train_labels is None or ds.test_labels is None:
        if cond.type_name == "label":
            raise fail(f"{model} is conditional ({cond.name}: {declared}), but data '{ds.name}' has no labels",
                       "use labelled data (digits, mnist, a .npz with 'y', PNG sub-folders), or pass --context FILE")
        raise fail(f"{model} is conditional ({cond.name}: {declared}), but data '{ds.name}' has no values for "
                   f"{cond.name}", f"save the data as a .npz with arrays 'x' and '{cond.name}' (one row per example), "
                   f"or pass --context FILE.npy")
    labels = ds.context_key in _LABEL_KEYS or (not ds.context_key and ds.classes > 0 and ds.context_shape == ())
    if cond.type_name != "label" and labels and ds.context_key != cond.name:
        held = f"class labels ('{ds.context_key}')" if ds.context_key else "class labels"
        raise fail(f"{model} is conditional on {cond.name} ({declared}), but data '{ds.name}'{origin} has {held}, "
                   f"not values for {cond.name}", f"pair the examples with their values: a .npz with 'x' and "
                   f"'{cond.name}', or --context FILE.npy")
    want = tuple(cond.shape)
    splits = {"train": ds.train_labels, "valid": ds.valid_labels, "test": ds.test_labels}
    what = f"the values of {cond.name} in data '{ds.name}'{origin}"
    out = {}
    for part, a in splits.items():
        if a is None:
            out[part] = None
            continue
        have = tuple(a.shape[1:])
        if not conform(have, want):
            raise fail(f"{what} are {_shape_text(have)} per example, but the condition {cond.name} of {model} "
                       f"is {declared}", _shape_hint(cond))
        a = a.reshape(len(a), *want)
        if cond.integer:
            if not _whole(a):
                raise fail(f"{what} are not whole numbers, but the condition {cond.name} of {model} is {declared} "
                           f"(integers in 0..{cond.levels - 1})", _levels_hint(cond))
            low, high = (a.min(), a.max()) if a.size else (0, 0)
            if low < 0 or high >= cond.levels:
                if cond.type_name == "label" and low >= 0:
                    raise fail(f"data '{ds.name}'{origin} has {int(high) + 1} classes, but {cond.name} of {model} is "
                               f"{declared}", f"declare label[{int(high) + 1}]")
                raise fail(f"{what} lie in {low:g}..{high:g}, but the condition {cond.name} of {model} is {declared} "
                           f"(integers in 0..{cond.levels - 1})", _levels_hint(cond, int(high) + 1))
            a = a.astype(np.int64)
        else:
            a = a.astype(np.float32)
        out[part] = a
    classes = cond.levels if cond.type_name == "label" else ds.classes
    return replace(ds, train_labels=out["train"], valid_labels=out["valid"], test_labels=out["test"], classes=classes)


def _shape_hint(cond) -> str:
    each = "one label (a whole number) per example" if cond.type_name == "label" else \
        f"one [{', '.join(map(str, cond.shape))}] array per example"
    return f"the data holds {each}, examples first"


def _levels_hint(cond, top: int | None = None) -> str:
    if cond.type_name == "label":
        return "labels are class indices 0, 1, ..."
    if top is not None and top > cond.levels:
        return f"declare `levels {top}` (or more) on the condition, or requantize the values"
    return "drop `levels` from the condition to read real values"


def sampling_contexts(cond, path, n: int | None, model: str, default: int = 16) -> tuple[np.ndarray, int]:
    """The ``--context`` of ``flowdsl sample``: one context ``[*shape]`` for all ``n`` samples (``default``),
    or ``[M, *shape]``, one sample per row (``n``, if given, must be M); as int64 for integer conditions.

    >>> from flowdsl.language.conditions import ConditionInfo
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.npy")
    >>> np.save(path, np.ones((5, 3)))
    >>> c, n = sampling_contexts(ConditionInfo("c", "vector", (3,), None, Pos()), path, None, "flow 'f'")
    >>> c.shape, n
    ((5, 3), 5)
    """
    a, where = read_context_file(path, cond.name)
    want, at = tuple(cond.shape), Pos(str(path))
    if a.shape == want:
        rows, a = None, a.reshape(want)
    elif a.ndim >= 1 and conform(a.shape[1:], want):
        rows, a = len(a), a.reshape(len(a), *want)
    else:
        each = ", ".join(map(str, want))
        raise context_error(f"the context is {list(a.shape)}, but {model} is conditional on {cond.name}: "
                            f"{cond.describe()}", f"give one context [{each}] for all samples, or one per sample "
                            f"[N{', ' + each if each else ''}]", at)
    if cond.integer:
        if not _whole(a) or (a.size and (a.min() < 0 or a.max() >= cond.levels)):
            raise context_error(f"the context of {cond.name} ({cond.describe()}) must be whole numbers in "
                                f"0..{cond.levels - 1}; {where} holds values in {a.min():g}..{a.max():g}", None, at)
        a = a.astype(np.int64)
    else:
        a = a.astype(np.float32)
    if rows is None:
        count = default if n is None else n
        return np.broadcast_to(a, (count, *want)).copy(), count
    if n is not None and n != rows:
        raise context_error(f"-n {n} samples, but the context has {rows} rows: one sample per row",
                            "leave out -n, or give one unbatched context to draw -n samples from", at)
    return a, rows


def choose_contexts(cond, model: str, n: int | None, label=None, context=None, default: int = 16, own=None):
    """(the contexts of ``n`` samples or None, n) for ``flowdsl sample``/``complete``: ``--label K``,
    ``--context FILE`` (:func:`sampling_contexts`), else ``own`` (the example's own value) or every class in
    turn for a label; a :class:`ContextError` when they do not fit the model (``cond``: its condition).

    >>> from flowdsl.language.conditions import ConditionInfo
    >>> choose_contexts(ConditionInfo("y", "label", (), 3, Pos()), "flow 'f'", 4)[0].tolist()
    [0, 1, 2, 0]
    """
    count = default if n is None else n
    if cond is None:
        if label is not None or context is not None:
            what = "--label" if label is not None else "--context"
            raise context_error(f"{model} is not conditional: it takes no {what}", None,
                                Pos(what if label is not None else str(context)))
        return None, count
    if label is not None and context is not None:
        raise context_error("give --label or --context, not both", None, Pos("--label"))
    if label is not None:
        if cond.type_name != "label":
            raise context_error(f"{model} is conditional on {cond.name} ({cond.describe()}), not on a label: it takes "
                                f"--context FILE, not --label", None, Pos("--label"))
        if not 0 <= label < cond.classes:
            raise context_error(f"--label must be in 0..{cond.classes - 1}", None, Pos("--label"))
        return np.full((count,), label, dtype=np.int64), count
    if context is not None:
        return sampling_contexts(cond, context, n if n is not None else None, model, default)
    if own is not None:
        own = np.asarray(own)
        return np.broadcast_to(own, (count, *own.shape)).copy(), count
    if cond.type_name == "label":
        return np.arange(count, dtype=np.int64) % cond.classes, count
    each = ", ".join(map(str, cond.shape))
    raise context_error(f"{model} is conditional on {cond.name} ({cond.describe()}): pass --context FILE with one "
                        f"context [{each}] for all samples, or one per sample [N, {each}]", None, Pos("flowdsl"))
