"""Property checks of bijections: round trip, log-det, inverse log-det, the declared Jacobian structure,
and, for conditional models, that the condition is read and trains.

:func:`check_bijection` takes a compiled flow or a single layer (``forward(x, context) ->
(y, logdet)``, ``inverse(y, context) -> (x, logdet)``). Given ``x`` it checks that input; without
it, Hypothesis draws inputs of the declared shape and levels (and contexts of any condition, for a
conditional flow: :func:`flowdsl.testing.inputs.contexts`; for a layer, the encoded condition it
reads: ``condition=ContextShape``) and a failure is shrunk to a minimal example. The log-det is the
Jacobian in ``x`` only, at the drawn context. Stochastic log-det estimators are made exact for the
check (:func:`flowdsl.exact_logdet`). Errors are relative: ``|a - b| / (1 + |b|)``.

:func:`check_structure` also draws contexts (the Jacobian pattern holds for every context);
:func:`check_context`: each layer that reads the condition changes its output when the context
changes, and one that does not (``reads=false``) does not; :func:`check_training`: a few optimiser
steps on ``-log_prob(x, context)`` raise the log-likelihood.

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

import torch

from flowdsl.testing.inputs import contexts, encoded
from flowdsl.testing.jacobian import (
    MAX_BRUTE_FORCE_DIM,
    _encode,
    _layer_label,
    _ref,
    brute_force_logdet,
    check_structure,
    declared_layers,
    describe_module,
    input_domain,
)
from flowdsl.testing.search import Mismatch, PropertyFailure, search
from flowdsl.testing.strategies import inputs, labels, one_hot

__all__ = ["check_bijection", "check_structure", "check_context", "check_training", "PropertyFailure",
           "default_tolerances", "describe_module", "input_domain", "random_context", "other_context",
           "MAX_BRUTE_FORCE_DIM", "declared_layers"]

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


def random_context(model, batch: int, generator=None, device=None):
    """A random context ``[batch, *model.context_shape]`` for a compiled model (None if unconditional): labels
    or whole numbers below the levels (LongTensor), Gaussian reals otherwise."""
    encoder = getattr(model, "condition", None)
    if encoder is None:
        return None
    shape = (int(batch), *encoder.shape)
    if encoder.integer:
        return torch.randint(0, encoder.levels, shape, generator=generator).to(device)
    return torch.randn(shape, generator=generator, dtype=_ref(model)[0]).to(device)


def other_context(model, context):
    """A context that differs from ``context`` in every example: the next label or level (mod its
    count), reals shifted by 1."""
    encoder = getattr(model, "condition", None)
    if encoder is not None and encoder.integer:
        return (context + 1) % encoder.levels
    return context + 1


def _layer_context(module, context_shape, batch, dtype, device):
    """What a single layer reads of an encoded condition ``context_shape``: the map, or flattened."""
    if getattr(module, "context_layout", "flat") == "map":
        return inputs(tuple(context_shape.shape), batch=batch, scale=2.0, dtype=dtype, device=device)
    return encoded(context_shape, batch=batch, dtype=dtype, device=device)


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


def _contexts(module, batch, classes, context_features, condition, dtype, device):
    if _is_flow(module) and getattr(module, "condition", None) is not None and not classes:
        return contexts(module, batch=batch, device=device)
    if condition is not None:
        return _layer_context(module, condition, batch, dtype, device)
    if classes:
        return labels(classes, batch=batch, device=device)
    if context_features:
        return one_hot(context_features, batch=batch, dtype=dtype, device=device)
    from hypothesis import strategies as st

    return st.none()


def check_bijection(module, x=None, context=None, roundtrip_tol: float | None = None, logdet_tol: float | None = None,
                    *, shape=None, levels=None, classes=None, context_features=None, condition=None,
                    examples: int = 20,
                    batch: int = 2, seed: int | None = None, scale: float = 3.0, extreme: bool = False,
                    brute_force: bool | None = None, domain=None, dtype=None) -> dict:
    """Round trip, log-det against the brute-force Jacobian, and inverse log-det = -forward log-det.

    Arguments:
        module: a compiled flow (``inverse_and_logdet``) or a layer (``inverse`` returning ``(x, logdet)``).
        x, context: check this input (and context); otherwise Hypothesis draws ``examples`` inputs.
        shape, levels: a layer's input shape (a flow knows its own); ``levels`` draws values in [0, levels).
        domain: draw values in this open interval (default: what a flow's first layer declares as its
            ``meta["domain"]``; reals in [-scale, scale] otherwise).
        classes / context_features: labels for a conditional flow / one-hot contexts for a layer (a
            conditional flow draws contexts of its own condition without them).
        condition: a layer's encoded condition (a :class:`~flowdsl.layers.facts.ContextShape`): draw what
            the layer reads of it (the map for a layer whose ``context_layout`` is ``"map"``, else flattened).
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
                         _contexts(module, batch, classes, features, condition, dtype, device))
    return search("bijection", lambda c: _bijection_errors(module, c[0], c[1], roundtrip_tol, logdet_tol, bf),
                  strategy, examples=examples, seed=seed, subject=subject)


# ----------------------------------------------------------------------------- the condition
def _context_errors(model, x, context, tol: float) -> dict:
    from flowdsl.runtime.conditions import context_for

    other = other_context(model, context)
    a, b = (_encode(model, c, x.shape[0], x.dtype) for c in (context, other))
    case = {"x": x, "context": context, "other context": other}
    problems, h, readers = [], x, 0
    with torch.no_grad():
        for i, (module, node) in enumerate(zip(model.layers, model.ir.layers), start=1):
            if hasattr(module, "split") and node.factored is not None:
                h = module.split(h)[0]
                continue
            y_a, y_b = module(h, context_for(module, a))[0], module(h, context_for(module, b))[0]
            moved = ((y_a - y_b).abs() / (1 + y_a.abs())).max().item() if y_a.numel() else 0.0
            if node.reads_condition:
                readers += 1
                if not moved > tol:
                    problems.append(f"{_layer_label(node, i)} reads the condition, but its output did not change "
                                    f"when the context changed")
            elif moved != 0.0:
                why = "says reads=false" if not node.reads else "does not read the condition"
                problems.append(f"{_layer_label(node, i)} {why}, but its output changed with the context "
                                f"(by {moved:.3g})")
            h = y_a
        if getattr(model, "_base_reads", False):
            readers += 1
            lp_a, lp_b = model.log_prob(x, context), model.log_prob(x, other)
            if not bool((lp_a != lp_b).any()):
                problems.append("the conditional base reads the condition, but log_prob did not change with it")
    if problems:
        raise Mismatch(problems, {"context": 1.0}, case)
    return {"context": 0.0, "readers": readers}


def check_context(model, x=None, context=None, *, examples: int = 5, batch: int = 2, seed: int | None = None,
                  tol: float = 1e-12) -> dict:
    """The condition of a compiled conditional flow is really read, and only where declared.

    For each layer, at the input that reaches it: a layer whose rule says it reads the condition
    changes its output (by more than ``tol``, relative) when the context changes in every example
    (:func:`other_context`); a layer that does not read it (``reads=false``, or unconditional by
    nature: actnorm, permutations, ...) gives exactly the same output. A conditional base changes
    ``log_prob``. Returns ``{"context": 0.0, "readers": n, "examples": k}``.
    """
    if getattr(model, "condition", None) is None:
        raise ValueError("check_context needs a compiled model with a condition")
    dtype, device = _ref(model)
    subject = describe_module(model)
    model = declared_layers(model)
    if x is not None:
        try:
            return {**_context_errors(model, x, context, tol), "examples": 1}
        except Mismatch as m:
            raise PropertyFailure("context", subject, m.problems, m.case, m.errors, 1) from None
    from hypothesis import strategies as st

    strategy = st.tuples(inputs(model.input_shape, model.levels, batch=batch, domain=input_domain(model), dtype=dtype,
                                device=device), contexts(model, batch=batch, device=device))
    return search("context", lambda c: _context_errors(model, c[0], c[1], tol), strategy, examples=examples,
                  seed=seed, subject=subject)


def check_training(model, x=None, context=None, *, steps: int = 10, lr: float = 1e-2, batch: int = 16,
                   seed: int = 0) -> dict:
    """A copy of ``model`` trained ``steps`` Adam steps on ``-log_prob(x, context)`` has a higher mean log_prob
    on that batch (log-dets exact, dequantization noise the same before and after).

    ``x`` and ``context`` default to a random batch (Gaussian inputs, or uniform in ``[0, levels)``;
    :func:`random_context`). Returns ``{"before": ..., "after": ..., "training": gain}``.
    """
    import copy

    from flowdsl.runtime.estimators import exact_logdet

    dtype, device = _ref(model)
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    if x is None:
        shape = (batch, *model.input_shape)
        levels = getattr(model, "levels", None)
        x = torch.rand(shape, generator=gen, dtype=dtype) * levels if levels else torch.randn(shape, generator=gen,
                                                                                             dtype=dtype)
        domain = input_domain(model)
        if domain is not None:
            u = torch.rand(shape, generator=gen, dtype=dtype).clamp(1e-3, 1 - 1e-3)
            x = domain[0] + (domain[1] - domain[0]) * u
        x = x.to(device)
        context = random_context(model, batch, gen, device) if context is None else context

    def mean_log_prob():
        torch.manual_seed(seed)  # the same dequantization noise (and estimator draws) at every evaluation
        return model.log_prob(x, context).mean()

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    with exact_logdet():
        with torch.no_grad():
            before = float(mean_log_prob())
        for _ in range(steps):
            opt.zero_grad()
            (-mean_log_prob()).backward()
            opt.step()
        with torch.no_grad():
            after = float(mean_log_prob())
    if not (math.isfinite(after) and after > before):
        raise PropertyFailure("training", describe_module(model), [
            f"{steps} Adam steps (lr {lr:g}) on -log_prob did not raise the mean log_prob of the batch: "
            f"{before:.6g} before, {after:.6g} after"], None, {"training": abs(after - before)}, 1)
    return {"before": before, "after": after, "training": after - before, "examples": 1}
