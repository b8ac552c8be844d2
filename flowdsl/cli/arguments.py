"""Argument types for the command line: every number is range-checked by the parser.

A bad value is one line from argparse (``flowdsl train: error: argument --lr: ...``), never a
traceback and never a silently wrong run.

Example:
    >>> positive_int("3"), finite_positive_float("1e-3"), seed("7")
    (3, 0.001, 7)
    >>> positive_int("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a positive integer, got '0'
    >>> device("cpu"), bounded_int(1, 10)("10")
    ('cpu', 10)
    >>> output_file("/no/such/folder/x.png")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: the folder '/no/such/folder' does not exist
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

__all__ = ["positive_int", "nonnegative_int", "finite_float", "finite_positive_float", "nonnegative_float", "seed",
           "SEED_MAX", "output_file", "device", "bounded_int", "context_refusals"]

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


def bounded_int(low: int, high: int):
    """A type accepting integers in ``low .. high`` (sample counts, steps: bounded so that a typo cannot
    ask for terabytes)."""

    def parse(text: str) -> int:
        v = _int(text, f"an integer in {low}..{high}")
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in {low}..{high}, got {text!r}")
        return v

    parse.__name__ = "bounded_int"
    return parse


def output_file(text: str) -> str:
    """A file to write: its folder exists and it is not itself a folder."""
    if not text:
        raise argparse.ArgumentTypeError("must be a file name, got ''")
    folder = os.path.dirname(text) or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder '{folder}' does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a folder, not a file")
    return text


def device(text: str) -> str:
    """A torch device that exists here: ``cpu``, ``cuda``/``cuda:N`` (when CUDA is available), ``mps``."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a device such as cpu, cuda or cuda:0, got {text!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"CUDA is not available on this machine (got {text!r}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"there are {torch.cuda.device_count()} CUDA device(s), got {text!r}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"MPS is not available on this machine (got {text!r}); use cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu, cuda or cuda:N")
    return text


def context_refusals(run):
    """``run`` (a command) with every refusal about a condition's values or a ``--context``/``--label``
    argument (:class:`~flowdsl.training.dataset.ContextError`) printed as its one line, exit status 2
    (the status of a bad argument); other errors pass through to ``flowdsl``'s handler."""

    @functools.wraps(run)
    def guarded(args) -> int:
        from flowdsl.errors import render_all
        from flowdsl.training.dataset import ContextError

        try:
            return run(args)
        except ContextError as err:
            print(render_all(err.diagnostics, err.sources), file=sys.stderr)
            return 2

    return guarded
