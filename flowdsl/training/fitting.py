"""The check that a data set fits a spec's input (shape, levels) and its condition (labels, paired values).

:func:`fit` raises a positioned :class:`~flowdsl.errors.FlowDSLError` at the spec's input naming
both when they disagree; the condition's values are checked by
:func:`flowdsl.training.paired.fit_condition` (a :class:`~flowdsl.training.dataset.ContextError` at
the spec's ``condition``). This module imports no torch.

Example:
    >>> from flowdsl.api import analyze_source
    >>> from flowdsl.training.data import load_data
    >>> ir = analyze_source("flow f {\\n input x: vector[2]\\n base normal\\n affine_coupling(mask=half)\\n}").model()
    >>> fit(load_data("moons", n=10), ir.header).train.shape
    (10, 2)
"""

from __future__ import annotations

import math
from dataclasses import replace

from flowdsl.errors import Pos
from flowdsl.training.data import DATASETS, load_data
from flowdsl.training.dataset import Dataset, context_error, data_error, describe_shape
from flowdsl.training.paired import fit_condition

__all__ = ["fit", "fitted_data"]


def _suggest(shape, levels, kind: str = "") -> str | None:
    # a set of the spec's own shape (None: waveform) is offered only to the kind it is (sequences)
    fits = [k for k, (s, q, _) in DATASETS.items() if (s is None and len(shape) == 1 and levels and kind == "sequence")
            or (s is not None and tuple(s) == tuple(shape) and q == levels)]
    return f"built-in data for this input: {', '.join(fits)}" if fits else None


def fit(ds: Dataset, header, sources=None) -> Dataset:
    """``ds`` made to fit the model ``header`` (flattened or given a channel axis where the sizes
    agree), or a FlowDSLError at the spec's input naming both shapes and levels."""
    inp = header.input
    want, levels = tuple(inp.shape), inp.levels
    declared = describe_shape(want, levels, inp.type_name)
    have = describe_shape(ds.shape, ds.levels if ds.exact_levels else None)
    model = f"{header.kind} '{header.name}'"

    def fail(msg, hint=None):
        return data_error(msg, hint, inp.pos, sources)

    train, test, valid = ds.train, ds.test, ds.valid
    if ds.shape != want:
        if math.prod(ds.shape) == math.prod(want) and (len(want) == 1 or ds.shape == want[1:]):
            train, test = train.reshape(-1, *want), test.reshape(-1, *want)
            valid = valid.reshape(-1, *want) if valid is not None else None
        else:
            raise fail(f"data '{ds.name}' is {have}, but the input {inp.name} of {model} is {declared}",
                       _suggest(want, levels, inp.type_name))
    if levels is None and ds.levels is not None and ds.exact_levels:
        raise fail(f"data '{ds.name}' is discrete ({ds.levels} levels), but the input {inp.name} of {model} "
                   f"is continuous ({declared})", f"declare `levels {ds.levels}` on the input")
    if levels is not None and ds.levels is None:
        raise fail(f"data '{ds.name}' is continuous, but the input {inp.name} of {model} is {declared}",
                   _suggest(want, levels, inp.type_name))
    if levels is not None and ((ds.exact_levels and ds.levels != levels) or ds.levels > levels or
                               min(train.min(initial=0), test.min(initial=0)) < 0):
        what = f"{ds.levels} levels" if ds.exact_levels else f"values up to {ds.levels - 1}"
        hint = _suggest(want, levels, inp.type_name)
        if levels == 2 and ds.name in ("digits", "mnist"):
            hint = f"use --data {ds.name}-binary"
        elif hint is None and ds.levels > levels:
            hint = (f"requantize the data to {levels} levels (e.g. binarize it), or declare `levels {ds.levels}` "
                    f"on the input" if ds.exact_levels else f"requantize the data to 0..{levels - 1}, or declare "
                    f"`levels {ds.levels}` (or more) on the input")
        raise fail(f"data '{ds.name}' has {what}, but the input {inp.name} of {model} is {declared}", hint)
    return fit_condition(replace(ds, train=train, test=test, valid=valid), header, sources)


def fitted_data(data, header, sources=None, context=None) -> Dataset:
    """The data of a run or a score, made to fit ``header`` (:func:`fit`): a :class:`Dataset` as given, or
    ``data`` loaded by name or path, paired with ``context`` (a file of the condition's values, one row per
    example) or with the ``.npz`` array named as the condition."""
    cond = header.condition
    if context is not None and cond is None:
        raise context_error(f"{header.kind} '{header.name}' is not conditional: it takes no --context",
                            "leave out --context, or declare a condition in the spec", Pos(str(context)))
    if isinstance(data, Dataset):
        if context is not None:
            raise context_error("a Dataset brings its condition's values (its labels): pass no context", None,
                                Pos(str(context)))
        return fit(data, header, sources)
    ds = load_data(data, shape=header.input.shape, levels=header.input.levels,
                   condition=cond.name if cond is not None else None, context=context)
    return fit(ds, header, sources)
