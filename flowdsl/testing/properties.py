"""Property checks of bijections: round trip, log-det, inverse log-det, and the declared Jacobian structure.

:func:`check_bijection` takes a compiled flow or a single layer (``forward(x, context) ->
(y, logdet)``, ``inverse(y, context) -> (x, logdet)``). Given ``x`` it checks that input; without
it, Hypothesis draws inputs of the declared shape and levels (and labels, for a conditional
flow) and a failure is shrunk to a minimal example. Stochastic log-det estimators are made
exact for the check (:func:`flowdsl.exact_logdet`). Errors are relative: ``|a - b| / (1 + |b|)``.

Example:
    >>> import torch
    >>> from flowdsl.runtime.base import Bijection
    >>> class OffByOne(Bijection):
    ...     def forward(self, x, context=None):
    ...         return 2 * x, x.new_full((x.shape[0],), x.shape[1] * 0.6931471805599453)
    ...     def inverse(self, y, context=None):
    ...         return y / 2 + 1, y.new_full((y.shape[0],), -y.shape[1] * 0.6931471805599453)
    >>> try:
    ...     check_bijection(OffByOne(), shape=(2,), dtype=torch.float64)
    ... except PropertyFailure as err:
    ...     print(err.problems[0])
    inverse(forward(x)) differs from x by 1 (relative to 1 + |x|; tolerance 1e-08)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowdsl.testing.jacobian import brute_force_logdet, per_example_jacobian
from flowdsl.testing.search import Mismatch, PropertyFailure, search
from flowdsl.testing.strategies import inputs, labels, one_hot

__all__ = ["check_bijection", "check_structure", "PropertyFailure", "default_tolerances", "describe_module",
           "input_domain", "MAX_BRUTE_FORCE_DIM"]

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


def default_tolerances(module, dtype) -> tuple[float, float]:
    """``(roundtrip, logdet)`` tolerances: by dtype, loosened by what the model's layers declare.

    A layer states its float64 accuracy in its IR facts (``LayerInfo.roundtrip_tol`` /
    ``logdet_tol``: an iterative inverse, an ODE solver).
    """
    rt, ld = (1e-8, 1e-6) if dtype == torch.float64 else (1e-4, 1e-3)
    ir = getattr(module, "ir", None)
    if ir is None or dtype != torch.float64:
        return rt, ld
    for node in ir.layers:
        if node.info is not None:
            rt, ld = max(rt, node.info.roundtrip_tol), max(ld, node.info.logdet_tol)
    return rt, ld


def _rel(a, b) -> float:
    return ((a - b).abs() / (1 + b.abs())).max().item() if a.numel() else 0.0


def _is_flow(module) -> bool:
    return hasattr(module, "inverse_and_logdet") and hasattr(module, "input_shape")


def _bijection_errors(module, x, context, roundtrip_tol, logdet_tol, brute_force: bool) -> dict:
    from flowdsl.runtime.estimators import exact_logdet

    flow = _is_flow(module)
    case = {"x": x} if context is None else {"x": x, "context": context}
    with exact_logdet():
        y, logdet = module(x, context) if context is not None else module(x)
        inv = module.inverse_and_logdet if flow else module.inverse
        out = inv(y, context) if context is not None else inv(y)
        x_back, inv_logdet = out if isinstance(out, tuple) else (out, None)
        bf = brute_force_logdet(module, x, context).detach() if brute_force else None
    problems = []
    for what, t in (("forward(x)", y), ("the forward log-det", logdet), ("inverse(forward(x))", x_back)):
        if not torch.isfinite(t).all():
            problems.append(f"{what} is not finite")
    if logdet.shape != (x.shape[0],):
        problems.append(f"the log-det has shape {list(logdet.shape)}, not [batch] = [{x.shape[0]}]")
    if problems:
        raise Mismatch(problems, {"roundtrip": math.inf}, case)
    errors = {
        "roundtrip": _rel(x_back.detach(), x),
        "logdet": None if bf is None else _rel(logdet.detach(), bf),
        "inverse_logdet": None if inv_logdet is None else _rel(-inv_logdet.detach(), logdet.detach()),
    }
    if not errors["roundtrip"] <= roundtrip_tol:
        problems.append(f"inverse(forward(x)) differs from x by {errors['roundtrip']:.3g} "
                        f"(relative to 1 + |x|; tolerance {roundtrip_tol:g})")
    if errors["logdet"] is not None and not errors["logdet"] <= logdet_tol:
        i = int(((logdet.detach() - bf).abs()).argmax())
        problems.append(f"the log-det differs from the brute-force log|det J| by {errors['logdet']:.3g} "
                        f"(tolerance {logdet_tol:g}): {logdet[i].item():.6g} instead of {bf[i].item():.6g} "
                        f"at example {i}")
    if errors["inverse_logdet"] is not None and not errors["inverse_logdet"] <= logdet_tol:
        problems.append(f"the inverse log-det is not minus the forward log-det (off by "
                        f"{errors['inverse_logdet']:.3g}; tolerance {logdet_tol:g})")
    if problems:
        raise Mismatch(problems, errors, case)
    return errors


def input_domain(module):
    """The open interval of input values a compiled model's first layer declares (``meta["domain"]``), or None."""
    ir = getattr(module, "ir", None)
    if ir is None or getattr(module, "levels", None) is not None:
        return None
    first = ir.layers[0].info if ir.layers else None
    return first.domain if first is not None else None


def _setting(module, shape, levels, classes, context_features):
    if _is_flow(module):
        shape = tuple(module.input_shape) if shape is None else tuple(shape)
        levels = getattr(module, "levels", None) if levels is None else levels
        classes = getattr(module, "classes", 0) if classes is None else classes
        return shape, levels, classes, 0
    shape = shape if shape is not None else getattr(module, "in_shape", None)
    if shape is None:
        raise ValueError("check_bijection needs the input shape of a layer: pass shape=(...) or x")
    return tuple(shape), levels, 0, context_features or 0


def _contexts(batch, classes, context_features, dtype, device):
    if classes:
        return labels(classes, batch=batch, device=device)
    if context_features:
        return one_hot(context_features, batch=batch, dtype=dtype, device=device)
    from hypothesis import strategies as st

    return st.none()


def check_bijection(module, x=None, context=None, roundtrip_tol: float | None = None, logdet_tol: float | None = None,
                    *, shape=None, levels=None, classes=None, context_features=None, examples: int = 20,
                    batch: int = 2, seed: int | None = None, scale: float = 3.0, extreme: bool = False,
                    brute_force: bool | None = None, domain=None, dtype=None) -> dict:
    """Round trip, log-det against the brute-force Jacobian, and inverse log-det = -forward log-det.

    Arguments:
        module: a compiled flow (``inverse_and_logdet``) or a layer (``inverse`` returning ``(x, logdet)``).
        x, context: check this input (and context); otherwise Hypothesis draws ``examples`` inputs.
        shape, levels: a layer's input shape (a flow knows its own); ``levels`` draws values in [0, levels).
        domain: draw values in this open interval (default: what a flow's first layer declares as its
            ``meta["domain"]``; reals in [-scale, scale] otherwise).
        classes / context_features: labels for a conditional flow / one-hot contexts for a layer.
        brute_force: compare with the autograd Jacobian (default: when the input has at most
            :data:`MAX_BRUTE_FORCE_DIM` numbers).
        dtype: the dtype of drawn inputs (default: the module's).

    Returns the worst relative errors (``roundtrip``, ``logdet``, ``inverse_logdet``) and ``examples``.
    Raises :class:`PropertyFailure` (an AssertionError) with the minimal failing input.
    """
    ref_dtype, device = _ref(module)
    dtype = dtype or (x.dtype if x is not None else ref_dtype)
    rt_default, ld_default = default_tolerances(module, dtype)
    roundtrip_tol = rt_default if roundtrip_tol is None else roundtrip_tol
    logdet_tol = ld_default if logdet_tol is None else logdet_tol
    subject = describe_module(module)
    if x is not None:
        bf = brute_force if brute_force is not None else x[0].numel() <= MAX_BRUTE_FORCE_DIM
        try:
            errors = _bijection_errors(module, x, context, roundtrip_tol, logdet_tol, bf)
        except Mismatch as m:
            raise PropertyFailure("bijection", subject, m.problems, m.case, m.errors, 1) from None
        return {**errors, "examples": 1}
    shape, levels, classes, features = _setting(module, shape, levels, classes, context_features)
    bf = brute_force if brute_force is not None else math.prod(shape) <= MAX_BRUTE_FORCE_DIM
    from hypothesis import strategies as st

    domain = domain if domain is not None else input_domain(module)
    strategy = st.tuples(inputs(shape, levels, batch=batch, scale=scale, extreme=extreme, domain=domain, dtype=dtype,
                                device=device),
                         _contexts(batch, classes, features, dtype, device))
    return search("bijection", lambda c: _bijection_errors(module, c[0], c[1], roundtrip_tol, logdet_tol, bf),
                  strategy, examples=examples, seed=seed, subject=subject)


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


def _structure_errors(model, x, labels_, tol: float) -> dict:
    ctx = None
    if labels_ is not None:
        ctx = torch.nn.functional.one_hot(labels_, model.classes).to(x.dtype)
    h = x
    checked = 0
    for i, (module, node) in enumerate(zip(model.layers, model.ir.layers), start=1):
        if hasattr(module, "split") and node.factored is not None:
            h = module.split(h)[0]
            continue
        dep = node.dependency
        if dep is not None and h[0].numel() <= MAX_BRUTE_FORCE_DIM:
            jac = per_example_jacobian(lambda v, c=None, m=module: m(v, c)[0], h, ctx).detach().abs()
            jac = jac.amax(dim=0).cpu().numpy()
            allowed = dep.matrix()
            leaks = np.argwhere((jac > tol * max(1.0, float(jac.max()))) & ~allowed)
            if len(leaks):
                a, b = leaks[0]
                raise Mismatch([f"{_layer_label(node, i)}: output {a} depends on input {b} (dy/dx = "
                                f"{jac[a, b]:.3g}), which its declared {dep.kind} structure forbids "
                                f"({len(leaks)} such entries)"], {"structure": float(jac[a, b])},
                               {"x": x} if labels_ is None else {"x": x, "context": labels_})
            checked += 1
        with torch.no_grad():
            h = module(h, ctx)[0]
    return {"structure": 0.0, "layers": checked}


def check_structure(model, x=None, context=None, *, examples: int = 10, batch: int = 2, seed: int | None = None,
                    tol: float = 1e-12) -> dict:
    """Every layer of a compiled flow honours the dependency structure its rule declares.

    The Jacobian of each layer, at the input that reaches it, is zero wherever the declared
    :class:`~flowdsl.layers.structure.Dependency` forbids a dependency (up to ``tol`` relative to its
    largest entry). Layers whose input has more than :data:`MAX_BRUTE_FORCE_DIM` numbers are skipped.
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
                                device=device),
                         labels(model.classes, batch=batch, device=device) if model.classes else st.none())
    return search("structure", lambda c: _structure_errors(model, c[0], c[1], tol), strategy, examples=examples,
                  seed=seed, subject=subject)
