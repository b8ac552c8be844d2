"""What a kind of model declares: :class:`ModelKind` and its ordered :class:`ModelCheck` s.

The declarations themselves (flow, autoregressive) are :data:`flowdsl.analysis.kinds.MODEL_KINDS`;
this module holds only the types, so that the IR builder can take a kind without importing the
checks.

Example:
    >>> check = ModelCheck("always fine", lambda model, limits: [])
    >>> check.needs_clean, check.run(None, None)
    (False, [])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ModelCheck", "ModelKind"]


@dataclass(frozen=True)
class ModelCheck:
    """A model-level check: ``run(model, limits) -> list[Diagnostic]``."""

    name: str
    run: Callable
    #: what the check proves, for the compile report ("coverage"); empty when it proves nothing reported
    proves: str = ""
    #: whether it needs a model without errors so far (it is skipped, with a note, otherwise)
    needs_clean: bool = False


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: its sink, sink rule, ordered checks, compiler and what the report says of it."""

    name: Literal["flow", "autoregressive"]
    sink: Literal["base", "output"]
    #: ``rule(header, shape, last_info) -> SinkInfo`` (SpecError on a bad sink); None: the base's own count
    sink_rule: Callable | None
    checks: tuple[ModelCheck, ...]
    #: ``"module:callable"`` taking ``(ir, unit)`` and returning the torch module
    compiler: str
    #: after a layer error, go on inferring past shape-preserving layers (to report every error)
    infer_past_errors: bool
    #: what every model of the kind is proved to have in the compile report, before the checks' own
    proved: tuple[str, ...] = ("shapes", "arguments", "invertibility")
