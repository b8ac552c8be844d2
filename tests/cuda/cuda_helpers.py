"""Helpers of the CUDA tests: the device, the bundled specs, inputs that fit a model, copies of one model.

The device: ``cuda`` where torch sees one, else ``$FLOWDSL_TEST_DEVICE`` (the dry run). Each test
module binds the fixture with ``device = cuda_helpers.device``; where ``torch.cuda.is_available()``
is false and ``FLOWDSL_TEST_DEVICE`` is unset, it skips the test with the reason "no CUDA device";
``FLOWDSL_TEST_DEVICE=cpu`` runs the same bodies on the CPU instead, which is how
``benchmarks/gpu.sh --cpu`` proves them before a GPU is lent. On CUDA, TF32 is switched off for the
session: the tests compare float32 results, not the matrix units' reduced-precision mode. (The
fixture lives here, not in a ``tests/cuda/conftest.py``: a second ``conftest`` module would take the
place of ``tests/conftest.py`` in ``sys.modules``, where the other tests import their helpers from.)

Example:
    >>> chosen_device({"FLOWDSL_TEST_DEVICE": "cpu"}).type
    'cpu'
    >>> import flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n coupling affine(mask=half)\\n}\\n")
    >>> x = flow_input(flow, 3, torch.device("cpu"))
    >>> tuple(x.shape), twin(flow, torch.device("cpu"), torch.float64).layers[0] is flow.layers[0]
    ((3, 2), False)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def chosen_device(environ=None) -> torch.device | None:
    """``$FLOWDSL_TEST_DEVICE`` if set, else ``cuda`` when available, else None (the tests are skipped)."""
    environ = os.environ if environ is None else environ
    name = environ.get("FLOWDSL_TEST_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else None


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device of the CUDA tests (bound in each module: ``device = cuda_helpers.device``)."""
    dev = chosen_device()
    if dev is None:
        pytest.skip("no CUDA device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.fail("FLOWDSL_TEST_DEVICE names a CUDA device, but torch sees none")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return dev


def bundled_models() -> list[tuple[str, str]]:
    """``(file name, model name)`` of every model in ``specs/*.flow`` and ``specs/*.ar`` (not ``specs/paper``)."""
    import flowdsl

    out = []
    for path in sorted(SPECS.glob("*.flow")) + sorted(SPECS.glob("*.ar")):
        out += [(path.name, name) for name in flowdsl.model_names(path)]
    return out


def compile_model(file: str, model: str):
    import flowdsl

    return flowdsl.compile_file(SPECS / file, model=model)


def is_flow(model) -> bool:
    return hasattr(model, "inverse_and_logdet")


def flow_input(flow, n: int, device, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Continuous inputs: inside [0, levels) away from the edges for discrete flows, N(0, 1) otherwise."""
    gen = torch.Generator().manual_seed(seed)
    if flow.levels:
        x = (0.1 + 0.8 * torch.rand((n, *flow.input_shape), generator=gen, dtype=torch.float64)) * flow.levels
    else:
        x = torch.randn((n, *flow.input_shape), generator=gen, dtype=torch.float64)
    return x.to(device, dtype)


def ar_input(model, n: int, device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.levels, (n, *model.input_shape), generator=gen).to(device)


def labels(model, n: int, device) -> torch.Tensor | None:
    """Class labels for a conditional model, None otherwise."""
    if getattr(model, "context_shape", None) is None:
        return None
    return (torch.arange(n) % model.classes).to(device)


def twin(model, device, dtype):
    """A deep copy of ``model`` (the same weights) moved to ``device`` and ``dtype``."""
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / (1 + |b|)`` (on the CPU, in float64); inf where either holds a NaN."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf")
    return float(((a - b).abs() / (1 + b.abs())).max()) if a.numel() else 0.0


#: one bundled flow per family (the bf16 training check): ``(file, model)``
FLOWS_AND_FAMILIES = [("nice.flow", "nice"), ("realnvp.flow", "realnvp"), ("realnvp_2d.flow", "realnvp_2d"),
                      ("glow.flow", "glow"), ("glow_conditional.flow", "glow_conditional"), ("maf.flow", "maf"),
                      ("iaf.flow", "iaf"), ("nsf.flow", "nsf"), ("naf.flow", "naf"), ("sos.flow", "sos"),
                      ("umnn.flow", "umnn"), ("planar.flow", "planar_radial"), ("sylvester.flow", "sylvester"),
                      ("resflow.flow", "resflow"), ("ffjord.flow", "ffjord")]
