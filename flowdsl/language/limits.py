"""Resource limits a spec must respect before anything is allocated (checked by expansion and the checks).

Example:
    >>> Limits().max_layers, Limits(max_params=10).max_params
    (10000, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Resource limits a spec must respect before anything is allocated."""

    max_layers: int = 10_000
    max_params: int = 200_000_000
    max_input_size: int = 50_000_000
