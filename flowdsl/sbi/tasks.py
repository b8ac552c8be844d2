"""The simulation-based-inference tasks: priors and simulators, written here (nothing downloaded).

``gaussian_linear`` and ``two_moons`` are the tasks of the sbibm benchmark (Lueckmann et al. 2021,
"Benchmarking Simulation-Based Inference"), defined as its paper and its 1.1.0 wheel define them:

- ``gaussian_linear``: ``theta ~ N(0, 0.1 I_10)``, ``x | theta ~ N(theta, 0.1 I_10)`` (sbibm's
  ``prior_scale`` and ``simulator_scale`` of 0.1 are the *covariances*: the prior precision is
  ``inverse(0.1 I)``). The posterior is ``N(x / 2, 0.05 I)`` (:mod:`flowdsl.sbi.gaussian`).
- ``two_moons``: ``theta ~ U([-1, 1]^2)``; ``a ~ U(-pi/2, pi/2)``, ``r ~ N(0.1, 0.01^2)``,
  ``p = (r cos a + 0.25, r sin a)``, ``x = p + (-|theta_1 + theta_2| / sqrt 2, (-theta_1 + theta_2) / sqrt 2)``
  (sbibm's rotation by -pi/4 written out). A bimodal, crescent-shaped posterior.

``timeseries`` is this project's embedding-net case (not an sbibm task): ``theta ~ N(0, I_3)`` and
``x`` a 100-step noisy series ``x_t = theta_1 + theta_2 s_t + theta_3 sin(2 pi t / 20) + eps_t``
with ``s_t`` = ``t`` scaled to [-1, 1] and ``eps_t ~ N(0, 1)``: linear in ``theta``, so its posterior is
known in closed form too, while a flow has to read 100 numbers to find 3 (an ``embed`` net's job).
Its 10 observations are drawn from the prior and simulator with the seeds ``1000 + k``.

Every simulator takes a ``torch.Generator`` and returns float32 ``[n, dim_x]``.

Example:
    >>> import torch
    >>> task = get_task("two_moons")
    >>> g = torch.Generator().manual_seed(0)
    >>> theta = task.sample_prior(5, g)
    >>> x = task.simulate(theta, g)
    >>> tuple(theta.shape), tuple(x.shape), bool(task.in_support(theta).all())
    ((5, 2), (5, 2), True)
    >>> get_task("gaussian_linear").dim_theta, get_task("timeseries").dim_x
    (10, 100)
"""

from __future__ import annotations

import math

import torch

from flowdsl.input_errors import InputError

__all__ = ["Task", "GaussianLinear", "TwoMoons", "TimeSeries", "TASKS", "get_task"]


class Task:
    """A prior and a simulator; ``low``/``high`` bound the prior's support (None: unbounded)."""

    name: str = ""
    dim_theta: int = 0
    dim_x: int = 0
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def simulate(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def in_support(self, theta: torch.Tensor) -> torch.Tensor:
        """``[n]`` bool: inside the prior's support (always true for an unbounded prior)."""
        theta = torch.as_tensor(theta)
        if self.low is None or self.high is None:
            return torch.isfinite(theta).all(dim=-1)
        return ((theta >= self.low) & (theta <= self.high)).all(dim=-1)

    def simulate_pairs(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs ``(theta, x)``: ``theta`` from the prior, ``x`` from the simulator, one seed."""
        g = torch.Generator().manual_seed(seed)
        theta = self.sample_prior(n, g)
        return theta, self.simulate(theta, g)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(theta: {self.dim_theta}, x: {self.dim_x})"


class GaussianLinear(Task):
    """sbibm's ``gaussian_linear``: prior ``N(0, 0.1 I)``, ``x ~ N(theta, 0.1 I)``, 10-d."""

    name = "gaussian_linear"

    def __init__(self, dim: int = 10, prior_var: float = 0.1, noise_var: float = 0.1):
        self.dim_theta = self.dim_x = dim
        self.prior_var, self.noise_var = prior_var, noise_var

    def sample_prior(self, n, generator=None):
        return math.sqrt(self.prior_var) * torch.randn(n, self.dim_theta, generator=generator)

    def simulate(self, theta, generator=None):
        theta = torch.as_tensor(theta, dtype=torch.float32)
        return theta + math.sqrt(self.noise_var) * torch.randn(theta.shape, generator=generator)

    def linear_model(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(prior mean, prior covariance, design A, noise variance)`` of ``x = A theta + noise``."""
        d = self.dim_theta
        eye = torch.eye(d, dtype=torch.float64)
        return torch.zeros(d, dtype=torch.float64), self.prior_var * eye, eye, self.noise_var


class TwoMoons(Task):
    """sbibm's ``two_moons``: prior ``U([-1, 1]^2)``, crescent-shaped likelihood."""

    name = "two_moons"
    dim_theta = dim_x = 2

    def __init__(self):
        self.low, self.high = -torch.ones(2), torch.ones(2)

    def sample_prior(self, n, generator=None):
        return 2 * torch.rand(n, 2, generator=generator) - 1

    def simulate(self, theta, generator=None):
        theta = torch.as_tensor(theta, dtype=torch.float32)
        n = theta.shape[0]
        a = math.pi * (torch.rand(n, generator=generator) - 0.5)  # U(-pi/2, pi/2)
        r = 0.1 + 0.01 * torch.randn(n, generator=generator)
        p = torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], dim=1)
        c = s = math.sqrt(0.5)  # cos(-pi/4) and -sin(-pi/4)
        z0 = c * theta[:, 0] + s * theta[:, 1]
        z1 = -s * theta[:, 0] + c * theta[:, 1]
        return p + torch.stack([-z0.abs(), z1], dim=1)


class TimeSeries(Task):
    """A 100-step noisy series from 3 parameters (offset, trend, seasonal amplitude); linear-Gaussian."""

    name = "timeseries"
    dim_theta, dim_x = 3, 100

    def __init__(self, length: int = 100, period: float = 20.0, noise_var: float = 1.0):
        self.dim_x = length
        t = torch.arange(length, dtype=torch.float32)
        self.design = torch.stack([torch.ones(length), torch.linspace(-1, 1, length),
                                   torch.sin(2 * math.pi * t / period)], dim=1)
        self.noise_var = noise_var

    def sample_prior(self, n, generator=None):
        return torch.randn(n, 3, generator=generator)

    def simulate(self, theta, generator=None):
        theta = torch.as_tensor(theta, dtype=torch.float32)
        noise = math.sqrt(self.noise_var) * torch.randn(theta.shape[0], self.dim_x, generator=generator)
        return theta @ self.design.T + noise

    def linear_model(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        f64 = torch.float64
        return torch.zeros(3, dtype=f64), torch.eye(3, dtype=f64), self.design.double(), self.noise_var

    def observation(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation ``k`` (1..10): ``(true theta [3], x [100])``, drawn with the seed ``1000 + k``."""
        if not 1 <= k <= 10:
            raise InputError(f"observation {k} does not exist: 1..10", "timeseries")
        theta, x = self.simulate_pairs(1, seed=1000 + k)
        return theta[0], x[0]


TASKS = {"gaussian_linear": GaussianLinear, "two_moons": TwoMoons, "timeseries": TimeSeries}


def get_task(name: str) -> Task:
    """The task called ``name`` (one of :data:`TASKS`); an InputError naming the known ones otherwise."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}: known are {', '.join(TASKS)}", "sbi")
    return TASKS[name]()
