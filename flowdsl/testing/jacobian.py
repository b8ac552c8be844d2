"""Property checks for layers and compiled models: round trip, log-det, Jacobian sparsity.

Use them from tests (with Hypothesis drawing the inputs) or interactively; each check
raises ``AssertionError`` with a readable report and returns the measured errors.

Example:
    >>> import torch, flowdsl
    >>> torch.set_default_dtype(torch.float64)
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[4]\\n coupling affine(mask=half)\\n}\\n")
    >>> _ = perturb_parameters(flow, scale=0.3, seed=0)
    >>> report = check_bijection(flow, torch.randn(3, 4))
    >>> report["roundtrip"] < 1e-10 and report["logdet"] < 1e-8
    True
    >>> torch.set_default_dtype(torch.float32)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "perturb_parameters", "per_example_jacobian", "brute_force_logdet", "check_bijection", "check_sparsity",
    "jacobian_pattern",
]


@torch.no_grad()
def perturb_parameters(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add Gaussian noise to every floating parameter, so zero-initialised layers are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dtype.is_floating_point:
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return module


def _call(fn, x, context):
    out = fn(x, context) if context is not None else fn(x)
    return out[0] if isinstance(out, tuple) else out


def per_example_jacobian(fn, x: torch.Tensor, context=None) -> torch.Tensor:
    """``[B, D_out, D_in]``: the Jacobian of ``fn`` (first output) at each example, flattened."""
    jacs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ci = None if context is None else context[i : i + 1]

        def f(v, ci=ci):
            return _call(fn, v.reshape(xi.shape), ci).reshape(-1)

        jacs.append(torch.autograd.functional.jacobian(f, xi.reshape(-1)))
    return torch.stack(jacs)


def brute_force_logdet(fn, x: torch.Tensor, context=None) -> torch.Tensor:
    """``[B]``: log|det J| of ``fn`` at each example, from the full autograd Jacobian."""
    return torch.linalg.slogdet(per_example_jacobian(fn, x, context))[1]


def jacobian_pattern(fn, x: torch.Tensor, context=None, tol: float = 0.0) -> np.ndarray:
    """Boolean ``[D_out, D_in]``: entries nonzero at any example of ``x``."""
    jac = per_example_jacobian(fn, x, context)
    return (jac.abs() > tol).any(dim=0).cpu().numpy()


def check_sparsity(fn, x: torch.Tensor, allowed: np.ndarray, context=None) -> int:
    """Assert that the Jacobian is zero wherever ``allowed`` (the declared pattern) is False."""
    seen = jacobian_pattern(fn, x, context)
    leaks = np.argwhere(seen & ~allowed)
    if len(leaks):
        i, j = leaks[0]
        raise AssertionError(f"Jacobian entry ({i}, {j}) is nonzero but the declared structure forbids it "
                             f"({len(leaks)} such entries)")
    return 0


def check_bijection(module, x: torch.Tensor, context=None, roundtrip_tol: float = 1e-8,
                    logdet_tol: float = 1e-6) -> dict:
    """Round trip, log-det against the brute-force Jacobian, and inverse log-det = -forward log-det.

    ``module`` is a compiled flow or a layer: ``forward(x) -> (y, logdet)`` and an ``inverse``
    returning x (a compiled flow's) or ``(x, logdet)`` (a layer's).
    """
    y, logdet = module(x, context) if context is not None else module(x)
    inv = getattr(module, "inverse_and_logdet", None) or module.inverse
    out = inv(y, context) if context is not None else inv(y)
    x_back, inv_logdet = out if isinstance(out, tuple) else (out, None)
    report = {
        "roundtrip": (x_back - x).abs().max().item(),
        "logdet": (brute_force_logdet(module, x, context) - logdet).abs().max().item(),
        "inverse_logdet": 0.0 if inv_logdet is None else (inv_logdet + logdet).abs().max().item(),
    }
    problems = []
    if not report["roundtrip"] <= roundtrip_tol:
        problems.append(f"inverse(forward(x)) differs from x by {report['roundtrip']:.3g} (tolerance {roundtrip_tol})")
    if not report["logdet"] <= logdet_tol:
        problems.append(f"log-det differs from the brute-force Jacobian by {report['logdet']:.3g} "
                        f"(tolerance {logdet_tol})")
    if not report["inverse_logdet"] <= logdet_tol:
        problems.append(f"inverse log-det is not minus the forward log-det (off by {report['inverse_logdet']:.3g})")
    if problems:
        raise AssertionError("; ".join(problems) + f"\nfailing input: {x.tolist()}")
    return report
