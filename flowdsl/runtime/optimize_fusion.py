"""Compile-time pass: an ``actnorm`` followed directly by an ``invconv1x1`` runs as one 1x1 convolution.

Glow's step starts ``actnorm -> invconv1x1``: ``y = W ((x + b) * exp(s))``. With autograd off and the
actnorm initialised (sampling, ``log_prob`` under ``torch.no_grad()``), the pair is the affine map
``y = W' x + c`` with ``W' = W diag(exp(s))`` and ``c = W' b``, and its inverse
``x = diag(exp(-s)) W^-1 y - b``: one convolution with a bias instead of a convolution and two
elementwise passes over the activations. ``W'``, ``c`` and the inverse are derived weights, kept
while the parameters are unchanged (:class:`~flowdsl.runtime.optimize_cache.DerivedCache`). The
actnorm then passes its input through and returns only its log-det. With autograd on (training), before
a training-mode actnorm's first batch (its data-dependent initialisation), or under ``torch.compile``, both
layers run as written. Modules stay where they are: state-dict keys do
not change. Off with ``optimize=False`` / ``FLOWDSL_NO_OPTIMIZE=1``.

Example:
    >>> import torch, flowdsl
    >>> src = "flow g {\\n input x: image[2, 2, 2]\\n actnorm\\n invconv1x1\\n}\\n"
    >>> fast, plain = flowdsl.compile_source(src), flowdsl.compile_source(src, optimize=False)
    >>> _ = plain.load_state_dict(fast.state_dict())
    >>> x = torch.randn(3, 2, 2, 2)
    >>> with torch.no_grad():
    ...     same = torch.allclose(fast(x)[0], plain(x)[0], atol=1e-6)
    >>> fast.layers[1].fused_actnorm is fast.layers[0], same
    (True, True)
"""

from __future__ import annotations

from torch import nn

from flowdsl.runtime.elementwise import ActNorm
from flowdsl.runtime.optimize import fusing
from flowdsl.runtime.structural import InvConv1x1

__all__ = ["fuse_actnorm_invconv", "fusing"]


def fuse_actnorm_invconv(layers: list[nn.Module]) -> int:
    """Link every ``actnorm`` directly followed by an ``invconv1x1`` of the same width; the number fused."""
    fused = 0
    for first, second in zip(layers, layers[1:]):
        if isinstance(first, ActNorm) and isinstance(second, InvConv1x1) and first.bias.numel() == second.channels:
            second.absorb_actnorm(first)
            fused += 1
    return fused
