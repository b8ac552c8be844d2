"""A flowdsl spec as the density estimator of the ``sbi`` package's NPE (needs ``pip install sbi``).

:func:`flowdsl_density_estimator` returns what sbi calls a density-estimator *builder*: a function of
the training ``(theta, x)`` that returns a ``ConditionalDensityEstimator``. sbi's ``NPE`` takes it
as ``density_estimator=`` and then trains, validates, early-stops and samples it with its own loop
(rejecting samples outside a bounded prior, as for its own flows). The estimator wraps the compiled
conditional flow between z-scorings of ``theta`` and ``x`` fitted on the training simulations,
the way sbi's own builders z-score (``log_prob`` includes the Jacobian of the ``theta`` scaling).

sbi's shape conventions are kept: ``log_prob(input [S, B, D] or [B, D], condition [B, K] or
[S, B, K]) -> [S, B]``, ``loss(input [B, D], condition [B, K]) -> [B]``, ``sample(shape, condition
[B, K]) -> [*shape, B, D]`` (one batched call of the flow for all ``B`` conditions).

Example (runs only where sbi is installed):
    >>> import torch
    >>> spec = '''flow f {
    ...     input theta: vector[2]
    ...     condition x: vector[3]
    ...     coupling affine(mask=half, net=mlp([8]))
    ... }'''
    >>> build = flowdsl_density_estimator(spec)
    >>> est = build(torch.randn(50, 2), torch.randn(50, 3))  # doctest: +SKIP
    >>> est.log_prob(torch.randn(4, 5, 2), torch.randn(5, 3)).shape  # doctest: +SKIP
    torch.Size([4, 5])
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from flowdsl.input_errors import InputError
from flowdsl.sbi.npe import Standardizer

__all__ = ["flowdsl_density_estimator", "sbi_available"]


def sbi_available() -> bool:
    """Whether the ``sbi`` package can be imported."""
    try:
        import sbi.neural_nets.estimators.base  # noqa: F401
    except ImportError:
        return False
    return True


def _compile(spec: str | Path):
    import flowdsl

    if isinstance(spec, Path) or (isinstance(spec, str) and "{" not in spec and spec.endswith(".flow")):
        return flowdsl.compile_file(spec)
    return flowdsl.compile_source(str(spec))


def _estimator_class():
    from sbi.neural_nets.estimators.base import ConditionalDensityEstimator

    class FlowDSLEstimator(ConditionalDensityEstimator):
        """A compiled conditional flowdsl flow behind z-scorings, as an sbi density estimator."""

        def __init__(self, flow, theta_norm: Standardizer, x_norm: Standardizer):
            super().__init__(flow, input_shape=torch.Size(flow.input_shape),
                             condition_shape=torch.Size(flow.context_shape))
            self.register_buffer("theta_mean", theta_norm.mean.clone())
            self.register_buffer("theta_std", theta_norm.std.clone())
            self.register_buffer("x_mean", x_norm.mean.clone())
            self.register_buffer("x_std", x_norm.std.clone())

        def _z_theta(self, theta):
            return (theta - self.theta_mean) / self.theta_std

        def _z_x(self, x):
            return (x - self.x_mean) / self.x_std

        def log_prob(self, input, condition, **kwargs):
            input, condition, batch = self._broadcast_and_align(input, condition)
            samples = input.shape[0]
            theta = input.reshape(samples * batch, *self.input_shape)
            x = condition.reshape(samples * batch, *self.condition_shape)
            lp = self.net.log_prob(self._z_theta(theta), context=self._z_x(x))
            return lp.reshape(samples, batch) - self.theta_std.log().sum()

        def loss(self, input, condition, **kwargs):
            return -self.log_prob(input.unsqueeze(0), condition)[0]

        def sample(self, sample_shape, condition, **kwargs):
            condition = condition.reshape(-1, *self.condition_shape)
            batch, n = condition.shape[0], math.prod(sample_shape)
            context = self._z_x(condition).unsqueeze(0).expand(n, *condition.shape).reshape(n * batch, -1)
            z = self.net.sample(n * batch, context=context)
            theta = z * self.theta_std + self.theta_mean
            return theta.reshape(*sample_shape, batch, *self.input_shape)

    return FlowDSLEstimator


def flowdsl_density_estimator(spec: str | Path, seed: int | None = None):
    """An sbi density-estimator builder for the conditional flow ``spec`` (a ``.flow`` path or text).

    ``seed``, when given, seeds torch before each compile (the initial weights).
    """
    def build(batch_theta: torch.Tensor, batch_x: torch.Tensor):
        if seed is not None:
            torch.manual_seed(seed)
        flow = _compile(spec)
        if flow.context_shape is None:
            raise InputError("the spec declares no condition: NPE needs `condition x: vector[K]`", "sbi adapter")
        theta = torch.as_tensor(batch_theta, dtype=torch.float32).reshape(len(batch_theta), -1)
        x = torch.as_tensor(batch_x, dtype=torch.float32).reshape(len(batch_x), -1)
        if tuple(theta.shape[1:]) != tuple(flow.input_shape) or tuple(x.shape[1:]) != tuple(flow.context_shape):
            raise InputError(f"the spec models theta {tuple(flow.input_shape)} given x {tuple(flow.context_shape)}, "
                             f"but the simulations have theta {tuple(theta.shape[1:])} and x {tuple(x.shape[1:])}",
                             "sbi adapter")
        return _estimator_class()(flow, Standardizer.fit(theta), Standardizer.fit(x))

    return build
