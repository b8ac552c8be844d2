"""Switches for log-det estimators: :func:`exact_logdet` makes every stochastic or truncated
estimator (Hutchinson traces, power series, Russian roulette) compute the exact value.

Imports no torch: layers ask :func:`exact_logdet_enabled` at run time.

Example:
    >>> exact_logdet_enabled()
    False
    >>> with exact_logdet():
    ...     exact_logdet_enabled()
    True
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["exact_logdet", "exact_logdet_enabled"]

_EXACT: ContextVar[bool] = ContextVar("flowdsl_exact_logdet", default=False)


@contextmanager
def exact_logdet(enabled: bool = True):
    """Within this block, every log-det estimator computes the exact value."""
    token = _EXACT.set(enabled)
    try:
        yield
    finally:
        _EXACT.reset(token)


def exact_logdet_enabled() -> bool:
    return _EXACT.get()
