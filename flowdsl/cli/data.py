"""The ``flowdsl data`` command (placeholder until it lands)."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Register nothing yet."""
