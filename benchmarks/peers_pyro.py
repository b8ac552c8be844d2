"""Pyro's versions of the benchmarked architectures (``pip install pyro-ppl``), written as Pyro's users write them.

Pyro's autoregressive transforms (``AffineAutoregressive``, ``SplineAutoregressive``) compute their
parameters from the transform's *input*: the forward map (sampling) is one parallel pass and the
inverse is sequential, the IAF direction. For density estimation (the MAF direction) Pyro's
documentation inverts them: ``TransformedDistribution(base, [t.inv for t in ...])`` scores data in one
pass per layer and samples sequentially, as flowdsl's ``autoregressive`` layers, zuko and nflows do.
Orders: ``AutoRegressiveNN(permutation=arange(D))`` (natural) with a reversing ``Permute`` between
layers, the alternating orders of the spec. Pyro's ``SplineCoupling`` keeps the first ``split_dim``
features; a reversing permutation between layers makes the kept half alternate (the spec alternates
even/odd features: the same function class and cost). ``Planar`` has no inverse in Pyro, as in
normflows: the density column is the closed-form direction ``log p(z) - log|det J|``, no sampling.
The base distribution is built per call from the module's buffers (it follows ``.to(device)``), as
zuko builds its distribution per call: that call is part of what a Pyro user pays.

Example:
    >>> import pytest
    >>> _ = pytest.importorskip("pyro")
    >>> impl = pyro_maf()
    >>> impl.log_prob(__import__("torch").zeros(2, 16)).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
from torch import nn

from .harness import Impl

__all__ = ["pyro_maf", "pyro_nsf_ar", "pyro_nsf_coupling", "pyro_planar"]

D, HIDDEN, LAYERS, BINS, BOUND = 16, 64, 5, 8, 5.0


class _PyroFlow(nn.Module):
    """The transforms (in the sampling direction) and a standard-normal base held as buffers."""

    def __init__(self, transforms, density_direction=()):
        super().__init__()
        self.steps = list(transforms)  # Pyro's Permute is not a Module: the list keeps them all
        for t in self.steps:
            # Pyro caches the last (x, y) pair of a transform (for sample-then-score in VI); the harness times
            # one batch again and again, where the cache would hand back a graph already backpropagated. On
            # fresh training batches the cache never hits: off, as a density-estimation run uses it
            t._cache_size = 0
        self.transforms = nn.ModuleList(t for t in self.steps if isinstance(t, nn.Module))
        self.inverted = tuple(density_direction)  # indices of transforms used through ``.inv``
        self.register_buffer("loc", torch.zeros(D))
        self.register_buffer("scale", torch.ones(D))

    def distribution(self):
        import pyro.distributions as dist

        steps = [t.inv if i in self.inverted else t for i, t in enumerate(self.steps)]
        return dist.TransformedDistribution(dist.Normal(self.loc, self.scale).to_event(1), steps)


def _impl(flow: _PyroFlow, note: str = "") -> Impl:
    return Impl("pyro", flow, lambda x: flow.distribution().log_prob(x),
                lambda n: flow.distribution().sample((n,)), note)


def _reverse():
    import pyro.distributions.transforms as T

    return T.Permute(torch.arange(D - 1, -1, -1))


def _autoregressive(make) -> _PyroFlow:
    """``LAYERS`` autoregressive transforms (``make()``), reversals between them, all used through ``.inv``."""
    layers, inverted = [], []
    for i in range(LAYERS):
        if i:
            layers.append(_reverse())
        inverted.append(len(layers))
        layers.append(make())
    return _PyroFlow(layers[::-1], [len(layers) - 1 - i for i in inverted])


def pyro_maf() -> Impl:
    import pyro.distributions.transforms as T
    from pyro.nn import AutoRegressiveNN

    return _impl(_autoregressive(lambda: T.AffineAutoregressive(
        AutoRegressiveNN(D, [HIDDEN, HIDDEN], param_dims=[1, 1], permutation=torch.arange(D)))),
        "AffineAutoregressive through .inv (the MAF direction); log-scale clipped to [-5, 3] (Pyro's default)")


def pyro_nsf_ar() -> Impl:
    import pyro.distributions.transforms as T
    from pyro.nn import AutoRegressiveNN

    return _impl(_autoregressive(lambda: T.SplineAutoregressive(
        D, AutoRegressiveNN(D, [HIDDEN, HIDDEN], param_dims=[BINS, BINS, BINS - 1], permutation=torch.arange(D)),
        count_bins=BINS, bound=BOUND, order="quadratic")),
        "SplineAutoregressive(order='quadratic') through .inv; identity tails outside [-5, 5]")


def pyro_nsf_coupling() -> Impl:
    import pyro.distributions.transforms as T
    from pyro.nn import DenseNN

    half = D // 2
    layers = []
    for i in range(LAYERS):
        if i:
            layers.append(_reverse())
        net = DenseNN(half, [HIDDEN, HIDDEN], param_dims=[half * BINS, half * BINS, half * (BINS - 1)])
        coupling = T.SplineCoupling(D, half, net, count_bins=BINS, bound=BOUND, order="quadratic",
                                    identity=True)  # the kept half passes unchanged, as in the spec
        # with identity=True Pyro still allocates the kept half's spline (184 numbers), never used: dropped,
        # so that the parameter counts (and Adam's work) compare
        del coupling.lower_spline
        layers.append(coupling)
    # a coupling is cheap both ways: used forwards in the sampling direction, as Pyro's tutorials do
    return _impl(_PyroFlow(layers), "SplineCoupling keeps the first half; reversals between layers")


def pyro_planar() -> Impl:
    """Pyro's planar layers map latent -> data and have no inverse: the comparable computation is the
    closed-form direction, ``log q(f(z)) = log p(z) - log|det J|``."""
    import pyro.distributions.transforms as T

    flow = _PyroFlow([T.Planar(D) for _ in range(16)])

    def closed_form(z):
        base = torch.distributions.Normal(flow.loc, flow.scale)
        out = base.log_prob(z).sum(-1)
        for t in flow.steps:
            y = t(z)
            out = out - t.log_abs_det_jacobian(z, y)
            z = y
        return out

    return Impl("pyro", flow, closed_form, None,
                "Pyro's planar layers have no inverse: density column = closed-form direction; no sampling")
