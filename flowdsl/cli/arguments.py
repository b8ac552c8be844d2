"""Argument types for the command line: every number is range-checked by the parser.

A bad value is one line from argparse (``flowdsl train: error: argument --lr: ...``), never a
traceback and never a silently wrong run.

Example:
    >>> positive_int("3"), finite_positive_float("1e-3"), seed("7")
    (3, 0.001, 7)
    >>> positive_int("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a positive integer, got '0'
"""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonnegative_int", "finite_float", "finite_positive_float", "nonnegative_float", "seed",
           "SEED_MAX"]

#: seeds must fit numpy's and torch's generators
SEED_MAX = 2**32 - 1


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0) if text.strip().lower().startswith(("0x", "0o", "0b")) else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (steps, batch sizes, sample counts)."""
    v = _int(text, "a positive integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    v = _int(text, "a non-negative integer")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """Any finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def finite_positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, clipping norms, budgets)."""
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, temperatures of zero)."""
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return v


def seed(text: str) -> int:
    """A seed in 0 .. 2**32 - 1."""
    v = _int(text, "an integer seed")
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be a seed in 0..{SEED_MAX}, got {text!r}")
    return v
