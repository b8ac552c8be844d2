"""Jacobians by brute force: per-example autograd Jacobians, log|det|, sparsity patterns.

These are the measuring instruments of the property checks: slow but exact, for small
inputs (a Jacobian of a D-dimensional input costs D backward passes, batched when
autograd can vectorise them).

Example:
    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> brute_force_logdet(lambda v: (3 * v, None), x).tolist()   # log 9
    [2.1972245773362196]
    >>> jacobian_pattern(lambda v: v.flip(1), x).astype(int).tolist()
    [[0, 1], [1, 0]]
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "perturb_parameters", "per_example_jacobian", "brute_force_logdet", "jacobian_pattern", "check_sparsity",
    "first_output",
]


@torch.no_grad()
def perturb_parameters(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add Gaussian noise to every floating parameter, so zero-initialised layers are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dtype.is_floating_point:
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return module


def first_output(fn, x, context=None):
    """``fn(x)`` or ``fn(x, context)``; the first element when it returns a tuple."""
    out = fn(x, context) if context is not None else fn(x)
    return out[0] if isinstance(out, tuple) else out


def per_example_jacobian(fn, x: torch.Tensor, context=None) -> torch.Tensor:
    """``[B, D_out, D_in]``: the Jacobian of ``fn`` (first output) at each example, flattened."""
    jacs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ci = None if context is None else context[i : i + 1]

        def f(v, ci=ci, shape=xi.shape):
            return first_output(fn, v.reshape(shape), ci).reshape(-1)

        flat = xi.detach().reshape(-1)
        try:
            jac = torch.autograd.functional.jacobian(f, flat, vectorize=True)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            jac = torch.autograd.functional.jacobian(f, flat)  # ops that vmap does not support
        jacs.append(jac)
    return torch.stack(jacs)


def brute_force_logdet(fn, x: torch.Tensor, context=None) -> torch.Tensor:
    """``[B]``: log|det J| of ``fn`` at each example, from the full autograd Jacobian."""
    return torch.linalg.slogdet(per_example_jacobian(fn, x, context))[1]


def jacobian_pattern(fn, x: torch.Tensor, context=None, tol: float = 0.0) -> np.ndarray:
    """Boolean ``[D_out, D_in]``: entries whose magnitude exceeds ``tol`` at any example of ``x``."""
    jac = per_example_jacobian(fn, x, context)
    return (jac.abs() > tol).any(dim=0).cpu().numpy()


def check_sparsity(fn, x: torch.Tensor, allowed: np.ndarray, context=None, tol: float = 0.0) -> int:
    """Assert that the Jacobian is zero wherever ``allowed`` (the declared pattern) is False.

    Returns the number of forbidden entries checked. The message names the first leak
    (output i reads input j) and how many there are.
    """
    jac = per_example_jacobian(fn, x, context).abs().amax(dim=0).cpu().numpy()
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != jac.shape:
        raise AssertionError(f"the declared pattern is {allowed.shape[0]}x{allowed.shape[1]} but the Jacobian is "
                             f"{jac.shape[0]}x{jac.shape[1]}")
    leaks = np.argwhere((jac > tol) & ~allowed)
    if len(leaks):
        i, j = leaks[0]
        raise AssertionError(f"Jacobian entry ({i}, {j}) is {jac[i, j]:.3g} but the declared structure forbids it: "
                             f"output {i} reads input {j} ({len(leaks)} such entries)")
    return int((~allowed).sum())
