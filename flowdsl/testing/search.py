"""The search behind every check: Hypothesis draws cases, shrinks a failure, and the report says so.

A check is a function ``case -> {measure: error}`` that raises :class:`Mismatch` on a
violated property. :func:`search` runs it on drawn cases and, on a failure, raises
:class:`PropertyFailure` carrying the *minimal* failing case (after Hypothesis shrank it),
the measured errors, the number of examples tried and a readable report.

Example:
    >>> from hypothesis import strategies as st
    >>> def nonnegative(v):
    ...     if v < 0:
    ...         raise Mismatch(["v is negative"], {"v": float(-v)}, {"v": v})
    ...     return {"v": 0.0}
    >>> try:
    ...     search("nonnegative", nonnegative, st.integers(-100, 100), examples=50)
    ... except PropertyFailure as err:
    ...     print(err.example)
    {'v': -1}
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PropertyFailure", "Mismatch", "search", "format_case"]


class PropertyFailure(AssertionError):
    """A property does not hold: ``property``, the minimal ``example``, the ``errors`` measured on it,
    the worst ``errors`` seen (``worst``) and how many ``examples`` were tried."""

    def __init__(self, prop: str, subject: str, problems: list[str], example: dict | None = None,
                 errors: dict | None = None, examples: int = 0, worst: float | None = None):
        self.property = prop
        self.subject = subject
        self.problems = list(problems)
        self.example = example
        self.errors = dict(errors or {})
        self.examples = examples
        self.worst = worst if worst is not None else max([v for v in self.errors.values() if v is not None] or [0.0])
        super().__init__(self.render())

    def render(self) -> str:
        tried = f" after {self.examples} example{'s' if self.examples != 1 else ''}" if self.examples else ""
        lines = [f"{self.property} fails for {self.subject}{tried}:"]
        lines += [f"  - {p}" for p in self.problems]
        if self.example:
            lines.append("  minimal failing example:" if self.examples > 1 else "  failing example:")
            lines += [f"    {k} = {format_case(v)}" for k, v in self.example.items()]
        return "\n".join(lines)


@dataclass
class Mismatch(Exception):
    """Raised by a check function on one case: what went wrong, the errors, the case to show."""

    problems: list[str]
    errors: dict = field(default_factory=dict)
    case: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__init__("; ".join(self.problems))


def format_case(value) -> str:
    """A compact, readable rendering of a tensor, array or value (rounded; long ones cut)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    import numpy as np

    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=4, threshold=64, separator=", ", suppress_small=True)
        return " ".join(text.split())
    return repr(value)


def search(prop: str, check, strategy, *, examples: int = 20, seed: int | None = None, subject: str = "the model",
           shrink: bool = True) -> dict:
    """Run ``check`` on up to ``examples`` cases of ``strategy``; return the worst errors (and ``examples``).

    Raises :class:`PropertyFailure` with the minimal failing case. ``seed`` None is deterministic
    (derandomized); an integer picks another reproducible stream of cases. Called from inside another
    Hypothesis test, the failing case is not shrunk (the outer test shrinks its own).
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed
    from hypothesis.errors import Flaky

    worst: dict = {}
    calls = [0]

    def note(errors):
        for k, v in errors.items():
            if v is None:
                worst.setdefault(k, None)
            elif worst.get(k) is None or not (v <= worst[k]):
                worst[k] = v

    from hypothesis import currently_in_test_context

    # Inside another Hypothesis test (which shrinks its own case), do not multiply the shrinking work.
    shrink = shrink and not currently_in_test_context()
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=max(1, examples), deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, phases=phases,
              report_multiple_bugs=False, print_blob=False)
    @given(strategy)
    def run(case):
        calls[0] += 1
        try:
            errors = check(case)
        except Mismatch as m:
            note(m.errors)
            raise
        note(errors or {})

    if seed is not None:
        run = hseed(seed)(run)
    try:
        run()
    except Mismatch as m:
        raise PropertyFailure(prop, subject, m.problems, m.case, m.errors, calls[0],
                              worst=_max(worst)) from None
    except Flaky as err:
        raise PropertyFailure(prop, subject, [f"the failure is not reproducible (random behaviour?): {err}"],
                              None, {}, calls[0]) from None
    out = dict(worst)
    out["examples"] = calls[0]
    return out


def _max(errors: dict) -> float:
    vals = [v for v in errors.values() if v is not None]
    return max(vals) if vals else 0.0
