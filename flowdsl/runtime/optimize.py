"""The optimisations' switch: on by default, off with ``FLOWDSL_NO_OPTIMIZE=1`` or ``optimize=False``.

The passes and runtime shortcuts it governs are listed in docs/optimisations.md; each keeps the
model's outputs and state-dict keys. Runtime shortcuts are module attributes named in
:data:`RUNTIME_SWITCHES`: a module reads the environment when built, and
``compile_flow(..., optimize=...)`` sets them on every module of the flow.

Example:
    >>> optimizations_enabled(False), optimizations_enabled(True)
    (False, True)
    >>> "cache_weights" in RUNTIME_SWITCHES
    True
"""

from __future__ import annotations

import os

__all__ = ["optimizations_enabled", "RUNTIME_SWITCHES", "set_runtime_switches"]

# module attributes that turn a runtime optimisation on
RUNTIME_SWITCHES = ("cache_weights", "subset_terms")


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
