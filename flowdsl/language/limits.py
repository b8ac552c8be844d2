"""Resource limits a spec must respect before anything is allocated (checked by expansion and the checks).

Every limit is a whole number (a bool, a fraction, a string, NaN or infinity is refused when the
limits are made: a NaN compared with anything is False and would switch the limit off); 0 or a
negative limit refuses everything it bounds. Sizes
are computed from the declared shapes *before* the structure they bound is built, and a spec
over a limit gets a positioned error naming the limit and the flag that raises it
(:data:`FLAGS`).

Example:
    >>> Limits().max_layers, Limits(max_params=10).max_params
    (10000, 10)
    >>> Limits(max_params=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: Limits.max_params must be a whole number, got nan
    >>> Limits().flag("max_analysis_bytes")
    '--max-analysis-bytes'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["Limits", "FLAGS"]

#: the command-line flag that raises each limit
FLAGS = {
    "max_layers": "--max-layers",
    "max_params": "--max-params",
    "max_input_size": "--max-input-size",
    "max_activation_size": "--max-activation-size",
    "max_analysis_bytes": "--max-analysis-bytes",
    "max_texture_pixels": "--max-texture-pixels",
}


@dataclass(frozen=True)
class Limits:
    """Resource limits a spec must respect before anything is allocated."""

    #: layers of a model after expansion
    max_layers: int = 10_000
    #: parameters of a model (each layer's are computed from the shapes before its structure is built)
    max_params: int = 200_000_000
    #: elements of one example of the model's input
    max_input_size: int = 50_000_000
    #: elements of one example of the largest tensor a forward pass makes (a layer's output, a net's hidden
    #: activations): 2**28 float32 elements are 1 GiB per example
    max_activation_size: int = 2**28
    #: bytes the checker's dense analyses may allocate (the causality check's dependency sets, MADE masks,
    #: a permutation's index tables)
    max_analysis_bytes: int = 2**30
    #: pixels (width x height) of a texture source image, checked from its header before decoding
    max_texture_pixels: int = 2**20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                object.__setattr__(self, f.name, int(value))
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Limits.{f.name} must be a whole number, got {value!r}")

    def flag(self, name: str) -> str:
        """The command-line flag that raises limit ``name``."""
        return FLAGS[name]

    def refusal(self, name: str) -> str:
        """``(limit N, raise it with --flag)``: the end of a message refusing something over limit ``name``."""
        return f"(limit {getattr(self, name):,}; raise it with {FLAGS[name]})"
