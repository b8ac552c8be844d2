"""torch.compile as a mode of a compiled model: its tensor paths compiled once, for every batch size.

``compile_file(path, torch_compile=True)`` (or ``use_torch_compile(model)``) compiles, in place:

- a flow's ``_forward`` and ``_inverse``: every entry point (``log_prob``, ``forward``, ``inverse``,
  ``inverse_and_logdet``, ``sample``, the training step) goes through one of the two, after the input
  checks, which stay eager (they raise a user's error with the argument's name; under the compiler they
  would be graph breaks);
- an autoregressive model's ``_params``: the density pass of ``log_prob``, ``conditionals`` and the
  training step, and each step of the naive sampling loop. The cached stepping loop stays eager: it is
  D small steps whose cost is Python's, and a compiled version would be one graph per position.

``dynamic=True`` (the default) compiles with a symbolic batch size, so a new batch size does not
recompile (``tests/test_torch_compile.py`` checks it). 64 of the 75 bundled models compile into one
graph, without a break (``python -m benchmarks.compiled --ar``). The residual flows (power iteration
to a tolerance, Russian-roulette lengths, ``autograd.grad`` inside the forward), Sylvester (Björck
iteration to a tolerance) and FFJORD (adaptive ODE steps) are adaptive by design and run compiled in
pieces; NADE's blocked density pass runs eager on purpose (compiled, its block loop unrolls).

Example:
    >>> import torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n coupling affine(mask=half)\\n}\\n")
    >>> flow = use_torch_compile(flow, backend="eager")
    >>> flow.torch_compiled
    'default'
    >>> flow.log_prob(torch.randn(3, 2)).shape
    torch.Size([3])
"""

from __future__ import annotations

import types
from typing import Any

import torch

__all__ = ["MODES", "use_torch_compile", "compiled_paths"]

#: torch.compile's modes (``torch_compile=True`` is "default")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compiled_paths(model) -> tuple[str, ...]:
    """The methods :func:`use_torch_compile` compiles on this model."""
    from flowdsl.runtime.autoregressive import CompiledAR
    from flowdsl.runtime.flow import CompiledFlow

    if isinstance(model, CompiledFlow):
        return ("_forward", "_inverse")
    if isinstance(model, CompiledAR):
        return ("_params",)
    raise TypeError(f"torch_compile: expected a model compiled by flowdsl, got {type(model).__name__}")


def use_torch_compile(model, mode: str | bool = True, *, backend: Any = "inductor", dynamic: bool | None = True):
    """Compile ``model``'s tensor paths with ``torch.compile`` (in place; returns the model).

    ``mode``: True or one of :data:`MODES`; ``backend`` and ``dynamic`` go to ``torch.compile``
    (``backend="eager"`` only traces: graph breaks without code generation). Calling it again
    recompiles from the eager methods.
    """
    if mode is True:
        mode = "default"
    if mode not in MODES:
        raise ValueError(f"torch_compile must be True or one of {', '.join(MODES)}, got {mode!r}")
    options = {"backend": backend, "dynamic": dynamic}
    if mode != "default":
        options["mode"] = mode
    for name in compiled_paths(model):
        # the class's function compiled, bound to the model: a deep copy of the model rebinds it to the copy
        compiled = torch.compile(getattr(type(model), name), **options)
        object.__setattr__(model, name, types.MethodType(compiled, model))
    object.__setattr__(model, "torch_compiled", mode)
    return model
