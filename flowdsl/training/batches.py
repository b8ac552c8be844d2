"""Data held compactly and batched by index: one tensor per split, the validation split, the data's fingerprint.

Discrete data is one ``uint8`` tensor (``int16``/``int32`` only when the levels need it), so
binarized MNIST takes 47 MB, not the 376 MB of int64; continuous data is ``float32``. A batch is
``x[indices]``, made ``long`` per batch (:func:`as_model_input`): no DataLoader, no per-item
overhead. The data order (:class:`EpochOrder`) is a pure function of ``(seed, step)``.

When a data set has no validation split, :func:`carve_validation` takes ``VALID_FRACTION`` (10%,
at least one example) of the training split, chosen by the fixed seed ``VALID_SEED`` (0), so the
validation examples are the same whatever the run's ``--seed``.

Example:
    >>> import numpy as np
    >>> compact(np.array([[0, 1], [1, 0]]), levels=2).dtype, compact(np.zeros((1, 2)), None).dtype
    (torch.uint8, torch.float32)
    >>> order = EpochOrder(n=10, batch=4, seed=0)
    >>> order.per_epoch, len(order(0)), bool((order(0) == order(0)).all())
    (2, 4, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import torch

from flowdsl.training.dataset import Dataset

__all__ = ["compact", "as_model_input", "EpochOrder", "carve_validation", "data_fingerprint", "VALID_FRACTION",
           "VALID_SEED"]

VALID_FRACTION = 0.1
VALID_SEED = 0


def integer_dtype(levels: int) -> torch.dtype:
    """The smallest integer dtype that holds values 0 .. levels - 1."""
    if levels <= 256:
        return torch.uint8
    if levels <= 2**15:
        return torch.int16
    return torch.int32 if levels <= 2**31 else torch.int64


def compact(x, levels, device=None) -> torch.Tensor:
    """``x`` as one tensor: the smallest integer type for ``levels``, or float32 when continuous."""
    if levels:
        return torch.as_tensor(np.asarray(x)).to(device, integer_dtype(levels))
    return torch.as_tensor(np.asarray(x)).to(device, torch.float32)


def as_model_input(x: torch.Tensor) -> torch.Tensor:
    """A batch of compact data as the model takes it: integers as ``long``, floats in the default dtype."""
    return x if x.is_floating_point() or x.dtype == torch.long else x.long()


class EpochOrder:
    """Which examples make global batch ``step``: epoch permutations seeded by (seed, epoch)."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed
        self.per_epoch = n // batch
        self._epoch, self._perm = -1, torch.arange(0)

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return self._perm[i * self.batch:(i + 1) * self.batch]


def carve_validation(ds: Dataset) -> tuple[Dataset, bool]:
    """``ds`` with a validation split (its own, or 10% of train by the fixed seed); True when carved here."""
    if ds.valid is not None and len(ds.valid):
        return ds, False
    n = len(ds.train)
    order = np.random.default_rng(VALID_SEED).permutation(n)
    k = max(1, int(round(n * VALID_FRACTION))) if n > 1 else 0
    tr, va = np.sort(order[k:]), np.sort(order[:k])
    labels = ds.train_labels
    return replace(ds, train=ds.train[tr], valid=ds.train[va],
                   train_labels=labels[tr] if labels is not None else None,
                   valid_labels=labels[va] if labels is not None else None), True


def data_fingerprint(ds: Dataset) -> dict:
    """Name, shape, levels, split sizes and a hash of up to 256 evenly spaced training examples (and of their
    paired values, when the data has them: ``context_sha256``)."""
    n = len(ds.train)
    take = np.unique(np.linspace(0, n - 1, num=min(n, 256)).astype(np.int64)) if n else np.zeros(0, np.int64)
    sample = np.ascontiguousarray(np.asarray(ds.train)[take].astype(np.int64 if ds.levels else np.float32))
    out = {"name": str(ds.name), "shape": [int(s) for s in ds.shape],
           "levels": int(ds.levels) if ds.levels is not None else None, "train": n, "test": len(ds.test),
           "sample_sha256": hashlib.sha256(sample.tobytes()).hexdigest()}
    if ds.train_labels is not None:
        c = np.asarray(ds.train_labels)[take]
        c = np.ascontiguousarray(c.astype(np.int64 if c.dtype.kind in "biu" else np.float32))
        out["context_sha256"] = hashlib.sha256(str(c.shape[1:]).encode() + c.tobytes()).hexdigest()
    return out
