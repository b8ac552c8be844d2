"""The score of a model on data: mean negative log-likelihood in nats per example and bits per dimension.

Example:
    >>> import flowdsl, torch
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n actnorm\\n}\\n")
    >>> sorted(evaluate(flow, torch.zeros(3, 2)))
    ['bits_per_dim', 'examples', 'nats']
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowdsl.training.batches import as_model_input, compact
from flowdsl.training.dataset import Dataset

__all__ = ["evaluate", "tensors"]


def tensors(ds: Dataset, levels, split: str = "train", device=None):
    """(x, contexts or None) of a split (train, valid or test): x compact (uint8 ... for discrete inputs), the
    condition's values ``[N, *shape]`` as ``long`` (labels, ``levels``) or float32 (real values)."""
    x = {"train": ds.train, "valid": ds.valid, "test": ds.test}[split]
    y = {"train": ds.train_labels, "valid": ds.valid_labels, "test": ds.test_labels}[split]
    if y is None:
        return compact(x, levels, device), None
    y = np.asarray(y)
    kind = torch.long if y.dtype.kind in "biu" else torch.float32
    return compact(x, levels, device), torch.as_tensor(y).to(device, kind)


@torch.no_grad()
def evaluate(model, x, labels=None, batch: int = 512, seed: int = 0) -> dict:
    """Mean negative log-likelihood of ``x`` in nats per example and bits per dimension.

    ``labels``: the condition's values, one row per example of ``x`` (class labels or any context),
    passed to a conditional model and ignored by an unconditional one.

    Runs in evaluation mode under a fixed seed (the dequantization noise of flows), leaving the
    caller's random state and the model's mode as they were. Integer data is made ``long`` one
    batch at a time."""
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"the evaluation batch must be a positive integer, got {batch!r}")
    if len(x) == 0:
        raise ValueError("there is nothing to evaluate: the data has no examples")
    was = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    total = 0.0
    conditional = labels is not None and getattr(model, "context_shape", None) is not None
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for i in range(0, len(x), batch):
                ctx = labels[i:i + batch] if conditional else None
                total += -model.log_prob(as_model_input(x[i:i + batch]), ctx).double().sum().item()
    finally:
        model.train(was)
    nats = total / max(len(x), 1)
    return {"nats": nats, "bits_per_dim": nats / (math.prod(model.input_shape) * math.log(2)), "examples": len(x)}
