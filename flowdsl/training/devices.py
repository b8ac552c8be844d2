"""The device a run asks for, checked: a bad name or a missing GPU is one line, not a torch error.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("nonsense")
    Traceback (most recent call last):
    flowdsl.errors.FlowDSLError: device: error: unknown device 'nonsense'
        hint: use cpu, cuda or cuda:N
"""

from __future__ import annotations

import torch

from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["resolve_device"]


def _error(message: str, hint: str | None = None) -> FlowDSLError:
    return FlowDSLError([Diagnostic(Pos("device"), "error", message, hint)])


def resolve_device(name=None) -> torch.device:
    """``torch.device(name)`` when this machine has it (None: cuda when available, else cpu)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(name, torch.device):
        dev = name
    else:
        try:
            dev = torch.device(str(name))
        except (RuntimeError, ValueError):
            raise _error(f"unknown device '{name}'", "use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _error(f"device '{name}': CUDA is not available on this machine", "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _error(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise _error(f"device '{name}' is not available on this machine", "use cpu, cuda or cuda:N")
