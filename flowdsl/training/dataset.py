"""The :class:`Dataset` record and what every loader shares: the split, the errors, shapes in words.

A data set may be *paired*: beside each example it holds the value of the model's condition (a class
label, or any array: ``theta`` for a posterior ``p(theta | x)``, an image, a sequence), one row per
example, in ``train_labels`` / ``valid_labels`` / ``test_labels`` (the names are older than conditions
other than labels). ``context_from`` says, in words, where those rows were read.

A refusal about the condition's data (missing, unexpected, not fitting the declaration) is a
:class:`ContextError`: the command line exits with status 2 for it, as for a bad argument.

This module imports no torch.

Example:
    >>> import numpy as np
    >>> x_tr, x_te, _, _ = split(np.arange(10), None, 0.2)
    >>> len(x_tr), len(x_te)
    (8, 2)
    >>> describe_shape((1, 8, 8), 17)
    'image[1, 8, 8] levels 17'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["Dataset", "ContextError", "split", "data_error", "context_error", "describe_shape"]


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test arrays (examples first), their levels (None: continuous) and the
    condition's values (class labels or any context array, one row per example; None: not paired)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    levels: int | None = None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    classes: int = 0
    exact_levels: bool = True  # False for the user's integer data: levels is then only max + 1
    valid: np.ndarray | None = None  # the validation split (model selection); None: the trainer carves one
    valid_labels: np.ndarray | None = None
    source: str = ""  # what was loaded, in words (printed by the trainer: which data this run used)
    context_from: str = ""  # where the condition's values were read ("pairs.npz, key 'theta'"; "": built in)
    context_key: str = ""  # the .npz key or the file that held them ("theta", "y", "ctx.npy")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def context_shape(self) -> tuple[int, ...] | None:
        """The per-example shape of the paired values (``()`` for labels), None when there are none."""
        return tuple(self.train_labels.shape[1:]) if self.train_labels is not None else None


def split(x, y, test_fraction, seed=0):
    """A seeded random split of ``x`` (and labels ``y``) into train and test; at least one test example."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, int(round(len(x) * test_fraction)))
    tr, te = order[:cut], order[cut:]
    return x[tr], x[te], (y[tr] if y is not None else None), (y[te] if y is not None else None)


def describe_shape(shape, levels=None, kind=None) -> str:
    """``image[1, 8, 8] levels 17``-style text for a shape (kind guessed from the rank)."""
    kind = kind or {1: "vector", 3: "image", 4: "video"}.get(len(shape), "array")
    text = f"{kind}[{', '.join(map(str, shape))}]"
    return text + (f" levels {levels}" if levels else "")


def data_error(message: str, hint: str | None = None, pos: Pos | None = None, sources=None) -> FlowDSLError:
    return FlowDSLError([Diagnostic(pos or Pos("data"), "error", message, hint)], sources)


class ContextError(FlowDSLError):
    """A refusal about a condition's data or a ``--context``/``--label`` argument (exit status 2 in the CLI)."""


def context_error(message: str, hint: str | None = None, pos: Pos | None = None, sources=None) -> ContextError:
    """One :class:`ContextError` at ``pos`` (the spec's ``condition`` declaration, or a file)."""
    return ContextError([Diagnostic(pos or Pos("data"), "error", message, hint)], sources)
