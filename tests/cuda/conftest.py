"""The device the CUDA tests run on: ``cuda`` where torch sees one, else ``$FLOWDSL_TEST_DEVICE`` (the dry run).

Every test in this folder takes the ``device`` fixture. Where ``torch.cuda.is_available()`` is
false and ``FLOWDSL_TEST_DEVICE`` is unset, the fixture skips the test with the reason "no CUDA
device"; ``FLOWDSL_TEST_DEVICE=cpu`` runs the same bodies on the CPU instead, which is how
``benchmarks/gpu.sh --cpu`` proves them before a GPU is lent. On CUDA, TF32 is switched off for
the session: the tests compare float32 results, not the matrix units' reduced-precision mode.

Example:
    >>> chosen_device({"FLOWDSL_TEST_DEVICE": "cpu"}).type
    'cpu'
"""

from __future__ import annotations

import os

import pytest
import torch


def chosen_device(environ=None) -> torch.device | None:
    """``$FLOWDSL_TEST_DEVICE`` if set, else ``cuda`` when available, else None (the tests are skipped)."""
    environ = os.environ if environ is None else environ
    name = environ.get("FLOWDSL_TEST_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else None


@pytest.fixture(scope="session")
def device() -> torch.device:
    dev = chosen_device()
    if dev is None:
        pytest.skip("no CUDA device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.fail("FLOWDSL_TEST_DEVICE names a CUDA device, but torch sees none")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return dev
