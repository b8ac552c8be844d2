"""Shared fixtures: float64 for exactness checks, a bounded Hypothesis profile, spec locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], derandomize=True,
)
settings.register_profile("thorough", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# The shared acceptance specs sit beside the repository (../shared/acceptance) on developer machines and CI.
ACCEPTANCE = ROOT.parent / "shared" / "acceptance"


# the trainer tests' specs. DIGITS_FLOW is small on purpose: actnorm (data-dependent init), batchnorm
# (running buffers) and dequantization noise (the random state) all have to survive a resume
DIGITS_FLOW = """flow tiny {
    input x: image[1, 8, 8] levels 17
    logit(alpha=0.05)
    actnorm
    coupling affine(mask=checkerboard(0), net=resnet(blocks=1, hidden=8))
    batchnorm
    coupling affine(mask=checkerboard(1), net=resnet(blocks=1, hidden=8))
}
"""
# no batch statistics and no noise: one process on a batch equals two processes on its halves
MOONS_FLOW = """flow moons {
    input x: vector[2]
    coupling affine(mask=[1, 0], net=mlp([16]))
    coupling affine(mask=[0, 1], net=mlp([16]))
}
"""


def spec_path(name: str) -> Path:
    """An acceptance spec by file name: from ../shared/acceptance, else the unchanged copy in specs/."""
    path = ACCEPTANCE / name
    return path if path.is_file() else SPECS / name


def acceptance_specs() -> list[Path]:
    """The acceptance specs: from ../shared/acceptance, or the copies in specs/ where that is absent."""
    folder = ACCEPTANCE if ACCEPTANCE.is_dir() else SPECS
    return sorted(list(folder.glob("*.flow")) + list(folder.glob("*.ar")))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The models under test are small: one intra-op thread is faster than two, above all on shared CPUs."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def float64():
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)
