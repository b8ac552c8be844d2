"""The optimisations' switch: on by default, off with ``FLOWDSL_NO_OPTIMIZE=1`` or ``optimize=False``.

A caller that throws the log-dets away (sampling) says so with :func:`discarding_logdets`: within it,
layers that honour it (residual blocks, couplings, autoregressive layers) skip computing them and
return zeros.

The passes and runtime shortcuts it governs are listed in docs/optimisations.md; each keeps the
model's outputs and state-dict keys. Runtime shortcuts are module attributes named in
:data:`RUNTIME_SWITCHES`: a module reads the environment when built, and
``compile_flow(..., optimize=...)`` sets them on every module of the flow.

Example:
    >>> optimizations_enabled(False), optimizations_enabled(True)
    (False, True)
    >>> "cache_weights" in RUNTIME_SWITCHES
    True
    >>> with discarding_logdets(optimize=True):
    ...     inside = logdets_discarded()
    >>> inside, logdets_discarded()
    (True, False)
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch

__all__ = ["optimizations_enabled", "RUNTIME_SWITCHES", "set_runtime_switches", "discarding_logdets",
           "logdets_discarded", "fusing"]

# module attributes that turn a runtime optimisation on
RUNTIME_SWITCHES = ("cache_weights", "subset_terms", "direct_calls")


def optimizations_enabled(optimize: bool | None = None) -> bool:
    """``optimize`` if given, else on unless the environment sets ``FLOWDSL_NO_OPTIMIZE=1``."""
    if optimize is not None:
        return bool(optimize)
    return os.environ.get("FLOWDSL_NO_OPTIMIZE", "").strip().lower() not in ("1", "true", "yes")


def set_runtime_switches(modules, enabled: bool) -> None:
    """Set every runtime switch found on ``modules`` (an iterable of ``nn.Module``) and their children."""
    for top in modules:
        for module in top.modules():
            for switch in RUNTIME_SWITCHES:
                if hasattr(module, switch):
                    setattr(module, switch, enabled)


_discarding = threading.local()


@contextmanager
def discarding_logdets(optimize: bool | None = None):
    """Within the block the caller discards every log-det: layers may return zeros instead.

    A no-op when optimisations are off (``optimize=False`` or ``FLOWDSL_NO_OPTIMIZE=1``).
    """
    before = getattr(_discarding, "on", False)
    _discarding.on = before or optimizations_enabled(optimize)
    try:
        yield
    finally:
        _discarding.on = before


def logdets_discarded() -> bool:
    """Whether the current thread is inside :func:`discarding_logdets` (with optimisations on)."""
    return getattr(_discarding, "on", False)


def fusing(actnorm) -> bool:
    """Whether a fused actnorm + invconv1x1 pair (:mod:`flowdsl.runtime.optimize_fusion`) runs fused now: autograd
    off, not compiling, and the actnorm past its data-dependent initialisation (in evaluation mode, or a
    training-mode actnorm that has seen its first batch). Both layers ask this same question of the same actnorm,
    so they always agree."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    return not actnorm.training or bool(getattr(actnorm, "_ready", False))
