"""Simulation-based inference with conditional flowdsl flows: the proving job of conditions (issue 13).

- :mod:`flowdsl.sbi.tasks`: the sbibm tasks ``gaussian_linear`` and ``two_moons`` (priors and
  simulators as Lueckmann et al. 2021 define them) and a 100-step ``timeseries`` for embedding nets;
- :mod:`flowdsl.sbi.reference`: sbibm's observations and reference posterior samples, read out of the
  sbibm wheel (never installed);
- :mod:`flowdsl.sbi.c2st`: the classifier two-sample test as sbibm computes it;
- :mod:`flowdsl.sbi.gaussian`: closed-form posteriors of linear-Gaussian tasks and the KL to them;
- :mod:`flowdsl.sbi.npe`: neural posterior estimation with a conditional flowdsl flow;
- :mod:`flowdsl.sbi.sbi_adapter`: a flowdsl spec as the density estimator of the ``sbi`` package.

``benchmarks/sbi_npe.py`` runs them all against sbi's own NPE; docs/sbi.md has the figures.

What it may import: torch, numpy and the rest of flowdsl (its public API, its errors, the data
cache); scikit-learn lazily (C2ST only) and sbi lazily (the adapter only); never sbibm, whose wheel
is read as a zip file. Nothing else in flowdsl imports this package.

Example:
    >>> from flowdsl.sbi import get_task
    >>> get_task("gaussian_linear")
    GaussianLinear(theta: 10, x: 10)
"""

from flowdsl.sbi.tasks import TASKS, get_task

__all__ = ["TASKS", "get_task"]
