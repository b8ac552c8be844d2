"""FrEIA's version of the RealNVP pairing (``pip install FrEIA``), written as FrEIA's users write it.

A ``GLOWCouplingBlock`` is two affine couplings: the second half transformed given the first, then the
first given the new second, each by its own subnet ``8 -> 64 -> 64 -> 16`` (scale and shift). Three
blocks are the spec's six couplings with the halves swapped between them: the same parameters and the
same arithmetic. FrEIA soft-clamps the log-scale (``clamp * 0.636 * atan(s / clamp)``, clamp 2, its
default) where flowdsl and normflows use ``exp(s)`` directly. ``log_prob`` is the standard normal's
log-density of ``z`` plus FrEIA's log-Jacobian; sampling runs the blocks in reverse (``rev=True``,
``jac=False``: the log-det a sampler throws away is not computed, as in flowdsl).

Example:
    >>> import pytest
    >>> _ = pytest.importorskip("FrEIA")
    >>> impl = freia_realnvp()
    >>> impl.log_prob(__import__("torch").zeros(2, 16)).shape
    torch.Size([2])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .harness import Impl

__all__ = ["freia_realnvp"]

D, HIDDEN, BLOCKS = 16, 64, 3


def _subnet(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(c_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, c_out))


def freia_realnvp() -> Impl:
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    inn = Ff.SequenceINN(D)
    for _ in range(BLOCKS):
        inn.append(Fm.GLOWCouplingBlock, subnet_constructor=_subnet, clamp=2.0)
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log_prob(x):
        z, log_jac = inn(x)
        return -0.5 * (z * z).sum(1) - D * half_log_2pi + log_jac

    def sample(n):
        ref = next(inn.parameters())
        z = torch.randn(n, D, device=ref.device, dtype=ref.dtype)
        return inn(z, rev=True, jac=False)[0]

    return Impl("FrEIA", inn, log_prob, sample,
                "3 GLOWCouplingBlocks = 6 affine couplings; log-scale soft-clamped (atan, clamp 2)")
