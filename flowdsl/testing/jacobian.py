"""Jacobians by brute force: per-example autograd Jacobians, log|det|, sparsity patterns, and
:func:`check_structure` (every layer of a compiled flow within its declared dependency, for every context).

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

from flowdsl.testing.inputs import contexts, inputs, labels
from flowdsl.testing.search import Mismatch, PropertyFailure, search

__all__ = [
    "perturb_parameters", "per_example_jacobian", "brute_force_logdet", "jacobian_pattern", "check_sparsity",
    "first_output", "check_structure", "declared_layers", "describe_module", "input_domain", "MAX_BRUTE_FORCE_DIM",
]

#: inputs with more numbers than this skip the brute-force log-det (D backward passes per example)
MAX_BRUTE_FORCE_DIM = 512


def _ref(module):
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype.is_floating_point:
            return t.dtype, t.device
    return torch.get_default_dtype(), None


def describe_module(module) -> str:
    name = getattr(module, "name", None)
    return f"{type(module).__name__} '{name}'" if isinstance(name, str) else type(module).__name__


def input_domain(module):
    """The open interval of input values a compiled model's first layer declares (``meta["domain"]``), or None."""
    ir = getattr(module, "ir", None)
    if ir is None or getattr(module, "levels", None) is not None:
        return None
    first = ir.layers[0].info if ir.layers else None
    return first.domain if first is not None else None


def _encode(model, context, batch: int, dtype):
    """The encoded condition a compiled model hands its layers (None when it has no condition)."""
    encoder = getattr(model, "condition", None)
    if encoder is None or context is None:
        return None
    return encoder(context, batch, dtype)




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


# ----------------------------------------------------------------------------- structure
def _layer_label(node, i: int) -> str:
    pos = node.pos
    where = f" (line {pos.line}:{pos.column})" if pos is not None and pos.line else ""
    return f"layer {i} {node.layer.describe()}{where}"


def declared_layers(model):
    """``model`` itself, or, when the compiler optimised it (permutations folded into the next layer, whose
    own Jacobian then differs from the one declared), the unoptimised build of its spec with the same
    weights: the layers exactly as declared. The optimised model equals it (tests/test_optimisation_passes.py)."""
    if not getattr(model, "optimized", False) or not getattr(model, "spec", {}).get("sources"):
        return model
    from flowdsl.analysis.analyze import analyze_unit
    from flowdsl.language.loader import load_source
    from flowdsl.runtime.compiler import compile_model

    spec = model.spec
    unit = load_source(spec["sources"][spec["file"]], spec["file"], files=spec["sources"])
    plain = compile_model(analyze_unit(unit).model(spec["model"]), unit, optimize=False)
    dtype, device = _ref(model)
    plain.load_state_dict(model.state_dict())
    return plain.to(device=device, dtype=dtype).train(model.training)


def _structure_errors(model, x, context, tol: float) -> dict:
    from flowdsl.runtime.conditions import context_for

    if context is not None and getattr(model, "condition", None) is None:  # labels (the old protocol, no encoder)
        ctx = torch.nn.functional.one_hot(context, model.classes).to(x.dtype)
    else:
        ctx = _encode(model, context, x.shape[0], x.dtype)
    h = x
    checked = 0
    for i, (module, node) in enumerate(zip(model.layers, model.ir.layers), start=1):
        if hasattr(module, "split") and node.factored is not None:
            h = module.split(h)[0]
            continue
        c = context_for(module, ctx) if getattr(model, "condition", None) is not None else ctx
        dep = node.dependency
        if dep is not None and h[0].numel() <= MAX_BRUTE_FORCE_DIM:
            jac = per_example_jacobian(lambda v, c=None, m=module: m(v, c)[0], h, c).detach().abs()
            jac = jac.amax(dim=0).cpu().numpy()
            allowed = dep.matrix()
            leaks = np.argwhere((jac > tol * max(1.0, float(jac.max()))) & ~allowed)
            if len(leaks):
                a, b = leaks[0]
                raise Mismatch([f"{_layer_label(node, i)}: output {a} depends on input {b} (dy/dx = "
                                f"{jac[a, b]:.3g}), which its declared {dep.kind} structure forbids "
                                f"({len(leaks)} such entries)"], {"structure": float(jac[a, b])},
                               {"x": x} if context is None else {"x": x, "context": context})
            checked += 1
        with torch.no_grad():
            h = module(h, c)[0]
    return {"structure": 0.0, "layers": checked}


def _model_contexts(model, batch, device):
    from hypothesis import strategies as st

    if getattr(model, "condition", None) is not None:
        return contexts(model, batch=batch, device=device)
    return labels(model.classes, batch=batch, device=device) if getattr(model, "classes", 0) else st.none()


def check_structure(model, x=None, context=None, *, examples: int = 10, batch: int = 2, seed: int | None = None,
                    tol: float = 1e-12) -> dict:
    """Every layer of a compiled flow honours the dependency structure its rule declares, for every context.

    The Jacobian of each layer (in its input, at the input that reaches it and the drawn context),
    is zero wherever the declared :class:`~flowdsl.layers.structure.Dependency` forbids a dependency
    (up to ``tol`` relative to its largest entry). Layers whose input has more than
    :data:`MAX_BRUTE_FORCE_DIM` numbers are skipped.
    """
    dtype, device = _ref(model)
    subject = describe_module(model)
    model = declared_layers(model)
    if x is not None:
        try:
            return {**_structure_errors(model, x, context, tol), "examples": 1}
        except Mismatch as m:
            raise PropertyFailure("structure", subject, m.problems, m.case, m.errors, 1) from None
    from hypothesis import strategies as st

    strategy = st.tuples(inputs(model.input_shape, model.levels, batch=batch, domain=input_domain(model), dtype=dtype,
                                device=device), _model_contexts(model, batch, device))
    return search("structure", lambda c: _structure_errors(model, c[0], c[1], tol), strategy, examples=examples,
                  seed=seed, subject=subject)
