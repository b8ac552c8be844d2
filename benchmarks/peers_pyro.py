"""Pyro's versions of the benchmarked architectures (``pip install pyro-ppl``), written as Pyro's users write them.

Pyro's autoregressive transforms (``AffineAutoregressive``, ``SplineAutoregressive``) compute their
parameters from the transform's *input*: the forward map (sampling) is one parallel pass and the
inverse is sequential, the IAF direction. For density estimation (the MAF direction) Pyro's
documentation inverts them: ``TransformedDistribution(base, [t.inv for t in ...])`` scores data in one
pass per layer and samples sequentially, as flowdsl's ``autoregressive`` layers, zuko and nflows do.
Orders: ``AutoRegressiveNN(permutation=arange(D))`` (natural) with a reversing ``Permute`` between
layers, the alternating orders of the spec. Pyro's ``SplineCoupling`` keeps the first ``split_dim``
features; a reversing permutation between layers makes the kept half alternate (the spec alternates
even/odd features: the same function class and cost). ``Planar``, ``Radial`` and ``Sylvester`` have no
inverse in Pyro (``Planar`` none in normflows either): the density column is the closed-form direction
``log p(z) - log|det J|``, no sampling. Their ``log_abs_det_jacobian`` reads what the forward call cached,
so they keep Pyro's cache of one (x, y) pair, cleared at the start of each call (a fresh batch: the harness
repeats one tensor, which the cache would answer with a graph already backpropagated). ``NeuralAutoregressive``
(NAF) is used through ``.inv`` like the other autoregressive transforms: one pass to score data; its inverse
is not implemented, so no sampling. ``Sylvester(D, count_transforms=K)`` is of full rank with ``Q`` a product
of ``K`` reflections, as ``sylvester(kind=householder, rank=16)`` (16 reflections) in the spec; Pyro stores
``R`` and ``S`` as dense D x D parameters of which it reads the strict upper triangle (plus separate
diagonals): the 2 x 136 entries it masks out, trained for nothing, are dropped by a parametrisation that
builds the matrix from its strict upper triangle, so that the parameter counts (and Adam's work) compare.
Pyro's Sylvester applies ``x @ (S Q^T)`` and ``tanh(.) @ (Q R)`` to row vectors, i.e.
``y = x + R^T Q^T tanh(Q S^T x + b)``: its log-det ``sum log(1 + h' R_ii S_ii)`` is exact only when
``Q S^T R^T Q^T`` is triangular (Q a permutation); the cost, which is what is timed, is the same. It builds
the reflections' identity on the CPU (``torch.eye(D)``), so it runs on the CPU only (Pyro 1.9).
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

__all__ = ["pyro_maf", "pyro_nsf_ar", "pyro_nsf_coupling", "pyro_planar", "pyro_radial", "pyro_sylvester",
           "pyro_naf"]

D, HIDDEN, LAYERS, BINS, BOUND = 16, 64, 5, 8, 5.0
NAF_LAYERS, NAF_SIGMOIDS, SYLVESTER_LAYERS = 3, 16, 4


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


def _autoregressive(make, count: int = LAYERS) -> _PyroFlow:
    """``count`` autoregressive transforms (``make()``), reversals between them, all used through ``.inv``."""
    layers, inverted = [], []
    for i in range(count):
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


def _closed_form(transforms, note: str) -> Impl:
    """Transforms without an inverse, scored in the closed-form direction ``log p(z) - sum log|det J|``."""
    flow = _PyroFlow(transforms)
    for t in flow.steps:
        t._cache_size = 1  # Pyro's setting for these: log_abs_det_jacobian reads what the forward call cached

    def closed_form(z):
        base = torch.distributions.Normal(flow.loc, flow.scale)
        out = base.log_prob(z).sum(-1)
        for t in flow.steps:
            t._cached_x_y = None, None  # a fresh batch (see the module docstring)
            y = t(z)
            out = out - t.log_abs_det_jacobian(z, y)
            z = y
        return out

    return Impl("pyro", flow, closed_form, None, note)


def pyro_planar() -> Impl:
    """Pyro's planar layers map latent -> data and have no inverse: the comparable computation is the
    closed-form direction, ``log q(f(z)) = log p(z) - log|det J|``."""
    import pyro.distributions.transforms as T

    return _closed_form([T.Planar(D) for _ in range(16)],
                        "Pyro's planar layers have no inverse: density column = closed-form direction; no sampling")


def pyro_radial() -> Impl:
    """16 radial layers, ``x0, alpha', beta'`` each (D + 2 parameters, as the spec's); no inverse in Pyro."""
    import pyro.distributions.transforms as T

    return _closed_form([T.Radial(D) for _ in range(16)],
                        "Pyro's radial layers have no inverse: density column = closed-form direction; no sampling")


class _StrictUpper(nn.Module):
    """A D x D matrix from its strict upper triangle, zeros elsewhere (a ``torch.nn.utils.parametrize``
    parametrisation: ``right_inverse`` keeps the triangle, so the stored parameter is that triangle only)."""

    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.register_buffer("index", torch.triu_indices(d, d, offset=1))

    def forward(self, upper):
        return upper.new_zeros(self.d, self.d).index_put((self.index[0], self.index[1]), upper)

    def right_inverse(self, dense):
        return dense[self.index[0], self.index[1]]


def pyro_sylvester() -> Impl:
    """4 Householder-Sylvester layers of full rank, ``Q`` from 16 reflections; no inverse in Pyro."""
    import pyro.distributions.transforms as T
    from torch.nn.utils import parametrize

    layers = []
    for _ in range(SYLVESTER_LAYERS):
        t = T.Sylvester(D, count_transforms=D)
        for name in ("R_dense", "S_dense"):  # only the strict upper triangle is read (see the module docstring)
            parametrize.register_parametrization(t, name, _StrictUpper(D))
        layers.append(t)
    return _closed_form(layers, "Sylvester(count_transforms=16) has no inverse: density column = closed-form "
                                "direction; no sampling; dense R, S stored as their strict upper triangles")


def pyro_naf() -> Impl:
    import pyro.distributions.transforms as T
    from pyro.nn import AutoRegressiveNN

    flow = _autoregressive(lambda: T.NeuralAutoregressive(
        AutoRegressiveNN(D, [HIDDEN, HIDDEN], param_dims=[NAF_SIGMOIDS] * 3, permutation=torch.arange(D)),
        hidden_units=NAF_SIGMOIDS, activation="sigmoid"), NAF_LAYERS)
    return Impl("pyro", flow, lambda x: flow.distribution().log_prob(x), None,
                "NeuralAutoregressive (sigmoid) through .inv; its inverse is not implemented: no sampling")
