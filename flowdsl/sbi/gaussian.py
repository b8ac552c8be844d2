"""Closed-form posteriors of linear-Gaussian tasks, and the KL of a fitted posterior to them.

For ``theta ~ N(m, S)`` and ``x | theta ~ N(A theta, s2 I)`` the posterior is Gaussian with
precision ``P = S^-1 + A^T A / s2`` and mean ``P^-1 (S^-1 m + A^T x / s2)``. sbibm's
``gaussian_linear`` (``A = I``, ``S = s2 I = 0.1 I``) gives ``N(x / 2, 0.05 I)``; the
``timeseries`` task of :mod:`flowdsl.sbi.tasks` is linear too.

The KL reported is **exact up to Monte-Carlo error, not a Gaussian fit**:
``KL(p || q) = E_p[log p(theta | x_o) - log q(theta | x_o)]`` with ``p`` the true posterior and
``q`` the fitted one, estimated on ``n`` draws from ``p`` (the closed form is sampled exactly and
``log q`` is the flow's own density). It is the divergence NPE minimises (on average over ``x``),
finite whenever ``q`` has full support; :func:`mc_kl` also returns the estimate's standard error.

Example:
    >>> import torch
    >>> from flowdsl.sbi.tasks import get_task
    >>> post = linear_gaussian_posterior(*get_task("gaussian_linear").linear_model(), torch.ones(10))
    >>> post.mean[:3].tolist(), round(float(post.covariance_matrix[0, 0]), 4)
    ([0.5, 0.5, 0.5], 0.05)
    >>> kl, se = mc_kl(post, post.log_prob, n=1000)
    >>> abs(kl) < 1e-6
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import MultivariateNormal

__all__ = ["linear_gaussian_posterior", "task_posterior", "mc_kl", "gaussian_kl"]


def linear_gaussian_posterior(prior_mean: torch.Tensor, prior_cov: torch.Tensor, design: torch.Tensor,
                              noise_var: float, x: torch.Tensor) -> MultivariateNormal:
    """The posterior ``N(mu, C)`` of ``theta`` given one ``x`` (float64 arithmetic, float64 result)."""
    m, s, a = (torch.as_tensor(t, dtype=torch.float64) for t in (prior_mean, prior_cov, design))
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    prior_prec = torch.linalg.inv(s)
    prec = prior_prec + a.T @ a / noise_var
    cov = torch.linalg.inv(prec)
    cov = (cov + cov.T) / 2
    mean = cov @ (prior_prec @ m + a.T @ x / noise_var)
    return MultivariateNormal(mean, covariance_matrix=cov)


def task_posterior(task, x: torch.Tensor) -> MultivariateNormal:
    """The closed-form posterior of a linear-Gaussian task (one with ``linear_model()``) at ``x``."""
    mean, cov, design, noise_var = task.linear_model()
    return linear_gaussian_posterior(mean, cov, design, noise_var, x)


def mc_kl(posterior: MultivariateNormal, log_q: Callable[[torch.Tensor], torch.Tensor], n: int = 10000,
          seed: int = 0) -> tuple[float, float]:
    """``(KL(p || q), standard error)`` by Monte Carlo on ``n`` exact draws of ``p = posterior``.

    ``log_q`` maps float32 ``[n, D]`` parameters to ``[n]`` log densities of the fitted posterior.
    """
    torch.manual_seed(seed)
    theta = posterior.sample((n,))
    log_p = posterior.log_prob(theta)
    with torch.no_grad():
        lq = torch.as_tensor(log_q(theta.float()), dtype=torch.float64).reshape(-1)
    diff = log_p - lq
    return float(diff.mean()), float(diff.std() / n ** 0.5)


def gaussian_kl(samples_p: torch.Tensor, samples_q: torch.Tensor) -> float:
    """KL between Gaussians fitted to two sample sets (sbibm's ``mvn_kl_pq``, without z-scoring).

    Only a cross-check: the figure this project reports is :func:`mc_kl`.
    """
    def fit(s):
        s = torch.as_tensor(s, dtype=torch.float64)
        return MultivariateNormal(s.mean(0), covariance_matrix=torch.cov(s.T).reshape(s.shape[1], s.shape[1]))
    return float(torch.distributions.kl_divergence(fit(samples_p), fit(samples_q)))
