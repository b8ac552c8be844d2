"""The peer libraries' versions of each benchmarked architecture, written as their users write them.

Every builder returns an :class:`benchmarks.harness.Impl` (module, ``log_prob``, ``sample``) or
raises ``ImportError`` when its library is not installed (``pip install -e .[bench]``).
Conventions that differ between the libraries, and how each builder matches flowdsl's spec:

- zuko builds a distribution per call (``flow().log_prob(x)``): that call is part of what a zuko
  user pays, so it is timed.
- nflows' MADE with ``num_blocks=1, use_residual_blocks=False`` is the plain masked MLP
  ``D -> 64 -> 64 -> k D`` of ``made([64, 64])``; its reverse permutations between layers give the
  alternating orders flowdsl and zuko write as ``order=``.
- normflows writes flows in the sampling direction (``log_prob`` runs each layer's ``inverse``),
  so its lists are in the reverse of the spec's order.

Example:
    >>> import pytest
    >>> _ = pytest.importorskip("zuko")
    >>> impl = zuko_maf()
    >>> impl.log_prob(__import__("torch").zeros(2, 16)).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
from torch import nn

from .harness import Impl

__all__ = [
    "zuko_maf", "nflows_maf", "zuko_nsf_ar", "nflows_nsf_ar", "zuko_nsf_coupling", "nflows_nsf_coupling",
    "normflows_realnvp", "normflows_glow", "normflows_planar", "normflows_resflow", "checkered",
]

D, HIDDEN, LAYERS, BINS, BOUND = 16, 64, 5, 8, 5.0


def checkered(i: int, n: int = D) -> torch.Tensor:
    """The kept (conditioning) positions of coupling ``i``: even positions first, then odd (zuko's masks)."""
    return torch.arange(n) % 2 == i % 2


# ----------------------------------------------------------------------------- zuko
def _zuko_impl(flow, note=""):
    return Impl("zuko", flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)), note)


def zuko_maf() -> Impl:
    import zuko

    return _zuko_impl(zuko.flows.MAF(D, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN)))


def zuko_nsf_ar() -> Impl:
    import zuko

    return _zuko_impl(zuko.flows.NSF(D, transforms=LAYERS, bins=BINS, hidden_features=(HIDDEN, HIDDEN)))


def zuko_nsf_coupling() -> Impl:
    import zuko
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, GeneralCouplingTransform, UnconditionalDistribution
    from zuko.transforms import MonotonicRQSTransform

    transforms = [
        GeneralCouplingTransform(D, mask=checkered(i), univariate=MonotonicRQSTransform,
                                 shapes=[(BINS,), (BINS,), (BINS - 1,)], hidden_features=(HIDDEN, HIDDEN))
        for i in range(LAYERS)
    ]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(D), torch.ones(D), buffer=True)
    assert zuko.__version__
    return _zuko_impl(Flow(transforms, base))


# ----------------------------------------------------------------------------- nflows
def _nflows_impl(transforms, note=""):
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform

    flow = Flow(CompositeTransform(transforms), StandardNormal([D]))
    return Impl("nflows", flow, flow.log_prob, flow.sample, note)


def _with_reversals(layers):
    from nflows.transforms.permutations import ReversePermutation

    out = []
    for i, layer in enumerate(layers):
        if i:
            out.append(ReversePermutation(D))
        out.append(layer)
    return out


def nflows_maf() -> Impl:
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    return _nflows_impl(_with_reversals([
        MaskedAffineAutoregressiveTransform(D, HIDDEN, num_blocks=1, use_residual_blocks=False)
        for _ in range(LAYERS)
    ]))


def nflows_nsf_ar() -> Impl:
    from nflows.transforms.autoregressive import MaskedPiecewiseRationalQuadraticAutoregressiveTransform as RQ

    return _nflows_impl(_with_reversals([
        RQ(D, HIDDEN, num_bins=BINS, tails="linear", tail_bound=BOUND, num_blocks=1, use_residual_blocks=False)
        for _ in range(LAYERS)
    ]))


class _Conditioner(nn.Module):
    """The MLP ``in -> 64 -> 64 -> out`` an nflows user passes as ``transform_net_create_fn``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                 nn.Linear(HIDDEN, n_out))

    def forward(self, x, context=None):
        return self.net(x)


def nflows_nsf_coupling() -> Impl:
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform as RQ

    layers = []
    for i in range(LAYERS):
        mask = torch.where(checkered(i), -1, 1)  # nflows: > 0 transformed, <= 0 passed through
        layers.append(RQ(mask, _Conditioner, num_bins=BINS, tails="linear", tail_bound=BOUND))
    return _nflows_impl(layers)


# ----------------------------------------------------------------------------- normflows
def _normflows_impl(flows, q0, note=""):
    import normflows as nf

    model = nf.NormalizingFlow(q0=q0, flows=flows)
    return Impl("normflows", model, model.log_prob, lambda n: model.sample(n)[0], note)


def normflows_realnvp() -> Impl:
    import normflows as nf

    flows = []
    for _ in range(6):  # sampling direction: the spec's (coupling, swap) pairs, reversed
        flows += [nf.flows.Permute(D, mode="swap"),
                  nf.flows.AffineCouplingBlock(nf.nets.MLP([D // 2, HIDDEN, HIDDEN, D], init_zeros=True),
                                               scale=True, scale_map="exp", split_mode="channel")]
    return _normflows_impl(flows, nf.distributions.DiagGaussian(D, trainable=False))


def normflows_glow() -> Impl:
    import normflows as nf

    flows = [nf.flows.GlowBlock(12, HIDDEN, split_mode="channel", scale=True) for _ in range(4)][::-1]
    flows.append(nf.flows.Squeeze())
    return _normflows_impl(flows, nf.distributions.DiagGaussian((12, 8, 8), trainable=False))


def normflows_planar() -> Impl:
    """normflows' planar layers map latent -> data and have no inverse (``log_prob`` raises): the
    comparable computation is the closed-form direction, ``log q(f(z)) = log p(z) - log|det J|``."""
    import normflows as nf

    q0 = nf.distributions.DiagGaussian(D, trainable=False)
    model = nf.NormalizingFlow(q0=q0, flows=[nf.flows.Planar((D,)) for _ in range(16)])

    def closed_form(x):
        _, logdet = model.forward_and_log_det(x)
        return q0.log_prob(x) - logdet

    return Impl("normflows", model, closed_form, None,
                "normflows' planar layers have no inverse: density column = closed-form direction; no sampling")


def normflows_resflow() -> Impl:
    import normflows as nf

    flows = [nf.flows.Residual(nf.nets.LipschitzMLP([D, HIDDEN, HIDDEN, D], lipschitz_const=0.9, init_zeros=True),
                               reverse=True, reduce_memory=True, geom_p=0.5, n_exact_terms=2)
             for _ in range(4)]
    return _normflows_impl(flows, nf.distributions.DiagGaussian(D, trainable=False),
                           "normflows counts 3 more parameters per block: a Swish (1 parameter) before the "
                           "first linear map, and the roulette settings geom_p and lamb, stored as parameters")
