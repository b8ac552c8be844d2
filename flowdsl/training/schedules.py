"""Learning-rate schedules: linear warm-up, then constant, cosine, step or reduce-on-plateau.

The learning rate of optimiser step ``s`` (0-based) is ``lr * warm(s) * decay(s)``:

- ``warm(s) = min(1, (s + 1) / warmup)`` (1 without warm-up);
- ``constant``: ``decay = 1``;
- ``cosine[:min=M]``: ``decay = M + (1 - M) * (1 + cos(pi * p)) / 2`` with
  ``p = clamp((s - warmup) / (steps - warmup), 0, 1)`` (default ``M = 0``);
- ``step[:every=K,gamma=G]``: ``decay = G ** (max(0, s - warmup) // K)`` (default ``G = 0.1`` and
  ``K`` a third of the steps after warm-up);
- ``plateau[:factor=F,patience=P,min=M]``: ``decay`` starts at 1 and is multiplied by ``F`` each time
  the validation NLL has not improved for ``P`` evaluations in a row, never below ``M`` (defaults
  0.5, 2, 1e-3).

Warm-up, cosine and step are pure functions of the step; the plateau state is saved in the
checkpoint (:meth:`LRSchedule.state_dict`), so a resumed run follows the same rates.

Example:
    >>> s = LRSchedule(parse_schedule("cosine"), lr=1.0, warmup=2, steps=6)
    >>> [round(s.lr(i), 3) for i in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    >>> p = LRSchedule(parse_schedule("plateau:patience=1"), lr=1.0, warmup=0, steps=10)
    >>> [p.observe(v) for v in (3.0, 2.0, 2.5)], p.lr(5)
    ([False, False, True], 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["ScheduleSpec", "parse_schedule", "LRSchedule", "SCHEDULES"]

#: each schedule's parameters and their defaults (None: computed from the run's length)
SCHEDULES: dict[str, dict[str, float | None]] = {
    "constant": {},
    "cosine": {"min": 0.0},
    "step": {"every": None, "gamma": 0.1},
    "plateau": {"factor": 0.5, "patience": 2, "min": 1e-3},
}


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's name and its parameters (``step:every=1000,gamma=0.5``)."""

    name: str = "constant"
    params: dict = field(default_factory=dict)

    def __str__(self) -> str:
        given = ",".join(f"{k}={v:g}" for k, v in sorted(self.params.items()))
        return self.name + (":" + given if given else "")


def _bad(message: str) -> FlowDSLError:
    return FlowDSLError([Diagnostic(Pos("train"), "error", message,
                                    "schedules: constant, cosine[:min=M], step[:every=K,gamma=G], "
                                    "plateau[:factor=F,patience=P,min=M]")])


def parse_schedule(text: str | None) -> ScheduleSpec:
    """``ScheduleSpec`` of ``"cosine"``, ``"step:every=100,gamma=0.5"`` ...; a FlowDSLError when it is not one."""
    if text is None:
        return ScheduleSpec()
    if not isinstance(text, str):
        raise _bad(f"the schedule must be a name, got {text!r}")
    name, _, rest = text.strip().partition(":")
    if name not in SCHEDULES:
        raise _bad(f"unknown learning-rate schedule '{name}'")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in SCHEDULES[name] or not eq:
            raise _bad(f"the {name} schedule has no parameter '{key}'" if eq else f"'{item}' is not KEY=VALUE")
        try:
            number = float(value)
        except ValueError:
            raise _bad(f"{name} schedule: {key} must be a number, got {value.strip()!r}") from None
        positive = key in ("every", "patience", "factor", "gamma")
        if not math.isfinite(number) or number < 0 or (positive and number <= 0) or \
                (key in ("factor", "gamma", "min") and number > 1) or \
                (key in ("every", "patience") and number != int(number)):
            raise _bad(f"{name} schedule: {key}={value.strip()} is out of range")
        params[key] = int(number) if key in ("every", "patience") else number
    return ScheduleSpec(name, params)


class LRSchedule:
    """The learning rate of each step, and the plateau's reaction to validation scores."""

    def __init__(self, spec: ScheduleSpec, lr: float, warmup: int, steps: int):
        self.spec, self.base, self.warmup, self.steps = spec, lr, warmup, steps
        self.p = {**SCHEDULES[spec.name], **spec.params}
        if spec.name == "step" and self.p["every"] is None:
            self.p["every"] = max(1, (steps - warmup) // 3)
        self.factor, self.best, self.bad = 1.0, math.inf, 0

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        after = max(0, step - self.warmup)
        name = self.spec.name
        if name == "cosine":
            progress = min(1.0, after / max(1, self.steps - self.warmup))
            decay = self.p["min"] + (1 - self.p["min"]) * 0.5 * (1 + math.cos(math.pi * progress))
        elif name == "step":
            decay = self.p["gamma"] ** (after // int(self.p["every"]))
        else:
            decay = self.factor
        return self.base * warm * decay

    def observe(self, valid_nats: float) -> bool:
        """Take an evaluation's validation NLL; True when the plateau schedule lowered the rate."""
        if self.spec.name != "plateau":
            return False
        if valid_nats < self.best:
            self.best, self.bad = valid_nats, 0
            return False
        self.bad += 1
        if self.bad < self.p["patience"]:
            return False
        self.bad, lowered = 0, max(self.p["min"], self.factor * self.p["factor"])
        changed, self.factor = lowered < self.factor, lowered
        return changed

    def state_dict(self) -> dict:
        return {"factor": self.factor, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.factor, self.best, self.bad = float(state["factor"]), float(state["best"]), int(state["bad"])
