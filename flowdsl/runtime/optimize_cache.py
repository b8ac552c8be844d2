"""Eval-time reuse: a value derived from parameters, recomputed only when one of them changed.

In evaluation and sampling (autograd off: ``torch.no_grad()``, ``torch.inference_mode()``) a layer's
derived weights (MADE's ``W * M``, the LU-assembled 1x1 convolution and its inverse) depend only on its
parameters and buffers. :class:`DerivedCache` keeps the last value with the identity, version counter,
storage, dtype and device of every tensor it was computed from: an optimizer step, ``load_state_dict``,
``.to()``, an in-place edit under ``no_grad`` all change one of them and so recompute it. With autograd on
the value is always recomputed (its graph is needed), and so it is under ``torch.compile`` (which
traces the computation; version counters and storage pointers would break its graph). Edits through
``param.data`` bypass the version counter: call :meth:`DerivedCache.clear` (or compile with
``FLOWDSL_NO_OPTIMIZE=1``) after them.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> cache, calls = DerivedCache(), []
    >>> def double():
    ...     calls.append(1)
    ...     return w * 2
    >>> with torch.no_grad():
    ...     a = cache.get((w,), double)
    ...     b = cache.get((w,), double)   # reused
    ...     _ = w.add_(1)                 # a new version: recomputed
    ...     c = cache.get((w,), double)
    >>> len(calls), a is b, c.tolist()
    (2, True, [4.0, 4.0])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["DerivedCache"]


def _fingerprint(tensors: Sequence[torch.Tensor], tag) -> tuple:
    return (tag, *((id(t), t._version, t.data_ptr(), t.dtype, t.device) for t in tensors))


class DerivedCache:
    """The last value of ``compute()`` while autograd is off and ``tensors`` are unchanged."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget the value (the next call recomputes it)."""
        self._key: tuple | None = None
        self._sources: tuple[torch.Tensor, ...] = ()  # held so that their ids are not reused
        self._value = None

    def get(self, tensors: Sequence[torch.Tensor], compute: Callable[[], torch.Tensor], tag=None,
            enabled: bool = True) -> torch.Tensor:
        """``compute()``, or the value kept from the last call with the same tensors (and ``tag``)."""
        if not enabled or torch.is_grad_enabled() or torch.compiler.is_compiling() \
                or any(t.is_inference() for t in tensors):
            return compute()  # autograd needs the graph; torch.compile traces the computation itself
        key = _fingerprint(tensors, tag)
        if key != self._key:
            self._value = compute()
            self._key, self._sources = key, tuple(tensors)
        return self._value
