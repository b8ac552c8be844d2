"""Contexts for the property checks of autoregressive models (:mod:`flowdsl.testing.autoregressive`).

A condition is not a position: the checks draw contexts for it, never perturb it as an input.
:func:`context_strategy` draws them for Hypothesis (:func:`flowdsl.testing.inputs.contexts` for a
compiled model: labels, whole numbers, reals), :func:`draw` from a seeded generator, and
:func:`fixed_contexts` lists those normalisation is checked for (every label, every discrete context
up to :data:`MAX_CONTEXTS`, else the zero context and two drawn ones). :func:`context_reach` is the
"the context is read" check: changing the context changes every position's conditional.

Example:
    >>> import torch
    >>> facts = ARModelFacts(context_shape=(2,), context_levels=3)
    >>> len(fixed_contexts(facts, torch.float64, None)), tuple(draw(facts, 5, torch.Generator(), None, None).shape)
    (9, (5, 2))
    >>> a = draw(facts, 4, torch.Generator(), None, None)
    >>> bool((draw(facts, 4, torch.Generator(), None, None, other=a) != a).all())
    True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from flowdsl.testing.inputs import contexts, inputs, labels

__all__ = ["ARModelFacts", "MAX_CONTEXTS", "context_strategy", "draw", "fixed_contexts", "batched", "context_reach",
           "twin", "random_inputs", "conditionals", "moved_positions"]

#: normalisation enumerates every context of a discrete condition when there are at most this many
MAX_CONTEXTS = 16


@dataclass(frozen=True)
class ARModelFacts:
    """What the check needs to know of a model beyond the autoregressive API."""

    classes: int = 0  # labels of a label condition (0: none); alone, it declares a label condition
    configurations: int = 1  # orders / mask sets (MADE); ``mask_index`` selects one
    mask_index: int = 0
    ir: Any = None  # the checked IR (its proved dependency sets), if any
    context_shape: tuple[int, ...] | None = None  # per-example condition shape (``()``: a label; None: none)
    context_levels: int | None = None  # a discrete condition's values 0..levels-1 (a label's classes); None: reals
    reads_condition: bool = False  # some layer is declared to read the condition

    def __post_init__(self):
        if self.classes and self.context_shape is None:  # the label-only form of before
            object.__setattr__(self, "context_shape", ())
            object.__setattr__(self, "context_levels", int(self.classes))

    @property
    def conditional(self) -> bool:
        return self.context_shape is not None

    @classmethod
    def of(cls, model) -> ARModelFacts:
        """A compiled model's facts; the defaults for any other model."""
        from flowdsl.runtime.autoregressive import CompiledAR

        if not isinstance(model, CompiledAR):
            return cls()
        enc, ir = model.condition, model.ir
        reads = enc is not None and ir is not None and any(node.reads_condition for node in ir.layers)
        return cls(classes=int(model.classes or 0), configurations=int(model.configurations),
                   mask_index=int(model.mask_index), ir=ir,
                   context_shape=None if enc is None else tuple(enc.shape),
                   context_levels=None if enc is None else enc.levels, reads_condition=bool(reads))


def conditionals(model, x, context):
    """``[B, N, P]`` of ``model.conditionals`` without autograd (no context passed for None)."""
    with torch.no_grad():
        out = model.conditionals(x, context) if context is not None else model.conditionals(x)
    return out.reshape(out.shape[0], out.shape[1], -1)


def moved_positions(a, b, tol: float) -> np.ndarray:
    """``bool [B, N]``: positions whose parameters moved."""
    return ((a - b).abs() > tol * (1 + b.abs())).any(dim=2).cpu().numpy()


def context_strategy(model, facts: ARModelFacts, batch: int, device):
    """Hypothesis contexts ``[batch, *context_shape]`` (None for an unconditional model)."""
    if getattr(model, "condition", None) is not None:
        return contexts(model, batch=batch, device=device)
    if not facts.conditional:
        return st.none()
    shape = tuple(facts.context_shape or ())
    if not shape:
        return labels(int(facts.context_levels or 1), batch=batch, device=device)
    if facts.context_levels:
        return inputs(shape, facts.context_levels, batch=batch, discrete=True, device=device)
    return inputs(shape, batch=batch, scale=2.0, device=device)


def draw(facts: ARModelFacts, batch: int, gen, dtype, device, other=None):
    """Random contexts ``[batch, *shape]`` from ``gen``; with ``other``, ones differing from it everywhere."""
    if not facts.conditional:
        return None
    shape = (batch, *(facts.context_shape or ()))
    levels = facts.context_levels
    if levels:
        if other is not None:
            step = torch.randint(1, max(levels, 2), shape, generator=gen).to(other.device)
            return (other + step) % levels
        t = torch.randint(0, levels, shape, generator=gen)
    else:
        t = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return t.to(device) if device is not None else t


def fixed_contexts(facts: ARModelFacts, dtype, device) -> list:
    """The contexts normalisation is checked for: every discrete one (up to :data:`MAX_CONTEXTS`), else a few."""
    if not facts.conditional:
        return [None]
    shape = tuple(facts.context_shape or ())
    levels, size = facts.context_levels, math.prod(shape)
    if levels and (not shape or levels ** size <= MAX_CONTEXTS):  # every label; every small discrete context
        every = torch.tensor(list(itertools.product(range(levels), repeat=size)), dtype=torch.long)
        return list(every.reshape(-1, *shape).to(device) if device is not None else every.reshape(-1, *shape))
    gen = torch.Generator().manual_seed(7)
    drawn = list(draw(facts, 3, gen, dtype, device))
    if not levels:  # the zero context, then two drawn ones
        drawn[0] = torch.zeros_like(drawn[0])
    return drawn


def batched(context, batch: int):
    return None if context is None else context.expand(batch, *context.shape)


def twin(model, seed: int):
    import copy

    from flowdsl.testing.jacobian import perturb_parameters

    return perturb_parameters(copy.deepcopy(model), scale=0.5, seed=seed)


def _device(model):
    return next((t.device for t in list(model.parameters()) + list(model.buffers())), None)


def random_inputs(model, batch: int, gen):
    x = torch.randint(0, int(model.levels), (batch, *model.input_shape), generator=gen)
    device = _device(model)
    return x.to(device) if device is not None else x


def context_reach(model, facts: ARModelFacts, tol, dtype, device, rounds: int = 3, per_round: int = 4,
                   redraws: int = 3) -> tuple[int, str]:
    """Positions whose conditional never changed with the context (on the model and ``redraws`` noisy copies)."""
    n = math.prod(model.input_shape)
    seen = np.zeros(n, dtype=bool)
    for copy_ in range(redraws + 1):
        subject = model if copy_ == 0 else twin(model, copy_)
        gen = torch.Generator().manual_seed(4321 + copy_)
        for _ in range(rounds):
            if seen.all():
                break
            x = random_inputs(model, per_round, gen)
            a = draw(facts, per_round, gen, dtype, device)
            b = draw(facts, per_round, gen, dtype, device, other=a)
            seen |= moved_positions(conditionals(subject, x, a), conditionals(subject, x, b), tol).any(axis=0)
        if seen.all():
            return 0, ""
    never = np.flatnonzero(~seen)
    return len(never), (f"the conditional of position {int(never[0])} never changed when the context changed "
                        f"({len(never)} such positions), although a layer is declared to read the condition")
