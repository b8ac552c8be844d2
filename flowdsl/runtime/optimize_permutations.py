"""Compile-time pass: fixed permutations folded away (chains composed, absorbed by the next layer).

Walks the flow's layers in the IR's order. A ``permute`` (IR log-det kind ``zero``, no parameters)
followed directly by another ``permute`` hands its indices over (``x[:, a][:, b] = x[:, a[b]]``) and
becomes the identity; one followed directly by an index-mask coupling or an autoregressive flow layer
(MAF, IAF, NAF, ...) is absorbed by that layer (:meth:`absorb_permutation`: the coupling reads its
two parts through the composed index maps, the autoregressive layer gathers its own input). An
identity permutation gathers nothing. Modules stay where they are, so state-dict keys do not change
(permutations hold no persistent state).

Example:
    >>> import torch, flowdsl
    >>> src = "flow f {\\n input x: vector[4]\\n permute(reverse)\\n permute(reverse)\\n permute(reverse)\\n}\\n"
    >>> flow = flowdsl.compile_source(src)
    >>> [layer.identity for layer in flow.layers]
    [True, True, False]
    >>> flow(torch.arange(4.)[None])[0].tolist()
    [[3.0, 2.0, 1.0, 0.0]]
"""

from __future__ import annotations

from torch import nn

from flowdsl.runtime.structural import Permute

__all__ = ["fold_permutations"]


def fold_permutations(layers: list[nn.Module]) -> int:
    """Fold every permutation into its successor where possible; the number of gathers removed."""
    removed = 0
    for layer, successor in zip(layers, layers[1:]):
        if not isinstance(layer, Permute) or layer.identity:
            continue
        if isinstance(successor, Permute):
            successor.set_indices(layer.idx[successor.idx])  # x[:, a][:, b] == x[:, a[b]]
        elif getattr(successor, "can_absorb_permutation", False):
            successor.absorb_permutation(layer.idx)
        else:
            continue
        layer.identity = True
        removed += 1
    return removed
