"""The running mean of the training loss over a logging interval, and the divergence guard.

The guard stops a run whose loss is not finite, or has exploded: above
``best + EXPLOSION * max(1, |best|)`` nats, where ``best`` is the lowest of the first step's loss
and the interval means so far. ``--lr 100`` is then stopped within a few steps, with a message,
instead of training to 1e9 nats in silence.

Example:
    >>> g = DivergenceGuard()
    >>> g.check(1, 5.0) is None, g.check(2, 4.0) is None
    (True, True)
    >>> g.interval_done(4.5)
    >>> g.check(3, 1e9)
    'the loss exploded to 1e+09 nats at step 3 (the best so far: 4.5 nats)'
    >>> m = RunningMean()
    >>> m.add(1.0); m.add(3.0); m.take()
    (2.0, 2)
"""

from __future__ import annotations

import math

__all__ = ["DivergenceGuard", "RunningMean", "EXPLOSION"]

#: how many times max(1, |best|) above the best loss counts as exploded
EXPLOSION = 10.0


class RunningMean:
    """The mean of the values added since the last :meth:`take`."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, value: float) -> None:
        self.total, self.count = self.total + value, self.count + 1

    def take(self) -> tuple[float, int]:
        """(mean, count) of the interval, and start a new one."""
        mean = self.total / self.count if self.count else math.nan
        count = self.count
        self.total, self.count = 0.0, 0
        return mean, count


class DivergenceGuard:
    """Says why a run diverged, or None."""

    def __init__(self, best: float = math.inf):
        self.best = best

    def check(self, step: int, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"the loss became {loss} at step {step}"
        if math.isinf(self.best):
            self.best = loss
        elif loss > self.best + EXPLOSION * max(1.0, abs(self.best)):
            return f"the loss exploded to {loss:.4g} nats at step {step} (the best so far: {self.best:.4g} nats)"
        return None

    def interval_done(self, mean: float) -> None:
        """Take an interval's mean loss into the reference."""
        if math.isfinite(mean):
            self.best = min(self.best, mean)
