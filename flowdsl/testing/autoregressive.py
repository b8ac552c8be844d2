"""Property checks of autoregressive models: causality, completeness, the context, normalisation.

Works on any model with the autoregressive API: ``input_shape``, ``levels``, ``order``
(flattened positions in generation order), ``conditionals(x, context) -> [B, N, P]``,
``log_prob(x, context) -> [B]`` and ``sample(n, context)``. What else the check needs is declared,
not probed: an :class:`ARModelFacts` (the condition's shape and levels, configurations, the mask in
use, the IR whose proved dependency sets completeness is checked against,
:func:`flowdsl.analysis.causality.dependency_sets`), read off a compiled model
(:class:`~flowdsl.runtime.autoregressive.CompiledAR`) or passed as ``facts=`` (default for another
model: unconditional, one configuration, no IR). Contexts are drawn for every condition
(:func:`flowdsl.testing.inputs.contexts`: labels, whole numbers, reals); a condition is not a
position, so nothing below ever counts reading it (all of it, its future included) as a dependency.

- **causality**: changing the input at position k never changes the conditional of a position
  generated no later than k, for drawn inputs and contexts (Hypothesis draws x, k, the new value
  and the context; a failure shrinks);
- **jacobian**: the causality engine's proof, checked whole: the Jacobian of every conditional with
  respect to the encoded input (or, after an embedding, to each position's lookup) is zero outside the
  proved dependency set and the earlier positions, for drawn contexts (compiled models of at most
  :data:`MAX_JACOBIAN_POSITIONS` positions);
- **completeness**: each conditional reacts to every position it is declared to read (the checker's
  sets when the model has an IR, or every earlier position with ``complete=True``);
- **context**: where a layer is declared to read the condition, changing the context changes every
  position's conditional;
- **normalisation**: on a tiny configuration, the probabilities of all ``levels ** N`` inputs sum to 1
  for every context (every label or discrete context up to :data:`MAX_CONTEXTS`, else drawn ones);
- **sampling**: ``sample`` returns integers in range, of the input's shape; a compiled model's cached
  generation draws the naive loop's samples (same random stream) for the same contexts.

Call it on a model in evaluation mode (``model.eval()``).

Example:
    >>> import flowdsl
    >>> model = flowdsl.compile_source("autoregressive m {\\n input x: vector[3] levels 2\\n"
    ...                                " condition c: vector[2]\\n made([4], masks=2)\\n"
    ...                                " output bernoulli\\n}\\n", filename="m.ar").double().eval()
    >>> facts = ARModelFacts.of(model)
    >>> facts.configurations, facts.context_shape, facts.reads_condition
    (2, (2,), True)
    >>> report = check_autoregressive(model, examples=2, seed=0)
    >>> report["causality"], report["jacobian"], report["context"]
    (0.0, 0.0, 0)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from hypothesis import strategies as st

from flowdsl.testing.ar_contexts import (
    MAX_CONTEXTS,
    ARModelFacts,
    batched,
    conditionals,
    context_reach,
    context_strategy,
    draw,
    fixed_contexts,
    moved_positions,
    random_inputs,
    twin,
)
from flowdsl.testing.ar_jacobian import MAX_JACOBIAN_POSITIONS, jacobian_applies, jacobian_case
from flowdsl.testing.inputs import inputs
from flowdsl.testing.search import Mismatch, PropertyFailure, format_case, search

__all__ = ["check_autoregressive", "ARModelFacts", "MAX_CONFIGURATIONS", "MAX_CONTEXTS", "MAX_JACOBIAN_POSITIONS"]

#: normalisation is checked when there are at most this many inputs (levels ** N, per context)
MAX_CONFIGURATIONS = 4096


def _rank(order, n: int) -> np.ndarray:
    order = np.asarray(torch.as_tensor(order).cpu()).reshape(-1)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _declared(ir, config: int):
    if ir is None or ir.kind != "autoregressive":
        return None
    from flowdsl.analysis.causality import dependency_sets

    try:
        return dependency_sets(ir, config)
    except (KeyError, IndexError):
        return None


# ----------------------------------------------------------------------------- causality and its proof
def _causality_case(model, rank, declared, tol, case):
    x, k, value, context = case
    flat = x.reshape(x.shape[0], -1).clone()
    levels = int(model.levels)
    new = (flat[:, k] + 1 + value % max(levels - 1, 1)) % levels  # always a different level
    flat[:, k] = new
    x2 = flat.reshape(x.shape)
    base, moved = conditionals(model, x, context), conditionals(model, x2, context)
    changed = moved_positions(moved, base, tol)
    shown = {"x": x, "position": k, "new value": new} | ({"context": context} if context is not None else {})
    early = np.flatnonzero(changed.any(axis=0) & (rank <= rank[k]))
    problems = []
    if len(early):
        j = int(early[0])
        what = "its own input" if j == k else f"position {k}, generated after it (rank {rank[k]} > {rank[j]})"
        problems.append(f"the conditional of position {j} (rank {rank[j]}) changed when the input changed at "
                        f"{what}: it must read only earlier positions ({len(early)} such positions)")
    if declared is not None:
        beyond = np.flatnonzero(changed.any(axis=0) & ~declared[:, k] & (rank > rank[k]))
        if len(beyond):
            problems.append(f"the conditional of position {int(beyond[0])} reacts to position {k}, which the checker "
                            f"says it does not read (the declared receptive field is wrong)")
    err = float((moved - base).abs().max()) if problems else 0.0
    if problems:
        raise Mismatch(problems, {"causality": err}, shown)
    return {"causality": 0.0}


# ----------------------------------------------------------------------------- what the conditionals read
def _completeness(model, rank, expected, tol, context_fn, rounds: int = 3, per_round: int = 4,
                  redraws: int = 3) -> tuple[int, str]:
    """Pairs (j, k) expected but never observed to interact; the report of the first one.

    A declared dependency may be silent for particular parameters (a dead ReLU unit): pairs still
    missing after ``rounds`` of random inputs are tried again on ``redraws`` copies of the model
    with re-drawn parameter noise; only a pair that no copy shows is reported.
    """
    observed = _observe(model, rank, expected, tol, context_fn, rounds, per_round, seed=1234)
    for k in range(redraws):
        if not (expected & ~observed).any():
            break
        observed |= _observe(twin(model, k), rank, expected & ~observed, tol, context_fn, rounds, per_round, seed=k)
    missing = np.argwhere(expected & ~observed)
    if not len(missing):
        return 0, ""
    j, k = missing[0]
    return len(missing), (f"the conditional of position {j} never reacted to position {k} (rank {rank[k]} < "
                          f"{rank[j]}), which it is declared to read ({len(missing)} such pairs)")


def _observe(model, rank, expected, tol, context_fn, rounds: int, per_round: int, seed: int) -> np.ndarray:
    """``bool [N, N]``: (j, k) seen to interact, perturbing the positions k that some expected pair needs."""
    n = rank.shape[0]
    levels = int(model.levels)
    gen = torch.Generator().manual_seed(seed)
    observed = np.zeros((n, n), dtype=bool)
    for _ in range(rounds):
        missing = expected & ~observed
        ks = np.flatnonzero(missing.any(axis=0))
        if len(ks) == 0:
            break
        for k in ks:
            x = random_inputs(model, per_round, gen)
            flat = x.reshape(per_round, -1).clone()
            flat[:, k] = (flat[:, k] + torch.randint(1, max(levels, 2), (per_round,), generator=gen)
                          .to(flat.device)) % levels
            c = context_fn(per_round, gen)
            changed = moved_positions(conditionals(model, flat.reshape(x.shape), c), conditionals(model, x, c), tol)
            observed[:, k] |= changed.any(axis=0)
    return observed


def _all_inputs(model, limit: int):
    n = math.prod(model.input_shape)
    levels = int(model.levels)
    total = levels ** n
    if total > limit:
        return None, total
    grid = torch.tensor(list(itertools.product(range(levels), repeat=n)), dtype=torch.long)
    return grid.reshape(total, *model.input_shape), total


def check_autoregressive(model, *, examples: int = 20, seed: int | None = None, causality: bool = True,
                         complete: bool | None = None, normalisation: bool = True, sampling: bool = True,
                         max_configurations: int = MAX_CONFIGURATIONS,
                         tol: float | None = None, batch: int = 2, facts: ARModelFacts | None = None,
                         jacobian: bool | None = None, context: bool | None = None) -> dict:
    """Causality (perturbation and Jacobian), completeness where claimed, the context, normalisation, sampling.

    Arguments:
        causality: run the perturbation search (``examples`` drawn cases, shared by the configurations).
        complete: None checks completeness against the checker's proved dependency sets when the
            model has an IR; True expects every conditional to read every earlier position; False skips.
        max_configurations: normalisation is skipped when ``levels ** N`` (per context) exceeds this.
        tol: relative change that counts as "the conditional moved" (default by dtype).
        facts: what the model declares beyond the API (default :meth:`ARModelFacts.of` the model).
        jacobian: None runs the Jacobian proof check with ``causality`` where it applies; True / False.
        context: None checks that the context reaches every conditional when the facts say a layer
            reads the condition (and ``causality`` is on); True / False.

    Returns ``causality`` (worst forbidden change: 0), ``jacobian`` (pairs outside the proof: 0; None when
    not run), ``completeness`` (missing pairs), ``context`` (positions the context never reached; None when
    not run) and ``normalisation`` (worst ``|log sum p|`` over the contexts; None when skipped;
    ``no_likelihood`` says why when ``log_prob`` raises NotImplementedError), ``examples``.
    Raises :class:`PropertyFailure`.
    """
    from flowdsl.testing.properties import _ref, describe_module

    dtype, device = _ref(model)
    tol = tol if tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    subject = describe_module(model)
    n = math.prod(model.input_shape)
    facts = facts if facts is not None else ARModelFacts.of(model)
    configs, start = facts.configurations, facts.mask_index
    report: dict = {"causality": 0.0, "jacobian": None, "completeness": None, "context": None, "normalisation": None,
                    "examples": 0}
    context_st = context_strategy(model, facts, batch, device)
    run_jacobian = (causality if jacobian is None else jacobian) and jacobian_applies(model, facts)

    def context_fn(b, gen):
        return draw(facts, b, gen, dtype, device)

    try:
        for config in range(configs):
            if configs > 1:
                model.mask_index = config
            rank = _rank(model.order, n)
            declared = _declared(facts.ir, config)
            strategy = st.tuples(inputs(model.input_shape, model.levels, batch=batch, discrete=True, device=device),
                                 st.integers(0, n - 1), st.integers(0, 2**16), context_st)
            where = subject + (f" (configuration {config})" if configs > 1 else "")
            if causality:
                out = search("causality", lambda c, r=rank, d=declared: _causality_case(model, r, d, tol, c), strategy,
                             examples=max(1, examples // configs), seed=seed, subject=where)
                report["examples"] += out["examples"]
            if run_jacobian:
                cases = st.tuples(inputs(model.input_shape, model.levels, batch=batch, discrete=True, device=device),
                                  context_st)
                search("jacobian", lambda c, r=rank, d=declared, k=config: jacobian_case(model, r, d, k, c), cases,
                       examples=max(1, examples // (4 * configs)), seed=seed, subject=where)
                report["jacobian"] = 0.0
            expected = None
            if complete is True:
                expected = rank[None, :] < rank[:, None]
            elif complete is None and declared is not None:
                expected = declared & (rank[None, :] < rank[:, None])
            if expected is not None:
                count, message = _completeness(model, rank, expected, tol, context_fn)
                report["completeness"] = (report["completeness"] or 0) + count
                if count:
                    raise PropertyFailure("completeness", where, [message], None, {"completeness": float(count)},
                                          report["examples"])
    finally:
        if configs > 1:
            model.mask_index = start
    if (causality and facts.reads_condition) if context is None else (context and facts.conditional):
        count, message = context_reach(model, facts, tol, dtype, device)
        report["context"] = count
        if count:
            raise PropertyFailure("context", subject, [message], None, {"context": float(count)}, report["examples"])
    if normalisation:
        try:
            report["normalisation"] = _normalisation(model, subject, facts, max_configurations, device, dtype)
        except NotImplementedError as err:  # a sampler that defines no likelihood
            report["no_likelihood"] = str(err)
    if sampling:
        _sampling(model, subject, facts, device, dtype)
    return report


def _normalisation(model, subject, facts: ARModelFacts, limit, device, dtype):
    grid, total = _all_inputs(model, limit)
    if grid is None:
        return None
    grid = grid.to(device) if device is not None else grid
    worst = 0.0
    for ctx in fixed_contexts(facts, dtype, device):
        parts = []
        with torch.no_grad():
            for chunk in grid.split(1024):
                c = batched(ctx, chunk.shape[0])
                parts.append(model.log_prob(chunk, c) if c is not None else model.log_prob(chunk))
        total_lp = torch.logsumexp(torch.cat(parts).to(torch.float64), dim=0).item()
        worst = max(worst, abs(total_lp))
        limit_ = 1e-8 if dtype == torch.float64 else 1e-4
        if not abs(total_lp) <= limit_ * max(1.0, math.log(total)):
            where = "" if ctx is None else (f" for label {int(ctx)}" if ctx.dim() == 0 and facts.classes
                                            else f" for the context {format_case(ctx)}")
            raise PropertyFailure("normalisation", subject, [
                f"the probabilities of all {total} inputs{where} sum to {math.exp(total_lp):.9g}, not 1 "
                f"(log of the sum: {total_lp:.3g})"], None, {"normalisation": abs(total_lp)}, total)
    return worst


def _sampling(model, subject, facts: ARModelFacts, device, dtype):
    n = 3
    c = draw(facts, n, torch.Generator().manual_seed(11), dtype, device)
    if facts.conditional and not facts.context_shape and facts.context_levels:
        c = torch.arange(n, device=device) % facts.context_levels  # every label in turn, as before
    with torch.no_grad():
        x = model.sample(n, c) if c is not None else model.sample(n)
    problems = []
    if tuple(x.shape) != (n, *model.input_shape):
        problems.append(f"sample({n}) has shape {list(x.shape)}, not {[n, *model.input_shape]}")
    elif x.dtype.is_floating_point or (x < 0).any() or (x >= model.levels).any():
        problems.append(f"sample({n}) returned values outside the integers 0..{model.levels - 1}")
    elif _cached_differs(model, n, c):
        problems.append("cached generation drew other samples than the naive loop from the same random stream"
                        + (" and contexts" if c is not None else ""))
    if problems:
        raise PropertyFailure("sampling", subject, problems, {"sample": x} | ({"context": c} if c is not None else {}),
                              {"sampling": 1.0}, 1)


def _cached_differs(model, n: int, context) -> bool:
    """Whether a compiled model's cached sampler (where it has one) draws other samples than the naive loop."""
    from flowdsl.runtime.ar_cache import supports
    from flowdsl.runtime.autoregressive import CompiledAR

    if not isinstance(model, CompiledAR) or not supports(model, model.mask_index):
        return False
    draws = []
    device = model._device()
    for cached in (True, False):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(5)
            draws.append(model.sample(n, context, cached=cached))
    return not torch.equal(draws[0], draws[1])
