"""The causality engine's proof checked by autograd: the Jacobian of the conditionals in the input.

For a compiled autoregressive model (:class:`~flowdsl.runtime.autoregressive.CompiledAR`),
:func:`jacobian_reads` differentiates every position's conditional with respect to the encoded input
(the first layer's features), or, when the first layer reads indices, to a zero added to each of its
embedding lookups of the input (the lookup at position j is x_j's). :func:`jacobian_case` checks
that nothing outside the proved dependency sets (:func:`flowdsl.analysis.causality.dependency_sets`)
and the earlier positions has a non-zero derivative, for a drawn input and context: the context is
not differentiated, so reading all of it (its future too) is allowed. Used by
:func:`flowdsl.testing.autoregressive.check_autoregressive`.

Example:
    >>> import flowdsl
    >>> model = flowdsl.compile_source("autoregressive m {\\n input x: sequence[3] levels 2\\n"
    ...                                " condition c: sequence[3]\\n nade(hidden=4)\\n"
    ...                                " output bernoulli\\n}\\n", filename="m.ar").double().eval()
    >>> reads = jacobian_reads(model, torch.tensor([[1, 0, 1]]), torch.zeros(1, 3), 0)
    >>> reads[0].astype(int).tolist()   # position i reads positions j < i only
    [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowdsl.testing.ar_contexts import ARModelFacts, draw
from flowdsl.testing.search import Mismatch

__all__ = ["MAX_JACOBIAN_POSITIONS", "jacobian_reads", "jacobian_case", "jacobian_applies"]

#: the Jacobian check runs on models of at most this many positions (one backward pass per position)
MAX_JACOBIAN_POSITIONS = 64


def _input_features(model, hot):
    """``hot [B, *input_shape, L]`` in the first layer's layout ``[B, C * L, *grid]`` (as ``CompiledAR`` encodes)."""
    from flowdsl.runtime.autoregressive import level_features

    return level_features(hot, model.input_shape)


def _leaf(model, x, stack):
    """The tensor the Jacobian is taken in: the encoded input ``[B, *input_shape, L]`` fed to the first layer,
    or, for a first layer that reads indices, a zero added to each of its embedding lookups of ``x``
    ``[B, *input_shape, F]`` (the lookup at position j is x_j's, whatever the layer does next); None if neither."""
    from torch import nn

    from flowdsl.runtime.ar_basic import encode_levels

    if not model.layers[0].takes_indices:
        hot = encode_levels(x, model.levels, model.encoding, model._dtype()).requires_grad_(True)
        with torch.no_grad():
            assert torch.equal(_input_features(model, hot), model._encode(x)), "the input layout changed"
        model._encode = lambda _x: _input_features(model, hot)  # the same layers, fed a leaf we differentiate
        stack.append(lambda: delattr(model, "_encode"))
        return hot
    tables = [m for m in model.layers[0].modules() if isinstance(m, nn.Embedding)]
    if len(tables) != 1:
        return None
    zero = torch.zeros(*x.shape, tables[0].embedding_dim, dtype=model._dtype(), device=x.device, requires_grad=True)

    def add(module, args, out):
        return out + zero.to(out.dtype) if tuple(args[0].shape) == tuple(x.shape) else out

    stack.append(tables[0].register_forward_hook(add).remove)
    return zero


def jacobian_reads(model, x, context, config: int) -> np.ndarray | None:
    """``bool [B, N, N]``: (b, i, j) when the conditional of position i has a non-zero derivative with respect
    to the encoded input at position j (example b), through the model's own layers (``CompiledAR._params``);
    None when the first layer is neither fed the encoded input nor one embedding of the indices."""
    n = math.prod(model.input_shape)
    undo: list = []
    try:
        with torch.no_grad():
            ctx = model._context(context, x.shape[0])
        leaf = _leaf(model, x, undo)
        if leaf is None:
            return None
        with torch.enable_grad():
            params = model._params(x, ctx, config)  # [B, N, P]
            weights = torch.randn(params.shape[2], generator=torch.Generator().manual_seed(3), dtype=params.dtype)
            reads = np.zeros((x.shape[0], n, n), dtype=bool)
            for i in range(n):
                grad, = torch.autograd.grad((params[:, i] * weights.to(params.device)).sum(), leaf, retain_graph=True,
                                            allow_unused=True)
                if grad is not None:
                    reads[:, i] = (grad.reshape(x.shape[0], n, -1) != 0).any(dim=2).cpu().numpy()
    finally:
        for restore in reversed(undo):
            restore()
        model._select(model.mask_index)
    return reads


def jacobian_case(model, rank, declared, config, case):
    x, context = case
    found = jacobian_reads(model, x, context, config)
    assert found is not None, "the Jacobian check runs only where jacobian_applies"
    reads = found.any(axis=0)
    allowed = rank[None, :] < rank[:, None]
    if declared is not None:
        allowed &= declared
    bad = np.argwhere(reads & ~allowed)
    if len(bad):
        i, j = (int(v) for v in bad[0])
        why = ("which is not generated before it" if rank[j] >= rank[i] else
               "which the checker's proof says it does not read")
        shown = {"x": x} | ({"context": context} if context is not None else {})
        raise Mismatch([f"the Jacobian of the conditional of position {i} is non-zero at input position {j}, {why} "
                        f"({len(bad)} such pairs)"], {"jacobian": float(len(bad))}, shown)
    return {"jacobian": 0.0}


def jacobian_applies(model, facts: ARModelFacts) -> bool:
    from flowdsl.runtime.autoregressive import CompiledAR

    if not (isinstance(model, CompiledAR) and facts.ir is not None and len(model.layers) > 0
            and math.prod(model.input_shape) <= MAX_JACOBIAN_POSITIONS):
        return False
    x = torch.zeros(1, *model.input_shape, dtype=torch.long, device=model._device())
    context = draw(facts, 1, torch.Generator().manual_seed(0), model._dtype(), model._device())
    found = jacobian_reads(model, x, context, facts.mask_index)
    return found is not None and bool(found.any())  # the leaf reached the conditionals
