"""No host synchronisation inside the forward pass of the benchmarked models (``benchmarks/cases.py``).

On CUDA, ``log_prob`` (training and evaluation mode, after a first call that may initialise actnorm
from the data) runs under ``torch.cuda.set_sync_debug_mode("error")``: any copy of a device value to
the host (``.item()``, ``bool(t)``, ``nonzero``) raises. On the CPU, where that mode does nothing, the
same calls run under a dispatch mode that records every op reading a tensor value on the host. The
residual flow is left out: it reads the device by design (adaptive power iterations, roulette lengths).
The input value checks (one boolean read per call, ``flowdsl.runtime.input_checks``) are switched off,
as ``benchmarks.run`` does.
"""

from __future__ import annotations

import contextlib
import sys

import cuda_helpers
import pytest
import torch
from cuda_helpers import ROOT

from flowdsl.runtime.input_checks import value_checks

pytestmark = pytest.mark.cuda
device = cuda_helpers.device  # the fixture

BENCHMARKED = ["maf", "nsf_ar", "nsf_coupling", "realnvp", "glow", "planar"]


class HostReads:
    """Records each op that copies a tensor value to the host (the CPU stand-in for the sync debug mode)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        hits = self.hits = []
        scalar = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
                  torch.ops.aten.nonzero.default}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func in scalar:
                    hits.append(str(func))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()


@contextlib.contextmanager
def no_host_reads(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield []
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    reads = HostReads()
    with reads.mode:
        yield reads.hits


@pytest.mark.parametrize("key", BENCHMARKED)
def test_no_host_sync_in_the_forward(device, key):
    sys.path.insert(0, str(ROOT))
    from benchmarks import cases

    impl = cases.flowdsl_impl(next(c for c in cases.CASES if c.key == key), device)
    x = torch.randn(8, *impl.module.input_shape, device=device)
    for training in (True, False):
        impl.module.train(training)
        impl.log_prob(x)  # first call: data-dependent initialisation (actnorm) may read the device once
        with value_checks(False), no_host_reads(device) as hits:
            impl.log_prob(x)
        assert hits == [], (key, training, hits)
