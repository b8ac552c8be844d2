"""Hypothesis strategies for model inputs: reals, dequantized values, discrete data, labels, one-hot contexts.

Example:
    >>> from hypothesis import find
    >>> x = find(inputs((3,), levels=4, discrete=True), lambda t: bool((t > 0).any()))
    >>> tuple(x.shape), int(x.sum())   # shrunk: a single 1 among zeros
    ((2, 3), 1)
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["inputs", "labels", "one_hot", "contexts", "encoded", "EXPLICIT_MAX"]

#: inputs with at most this many numbers get every element drawn (and shrunk) by Hypothesis
EXPLICIT_MAX = 96


def _elements(levels, discrete: bool, scale: float, extreme: bool, domain=None):
    if discrete:
        return st.integers(0, int(levels) - 1)
    if domain is not None:
        return st.floats(float(domain[0]), float(domain[1]), exclude_min=True, exclude_max=True, allow_nan=False,
                         allow_infinity=False, allow_subnormal=extreme)
    if levels is not None:
        return st.floats(0.0, float(levels), exclude_max=True, allow_nan=False, allow_infinity=False)
    bound = scale * (100.0 if extreme else 1.0)
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False, allow_subnormal=extreme)


def inputs(shape, levels: int | None = None, *, batch: int = 2, discrete: bool = False, scale: float = 3.0,
           extreme: bool = False, domain=None, dtype=None, device=None):
    """Tensors ``[batch, *shape]``: reals in ``[-scale, scale]``, ``[0, levels)`` for a dequantized flow,
    integers in ``0..levels-1`` with ``discrete=True`` (an autoregressive model's data), or reals in the
    open interval ``domain = (lo, hi)`` (a model whose first layer declares ``meta["domain"]``).

    Small inputs (at most :data:`EXPLICIT_MAX` numbers) have every element drawn, so a failing
    example shrinks to the simplest tensor (zeros, then small values); larger ones are drawn from a
    seeded generator with a drawn scale and a few drawn special values.
    """
    import torch

    shape = (int(batch), *map(int, shape))
    n = math.prod(shape)
    np_dtype = np.int64 if discrete else np.float64

    def to_tensor(a):
        t = torch.as_tensor(np.ascontiguousarray(a))
        t = t.long() if discrete else t.to(dtype or torch.get_default_dtype())
        bounds = domain if domain is not None else ((0.0, float(levels)) if levels is not None else None)
        if bounds is not None and not discrete:  # rounding to float32 may reach an excluded bound
            lo, hi = (torch.tensor(float(b), dtype=t.dtype) for b in bounds)
            t = torch.minimum(t, torch.nextafter(hi, lo))
            if domain is not None:
                t = torch.maximum(t, torch.nextafter(lo, hi))
        return t.to(device) if device is not None else t

    elements = _elements(levels, discrete, scale, extreme, domain)
    if n <= EXPLICIT_MAX:
        return hnp.arrays(np_dtype, shape, elements=elements, fill=st.nothing()).map(to_tensor)

    @st.composite
    def seeded(draw):
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        if discrete:
            a = rng.integers(0, int(levels), size=shape)
        elif domain is not None:
            lo, hi = map(float, domain)
            a = np.clip(rng.uniform(lo, hi, size=shape), np.nextafter(lo, hi), np.nextafter(hi, lo))
        elif levels is not None:
            a = rng.uniform(0, levels, size=shape)
            a = np.minimum(a, np.nextafter(float(levels), 0.0))
        else:
            a = rng.standard_normal(shape) * draw(st.floats(0.0, scale, allow_nan=False))
        flat = a.reshape(-1)
        for _ in range(draw(st.integers(0, 4))):
            flat[draw(st.integers(0, n - 1))] = draw(elements)
        return to_tensor(a)

    return seeded()


def labels(classes: int, *, batch: int = 2, device=None):
    """Class labels ``LongTensor [batch]`` in ``0..classes-1`` (a compiled model's context)."""
    import torch

    return st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch).map(
        lambda v: torch.tensor(v, dtype=torch.long, device=device))


def one_hot(features: int, *, batch: int = 2, dtype=None, device=None):
    """One-hot contexts ``[batch, features]`` (what a layer's ``context`` argument receives)."""
    import torch

    return labels(features, batch=batch, device=device).map(
        lambda v: torch.nn.functional.one_hot(v, features).to(dtype or torch.get_default_dtype()))


def contexts(model, *, batch: int = 2, scale: float = 2.0, device=None):
    """Contexts a compiled conditional ``model`` takes, ``[batch, *model.context_shape]`` (None if unconditional).

    Labels for a label condition, whole numbers in ``0..levels-1`` for a condition with levels, reals
    otherwise (drawn element by element when small, else seeded Gaussians, as :func:`inputs` does).

        >>> import flowdsl
        >>> from hypothesis import find
        >>> m = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n condition c: vector[3]\\n"
        ...                            " coupling affine(mask=half)\\n}\\n")
        >>> tuple(find(contexts(m, batch=4), lambda c: True).shape)
        (4, 3)
    """
    encoder = getattr(model, "condition", None)
    if encoder is None:
        return st.none()
    if encoder.type_name == "label":
        return labels(encoder.levels, batch=batch, device=device)
    shape = tuple(encoder.shape)
    if encoder.levels is not None:
        return inputs(shape, encoder.levels, batch=batch, discrete=True, device=device)
    return inputs(shape, batch=batch, scale=scale, device=device)


def encoded(context, *, batch: int = 2, scale: float = 2.0, dtype=None, device=None):
    """What a layer's ``context`` argument receives for an encoded condition ``context``
    (:class:`~flowdsl.layers.facts.ContextShape`): reals ``[batch, F]`` flattened, or None for None.

        >>> from flowdsl.layers.facts import ContextShape
        >>> from hypothesis import find
        >>> tuple(find(encoded(ContextShape("image", (2, 3, 3)), batch=1), lambda c: True).shape)
        (1, 18)
    """
    if context is None:
        return st.none()
    return inputs((context.features,), batch=batch, scale=scale, device=device).map(
        lambda t: t if dtype is None else t.to(dtype))
