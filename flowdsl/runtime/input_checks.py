"""Validation of what a user hands a compiled model: counts, batches, dtypes, values.

Every refusal is an :class:`~flowdsl.input_errors.InputError` (a FlowDSLError and a ValueError;
:class:`~flowdsl.input_errors.InputTypeError` is also a TypeError). The message names the model
(``flow 'f': ...``).

Decisions (documented in docs/reliability.md): floating input of another precision is cast to
the model's dtype (float64 data on a float32 model is evaluated in float32); complex input is
refused; a discrete model takes whole numbers in ``0..levels-1`` (integer or float dtype);
non-finite values are refused; an empty batch gives an empty result of the right shape.

The value checks (non-finite, whole, in range) read one boolean back from the device per call: on a
GPU that is a host synchronisation, and inside ``torch.compile`` a graph break. Like
``torch.distributions``' ``validate_args`` they can be switched off: ``set_value_checks(False)`` or
``with value_checks(False): ...`` (the benchmarks do, as the peer libraries validate nothing);
under ``torch.compile`` they are skipped. Shape, dtype and complex checks cost nothing and always run.

Example:
    >>> import torch
    >>> sample_count(3, "flow 'f'")
    3
    >>> sample_count(1.5, "flow 'f'")
    Traceback (most recent call last):
    flowdsl.input_errors.InputTypeError: flow 'f': error: the number of samples must be an integer, got 1.5
    >>> discrete_values(torch.tensor([[0, 3]]), 4, "flow 'f'").tolist()
    [[0, 3]]
    >>> discrete_values(torch.tensor([[0, 4]]), 4, "flow 'f'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    flowdsl.input_errors.InputError: flow 'f': error: inputs must be whole numbers in 0..3 (levels 4); 1 value(s) ...
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from flowdsl.input_errors import InputError, InputTypeError

__all__ = ["InputError", "InputTypeError", "MAX_SAMPLES", "sample_count", "as_tensor", "check_shape", "discrete_values",
           "finite_values", "to_dtype", "set_value_checks", "value_checks"]

_VALUE_CHECKS = [True]


def set_value_checks(enabled: bool) -> bool:
    """Turn the value checks on or off for this process; returns the previous setting."""
    previous = _VALUE_CHECKS[0]
    _VALUE_CHECKS[0] = bool(enabled)
    return previous


@contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """The value checks on or off inside a ``with`` block."""
    previous = set_value_checks(enabled)
    try:
        yield
    finally:
        set_value_checks(previous)


#: the most samples one call draws (a torch size must fit 32 bits; more is a typo, not a request)
MAX_SAMPLES = 2**31 - 1


def sample_count(n, where: str) -> int:
    """``n`` as a number of samples: an integer >= 0 (a bool, a float, None are refused)."""
    if isinstance(n, torch.Tensor) and n.dim() == 0 and not n.dtype.is_floating_point and n.dtype != torch.bool:
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise InputTypeError(f"the number of samples must be an integer, got {n!r}", where)
    if n < 0:
        raise InputError(f"the number of samples must be >= 0, got {n}", where)
    if n > MAX_SAMPLES:
        raise InputError(f"the number of samples must be at most {MAX_SAMPLES:,}, got {n:,}", where)
    return int(n)


def as_tensor(x, where: str, device=None) -> torch.Tensor:
    """``x`` as a real tensor (arrays, lists and numbers are converted); complex and non-numbers are refused."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputTypeError(f"the input must be a tensor or an array of numbers, got {type(x).__name__} "
                                 f"({err})", where) from None
    elif device is not None and x.device != torch.device(device):
        x = x.to(device)
    if x.is_complex():
        raise InputTypeError(f"the input must be real, got a complex tensor ({x.dtype})", where)
    if x.dtype == torch.bool:
        x = x.long()
    return x


def _looking() -> bool:
    """Whether values are checked: not when the checks are off, nor under ``torch.compile`` (the masks a
    check would reduce are then not computed at all)."""
    return _VALUE_CHECKS[0] and not torch.compiler.is_compiling()


def _any(mask: torch.Tensor) -> bool:
    """Whether any element is True; False when the value checks are off, under ``torch.compile`` and under
    ``torch.func.vmap``, whose batched values cannot be inspected."""
    if not _looking():
        return False
    try:
        return bool(mask.any())
    except RuntimeError:  # data-dependent control flow inside a functorch transform: the check is skipped
        return False


def _not_all(mask: torch.Tensor) -> bool:
    """Whether some element is False (one reduction); False whenever :func:`_any` would not look."""
    if not _looking():
        return False
    try:
        return not bool(mask.all())
    except RuntimeError:
        return False


def check_shape(x: torch.Tensor, shape: tuple[int, ...], where: str) -> None:
    """``x`` is ``[B, *shape]``."""
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise InputError(f"takes input of shape [B, {', '.join(map(str, shape))}], got {list(x.shape)}", where)


def finite_values(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x``, refused when any value is NaN or infinite (the count is in the message)."""
    if x.dtype.is_floating_point and x.numel() and _looking() and _not_all(torch.isfinite(x)):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"the input has {bad} non-finite value(s) (NaN or infinity)", where)
    return x


def discrete_values(x: torch.Tensor, levels: int, where: str) -> torch.Tensor:
    """``x`` as a LongTensor of whole numbers in ``0..levels-1`` (float dtypes allowed when whole)."""
    if not _looking():
        return x.long()
    if x.dtype.is_floating_point:
        finite_values(x, where)
        frac = x != x.round()
        if _any(frac):
            raise InputError(f"inputs must be whole numbers in 0..{levels - 1} (levels {levels}); "
                             f"{int(frac.sum())} value(s) are not, e.g. {x[frac].flatten()[0].item():g}", where)
    outside = (x < 0) | (x >= levels)
    if x.numel() and _any(outside):
        raise InputError(f"inputs must be whole numbers in 0..{levels - 1} (levels {levels}); "
                         f"{int(outside.sum())} value(s) outside, e.g. {x[outside].flatten()[0].item():g}", where)
    return x.long()


def to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in the model's floating dtype (a cast of another precision or of integers; a no-op otherwise)."""
    return x if x.dtype == dtype else x.to(dtype)
