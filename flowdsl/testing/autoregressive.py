"""Property checks of autoregressive models: causality by perturbation, completeness, normalisation.

Works on any model with the autoregressive API: ``input_shape``, ``levels``, ``order``
(flattened positions in generation order), ``conditionals(x, context) -> [B, N, P]``,
``log_prob(x, context) -> [B]`` and ``sample(n, context)``. What else the check needs is declared,
not probed: an :class:`ARModelFacts` (labels, configurations, the mask in use, the IR whose proved
dependency sets completeness is checked against, :func:`flowdsl.analysis.causality.dependency_sets`),
read off a compiled model (:class:`~flowdsl.runtime.autoregressive.CompiledAR`) or passed as ``facts=``
(default for another model: no labels, one configuration, no IR).

- **causality**: changing the input at position k never changes the conditional of a position
  generated no later than k (Hypothesis draws x, k and the new value; a failure shrinks);
- **completeness**: each conditional reacts to every position it is declared to read (the checker's
  sets when the model has an IR, or every earlier position with ``complete=True``);
- **normalisation**: on a tiny configuration, the probabilities of all ``levels ** N`` inputs sum to 1;
- **sampling**: ``sample`` returns integers in range, of the input's shape.

Call it on a model in evaluation mode (``model.eval()``).

Example:
    >>> import flowdsl
    >>> model = flowdsl.compile_source("autoregressive m {\\n input x: vector[3] levels 2\\n made([4], masks=2)\\n"
    ...                                " output bernoulli\\n}\\n", filename="m.ar").double().eval()
    >>> ARModelFacts.of(model).configurations
    2
    >>> check_autoregressive(model, examples=2, seed=0)["causality"]
    0.0
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from flowdsl.testing.search import Mismatch, PropertyFailure, search
from flowdsl.testing.strategies import inputs

__all__ = ["check_autoregressive", "ARModelFacts", "MAX_CONFIGURATIONS"]

#: normalisation is checked when there are at most this many inputs (levels ** N, per label)
MAX_CONFIGURATIONS = 4096


@dataclass(frozen=True)
class ARModelFacts:
    """What the check needs to know of a model beyond the autoregressive API."""

    classes: int = 0  # labels of the condition (0: unconditional)
    configurations: int = 1  # orders / mask sets (MADE); ``mask_index`` selects one
    mask_index: int = 0
    ir: Any = None  # the checked IR (its proved dependency sets), if any

    @classmethod
    def of(cls, model) -> ARModelFacts:
        """A compiled model's facts; the defaults for any other model."""
        from flowdsl.runtime.autoregressive import CompiledAR

        if not isinstance(model, CompiledAR):
            return cls()
        return cls(classes=int(model.classes or 0), configurations=int(model.configurations),
                   mask_index=int(model.mask_index), ir=model.ir)


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


def _conditionals(model, x, labels_):
    with torch.no_grad():
        out = model.conditionals(x, labels_) if labels_ is not None else model.conditionals(x)
    return out.reshape(out.shape[0], out.shape[1], -1)


def _changed(a, b, tol: float) -> np.ndarray:
    """``bool [B, N]``: positions whose parameters moved."""
    return ((a - b).abs() > tol * (1 + b.abs())).any(dim=2).cpu().numpy()


def _causality_case(model, rank, declared, tol, case):
    x, k, value, labels_ = case
    flat = x.reshape(x.shape[0], -1).clone()
    levels = int(model.levels)
    new = (flat[:, k] + 1 + value % max(levels - 1, 1)) % levels  # always a different level
    flat[:, k] = new
    x2 = flat.reshape(x.shape)
    base, moved = _conditionals(model, x, labels_), _conditionals(model, x2, labels_)
    changed = _changed(moved, base, tol)
    shown = {"x": x, "position": k, "new value": new} | ({"context": labels_} if labels_ is not None else {})
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


def _completeness(model, rank, expected, tol, labels_fn, rounds: int = 3, per_round: int = 4,
                  redraws: int = 3) -> tuple[int, str]:
    """Pairs (j, k) expected but never observed to interact; the report of the first one.

    A declared dependency may be silent for particular parameters (a dead ReLU unit): pairs still
    missing after ``rounds`` of random inputs are tried again on ``redraws`` copies of the model
    with re-drawn parameter noise; only a pair that no copy shows is reported.
    """
    observed = _observe(model, rank, expected, tol, labels_fn, rounds, per_round, seed=1234)
    for k in range(redraws):
        if not (expected & ~observed).any():
            break
        import copy

        from flowdsl.testing.jacobian import perturb_parameters

        twin = perturb_parameters(copy.deepcopy(model), scale=0.5, seed=k)
        observed |= _observe(twin, rank, expected & ~observed, tol, labels_fn, rounds, per_round, seed=k)
    missing = np.argwhere(expected & ~observed)
    if not len(missing):
        return 0, ""
    j, k = missing[0]
    return len(missing), (f"the conditional of position {j} never reacted to position {k} (rank {rank[k]} < "
                          f"{rank[j]}), which it is declared to read ({len(missing)} such pairs)")


def _observe(model, rank, expected, tol, labels_fn, rounds: int, per_round: int, seed: int) -> np.ndarray:
    """``bool [N, N]``: (j, k) seen to interact, perturbing the positions k that some expected pair needs."""
    n = rank.shape[0]
    levels = int(model.levels)
    gen = torch.Generator().manual_seed(seed)
    observed = np.zeros((n, n), dtype=bool)
    device = next((t.device for t in list(model.parameters()) + list(model.buffers())), None)
    for _ in range(rounds):
        missing = expected & ~observed
        ks = np.flatnonzero(missing.any(axis=0))
        if len(ks) == 0:
            break
        for k in ks:
            x = torch.randint(0, levels, (per_round, *model.input_shape), generator=gen)
            x = x.to(device) if device is not None else x
            flat = x.reshape(per_round, -1).clone()
            flat[:, k] = (flat[:, k] + torch.randint(1, max(levels, 2), (per_round,), generator=gen)
                          .to(flat.device)) % levels
            lab = labels_fn(per_round, gen)
            changed = _changed(_conditionals(model, flat.reshape(x.shape), lab), _conditionals(model, x, lab), tol)
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
                         tol: float | None = None, batch: int = 2, facts: ARModelFacts | None = None) -> dict:
    """Causality (perturbation), completeness where claimed, normalisation on tiny inputs, sampling.

    Arguments:
        causality: run the perturbation search (``examples`` drawn cases, shared by the configurations).
        complete: None checks completeness against the checker's proved dependency sets when the
            model has an IR; True expects every conditional to read every earlier position; False skips.
        max_configurations: normalisation is skipped when ``levels ** N`` (per label) exceeds this.
        tol: relative change that counts as "the conditional moved" (default by dtype).
        facts: what the model declares beyond the API (default :meth:`ARModelFacts.of` the model).

    Returns ``causality`` (worst forbidden change: 0), ``completeness`` (missing pairs) and
    ``normalisation`` (``|log sum p|``; None when skipped; ``no_likelihood`` says why when ``log_prob``
    raises NotImplementedError), ``examples``. Raises :class:`PropertyFailure`.
    """
    from flowdsl.testing.properties import _ref, describe_module

    dtype, device = _ref(model)
    tol = tol if tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    subject = describe_module(model)
    n = math.prod(model.input_shape)
    facts = facts if facts is not None else ARModelFacts.of(model)
    classes, configs, start = facts.classes, facts.configurations, facts.mask_index
    report: dict = {"causality": 0.0, "completeness": None, "normalisation": None, "examples": 0}
    labels_st = st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch).map(
        lambda v: torch.tensor(v, device=device)) if classes else st.none()

    def labels_fn(b, gen):
        return torch.randint(0, classes, (b,), generator=gen).to(device) if classes else None

    try:
        for config in range(configs):
            if configs > 1:
                model.mask_index = config
            rank = _rank(model.order, n)
            declared = _declared(facts.ir, config)
            strategy = st.tuples(inputs(model.input_shape, model.levels, batch=batch, discrete=True, device=device),
                                 st.integers(0, n - 1), st.integers(0, 2**16), labels_st)
            where = subject + (f" (configuration {config})" if configs > 1 else "")
            if causality:
                out = search("causality", lambda c, r=rank, d=declared: _causality_case(model, r, d, tol, c), strategy,
                             examples=max(1, examples // configs), seed=seed, subject=where)
                report["examples"] += out["examples"]
            expected = None
            if complete is True:
                expected = rank[None, :] < rank[:, None]
            elif complete is None and declared is not None:
                expected = declared & (rank[None, :] < rank[:, None])
            if expected is not None:
                count, message = _completeness(model, rank, expected, tol, labels_fn)
                report["completeness"] = (report["completeness"] or 0) + count
                if count:
                    raise PropertyFailure("completeness", where, [message], None, {"completeness": float(count)},
                                          report["examples"])
    finally:
        if configs > 1:
            model.mask_index = start
    if normalisation:
        try:
            report["normalisation"] = _normalisation(model, subject, classes, max_configurations, device, dtype)
        except NotImplementedError as err:  # a sampler that defines no likelihood
            report["no_likelihood"] = str(err)
    if sampling:
        _sampling(model, subject, classes, device)
    return report


def _normalisation(model, subject, classes, limit, device, dtype):
    grid, total = _all_inputs(model, limit)
    if grid is None:
        return None
    grid = grid.to(device) if device is not None else grid
    worst = 0.0
    for label in range(classes) if classes else [None]:
        parts = []
        with torch.no_grad():
            for chunk in grid.split(1024):
                lab = None if label is None else torch.full((chunk.shape[0],), label, dtype=torch.long,
                                                             device=chunk.device)
                parts.append(model.log_prob(chunk, lab) if lab is not None else model.log_prob(chunk))
        total_lp = torch.logsumexp(torch.cat(parts).to(torch.float64), dim=0).item()
        worst = max(worst, abs(total_lp))
        limit_ = 1e-8 if dtype == torch.float64 else 1e-4
        if not abs(total_lp) <= limit_ * max(1.0, math.log(total)):
            where = "" if label is None else f" for label {label}"
            raise PropertyFailure("normalisation", subject, [
                f"the probabilities of all {total} inputs{where} sum to {math.exp(total_lp):.9g}, not 1 "
                f"(log of the sum: {total_lp:.3g})"], None, {"normalisation": abs(total_lp)}, total)
    return worst


def _sampling(model, subject, classes, device):
    n = 3
    lab = torch.arange(n, device=device) % classes if classes else None
    with torch.no_grad():
        x = model.sample(n, lab) if lab is not None else model.sample(n)
    problems = []
    if tuple(x.shape) != (n, *model.input_shape):
        problems.append(f"sample({n}) has shape {list(x.shape)}, not {[n, *model.input_shape]}")
    elif x.dtype.is_floating_point or (x < 0).any() or (x >= model.levels).any():
        problems.append(f"sample({n}) returned values outside the integers 0..{model.levels - 1}")
    if problems:
        raise PropertyFailure("sampling", subject, problems, {"sample": x}, {"sampling": 1.0}, 1)
