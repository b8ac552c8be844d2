"""Every property on every model of a spec file: what ``flowdsl test`` and ``pytest --flowdsl`` run.

Each model is compiled in float64 with perturbed parameters (zero-initialised nets would be
the identity), data-dependent layers initialised on a first batch, then put in evaluation
mode. Expensive properties run on a tiny configuration (:mod:`flowdsl.testing.tiny`): the
same layers on a smaller input.

Flows: ``params`` (declared = allocated), ``shapes`` (inferred = runtime, per layer),
``bijection`` (round trip, brute-force log-det, inverse log-det), ``structure`` (each layer's
Jacobian within its declared dependency), ``sampling`` (finite samples and densities); a
conditional flow also ``context`` (each layer that reads the condition changes with it, the others
do not) and ``training`` (a few optimiser steps raise its log-likelihood). Contexts of any
condition type are drawn for every property (:func:`flowdsl.testing.inputs.contexts`).
Autoregressive models: ``params``, ``causality`` (perturbation, at the declared size),
``completeness``, ``normalisation`` and ``sampling`` (tiny configuration).

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "f.flow"
    >>> _ = path.write_text("flow f {\\n input x: vector[4]\\n coupling affine(mask=half, net=mlp([8]))\\n"
    ...                     " permute(reverse)\\n coupling affine(mask=half, net=mlp([8]))\\n}\\n")
    >>> results = run_file(path, examples=3)
    >>> [(r.property, r.verdict) for r in results]   # doctest: +NORMALIZE_WHITESPACE
    [('params', 'pass'), ('shapes', 'pass'), ('bijection', 'pass'), ('structure', 'pass'), ('sampling', 'pass')]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowdsl.errors import FlowDSLError
from flowdsl.testing.search import PropertyFailure

__all__ = ["Result", "Subject", "PROPERTIES", "CONDITIONAL", "subjects", "run_property", "run_file", "format_table",
           "hypothesis_storage"]


def hypothesis_storage() -> str:
    """Where Hypothesis keeps its files for ``flowdsl test``: the user's ``HYPOTHESIS_STORAGE_DIRECTORY``
    if set, else ``$FLOWDSL_CACHE/hypothesis`` (default ``~/.cache/flowdsl/hypothesis``), never a
    ``.hypothesis/`` folder in the working directory. Sets the variable for this process."""
    import os

    cache = os.environ.get("FLOWDSL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "flowdsl")
    return os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(cache, "hypothesis"))


@dataclass
class Result:
    """One row of the report."""

    file: str
    model: str
    property: str
    verdict: str  # "pass" | "fail" | "skip" | "error"
    worst: float | None = None
    examples: int = 0
    detail: str = ""
    config: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "error")


#: standard deviation of the noise added to every parameter (zero-initialised nets would be the identity)
PERTURBATION = 0.02


class Skip(Exception):
    """A property that cannot run on this model (said why)."""


@dataclass
class Subject:
    """One model of a spec file, compiled and prepared on demand (declared and tiny configurations)."""

    path: str
    name: str
    kind: str
    text: str
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)
    #: the model declares a condition (the conditional properties run)
    conditional: bool = False

    def _compile(self, text: str):
        import torch

        from flowdsl.api import analyze_source
        from flowdsl.runtime.compiler import compile_model
        from flowdsl.testing.jacobian import perturb_parameters
        from flowdsl.testing.properties import random_context

        analysis = analyze_source(text, self.path)
        if not analysis.ok:
            raise analysis.error()
        # the layers as declared: every property is about them (the optimised build equals this one)
        model = compile_model(analysis.model(self.name), analysis.unit, optimize=False).to(torch.float64)
        perturb_parameters(model, scale=PERTURBATION, seed=self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        model.train()
        with torch.no_grad():  # data-dependent initialisation (actnorm) on a first batch
            shape = (8 if self.kind == "flow" else 2, *model.input_shape)
            levels = getattr(model, "levels", None)
            if self.kind == "flow":
                x = torch.rand(shape, generator=gen, dtype=torch.float64) * levels if levels else \
                    torch.randn(shape, generator=gen, dtype=torch.float64)
            else:
                x = torch.randint(0, levels, shape, generator=gen)
            context = random_context(model, shape[0], gen)
            try:
                model(x, context) if self.kind == "flow" else model.log_prob(x, context)
            except NotImplementedError:  # a sampler without a likelihood: nothing to initialise from data
                pass
        return model.eval()

    @property
    def model(self):
        if "model" not in self._cache:
            self._cache["model"] = self._compile(self.text)
        return self._cache["model"]

    def tiny(self, max_size: int, max_configurations: int | None = None):
        """``(model, description)`` of a tiny configuration (the declared one if it is small enough)."""
        key = ("tiny", max_size, max_configurations)
        if key not in self._cache:
            from flowdsl.testing.tiny import shrink_source

            cfg = shrink_source(self.text, self.path, self.name, max_size=max_size,
                                max_configurations=max_configurations)
            if cfg is None:
                self._cache[key] = None
            elif cfg.text == self.text:
                self._cache[key] = (self.model, "declared")
            else:
                tiny = self._compile(cfg.text)
                if _reads_differently(tiny, self.model) and math.prod(self.model.input_shape) <= max_size:
                    # a smaller input would make a layer read the condition otherwise (a map of another H x W)
                    self._cache[key] = (self.model, "declared")
                else:
                    self._cache[key] = (tiny, "tiny " + cfg.describe())
        if self._cache[key] is None:
            raise Skip(f"no configuration with at most {max_size} numbers checks with the same layers")
        return self._cache[key]


def _reads_differently(a, b) -> bool:
    """Whether two builds of a model differ in how a layer reads the condition (the map, or flattened)."""
    return [n.meta.get("context_map") for n in a.ir.layers] != [n.meta.get("context_map") for n in b.ir.layers]


# ----------------------------------------------------------------------------- flow properties
def _params(s: Subject, examples, seed):
    model = s.model
    allocated = sum(p.numel() for p in model.parameters())
    declared = model.ir.params
    if allocated != declared:
        raise PropertyFailure("params", s.name, [f"the checker declares {declared:,} parameters but the compiled "
                                                 f"model allocates {allocated:,}"], None,
                              {"params": float(abs(allocated - declared))}, 1)
    return 0.0, 1, "declared"


def _shapes(s: Subject, examples, seed):
    import torch

    from flowdsl.runtime.conditions import context_for
    from flowdsl.testing.properties import random_context

    model = s.model
    x = torch.rand(2, *model.input_shape, dtype=torch.float64) * (model.levels or 1)
    with torch.no_grad():
        ctx = model.condition(random_context(model, 2), 2, torch.float64) if model.condition is not None else None
        for i, (module, node) in enumerate(zip(model.layers, model.ir.layers), start=1):
            x = module.split(x)[0] if node.factored is not None else module(x, context_for(module, ctx))[0]
            if tuple(x.shape[1:]) != tuple(node.out_shape):
                raise PropertyFailure("shapes", s.name, [
                    f"layer {i} {node.layer.describe()} (line {node.pos.line}) outputs {list(x.shape[1:])}, "
                    f"the checker inferred {list(node.out_shape)}"], None, {"shapes": 1.0}, 1)
    return 0.0, 1, "declared"


def _bijection(s: Subject, examples, seed):
    from flowdsl.testing.properties import MAX_BRUTE_FORCE_DIM, check_bijection

    model, where = s.tiny(MAX_BRUTE_FORCE_DIM)
    report = check_bijection(model, examples=examples, seed=seed)
    worst = max(v for k, v in report.items() if k != "examples" and v is not None)
    tried = report["examples"]
    if model is not s.model:  # the declared size too: round trip and inverse log-det, no brute force
        full = check_bijection(s.model, examples=max(2, examples // 5), seed=seed, brute_force=False)
        worst = max([worst] + [v for k, v in full.items() if k != "examples" and v is not None])
        tried += full["examples"]
        where += " (+ declared, without brute force)"
    return worst, tried, where


def _structure(s: Subject, examples, seed):
    from flowdsl.testing.properties import MAX_BRUTE_FORCE_DIM, check_structure

    model, where = s.tiny(MAX_BRUTE_FORCE_DIM)
    report = check_structure(model, examples=max(1, examples // 2), seed=seed)
    return report["structure"], report["examples"], where


def _flow_sampling(s: Subject, examples, seed):
    import torch

    from flowdsl.testing.properties import random_context

    model = s.model
    labels = random_context(model, 4, torch.Generator().manual_seed(seed or 0))
    x = model.sample(4, labels)
    problems = []
    if tuple(x.shape) != (4, *model.input_shape):
        problems.append(f"sample(4) has shape {list(x.shape)}")
    elif not torch.isfinite(x.double()).all():
        problems.append("sample(4) is not finite")
    else:
        with torch.no_grad():
            lp = model.log_prob(x, labels)
        if not torch.isfinite(lp).all():
            problems.append(f"log_prob of samples is not finite: {lp.tolist()}")
    if problems:
        raise PropertyFailure("sampling", s.name, problems, None, {"sampling": 1.0}, 1)
    return 0.0, 1, "declared"


def _context(s: Subject, examples, seed):
    from flowdsl.testing.properties import check_context

    report = check_context(s.model, examples=max(2, examples // 4), seed=seed)
    return report["context"], report["examples"], f"declared ({report['readers']} readers)"


def _training(s: Subject, examples, seed):
    from flowdsl.testing.properties import MAX_BRUTE_FORCE_DIM, check_training

    model, where = s.tiny(MAX_BRUTE_FORCE_DIM)
    report = check_training(model, seed=seed or 0)
    return 0.0, 1, f"{where} (mean log_prob {report['before']:.4g} -> {report['after']:.4g})"


# ----------------------------------------------------------------------------- autoregressive properties
def _causality(s: Subject, examples, seed):
    from flowdsl.testing.autoregressive import check_autoregressive

    report = check_autoregressive(s.model, examples=examples, seed=seed, complete=False, normalisation=False,
                                  sampling=False)
    return report["causality"], report["examples"], "declared"


def _ar_tiny(s: Subject):
    from flowdsl.testing.autoregressive import MAX_CONFIGURATIONS

    return s.tiny(64, MAX_CONFIGURATIONS)


def _completeness(s: Subject, examples, seed):
    from flowdsl.testing.autoregressive import check_autoregressive

    model, where = _ar_tiny(s)
    report = check_autoregressive(model, causality=False, normalisation=False, sampling=False, seed=seed)
    if report["completeness"] is None:
        raise Skip("no declared dependency sets")
    return float(report["completeness"]), math.prod(model.input_shape), where


def _normalisation(s: Subject, examples, seed):
    from flowdsl.testing.autoregressive import check_autoregressive

    model, where = _ar_tiny(s)
    report = check_autoregressive(model, causality=False, complete=False, sampling=False, seed=seed)
    if report["normalisation"] is None:
        raise Skip(report.get("no_likelihood") or "too many inputs to enumerate")
    return report["normalisation"], int(model.levels) ** math.prod(model.input_shape), where


def _ar_sampling(s: Subject, examples, seed):
    from flowdsl.testing.autoregressive import check_autoregressive

    model, where = _ar_tiny(s)
    check_autoregressive(model, causality=False, complete=False, normalisation=False, seed=seed)
    return 0.0, 1, where


#: model kind -> [(property, function(subject, examples, seed) -> (worst, examples, configuration))]
PROPERTIES = {
    "flow": [("params", _params), ("shapes", _shapes), ("bijection", _bijection), ("structure", _structure),
             ("sampling", _flow_sampling), ("context", _context), ("training", _training)],
    "autoregressive": [("params", _params), ("causality", _causality), ("completeness", _completeness),
                       ("normalisation", _normalisation), ("sampling", _ar_sampling)],
}


#: properties of conditional models only (an unconditional model has no row for them)
CONDITIONAL = frozenset({"context", "training"})


# ----------------------------------------------------------------------------- running
def subjects(path, seed: int = 0) -> list[Subject]:
    """The models of a spec file (FlowDSLError if it does not check)."""
    from flowdsl.api import analyze_file

    path = str(path)
    analysis = analyze_file(path)
    if not analysis.ok:
        raise analysis.error()
    text = analysis.unit.sources.get(path, "")
    return [Subject(path, name, ir.header.kind, text, seed, conditional=ir.header.condition is not None)
            for name, ir in analysis.models.items()]


def run_property(subject: Subject, prop: str, examples: int = 20, seed: int | None = None) -> Result:
    """Run one property; every outcome (pass, failure, skip, crash) becomes a :class:`Result`."""
    import torch

    fn = dict(PROPERTIES[subject.kind])[prop]
    start = time.perf_counter()
    row = Result(subject.path, subject.name, prop, "pass")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the models run in float64: what they create follows
    try:
        if prop in CONDITIONAL and not subject.conditional:
            raise Skip("the model declares no condition")
        row.worst, row.examples, row.config = fn(subject, examples, seed)
    except Skip as why:
        row.verdict, row.detail = "skip", str(why)
    except PropertyFailure as err:
        row.verdict, row.detail, row.worst, row.examples = "fail", err.render(), err.worst, err.examples
    except FlowDSLError as err:
        row.verdict, row.detail = "error", err.render()
    except Exception as err:  # a crash in the model's code is a failed property, reported with its cause
        row.verdict, row.detail = "error", f"{prop} crashed: {type(err).__name__}: {err}"
    finally:
        torch.set_default_dtype(old)
    row.seconds = time.perf_counter() - start
    return row


def run_file(path, examples: int = 20, seed: int | None = None, properties=None) -> list[Result]:
    """Every property (or those named) on every model of a spec file."""
    try:
        subs = subjects(path, seed or 0)
    except FlowDSLError as err:
        return [Result(str(path), "-", "check", "error", detail=err.render())]
    except OSError as err:
        return [Result(str(path), "-", "check", "error", detail=f"cannot read the file: {err.strerror}")]
    rows = []
    for sub in subs:
        for prop, _ in PROPERTIES[sub.kind]:
            if (properties is None or prop in properties) and (sub.conditional or prop not in CONDITIONAL):
                rows.append(run_property(sub, prop, examples, seed))
                if prop == "params" and rows[-1].verdict == "error":
                    break  # the model does not compile: the other properties would repeat that
    return rows


def _num(v) -> str:
    return "-" if v is None else ("0" if v == 0 else f"{v:.2g}")


def format_table(results: list[Result], details: bool = True) -> str:
    """The report: one row per (model, property), then the details of what failed or was skipped."""
    head = ("spec", "model", "property", "verdict", "worst error", "examples", "configuration")
    rows = [head] + [(Path(r.file).name, r.model, r.property, r.verdict.upper() if r.failed else r.verdict,
                      _num(r.worst), str(r.examples), r.config) for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [r for r in results if r.failed]
    lines.append("")
    lines.append(f"{len(results) - len(failed)} passed or skipped, {len(failed)} failed "
                 f"({sum(r.verdict == 'skip' for r in results)} skipped)")
    if details:
        for r in results:
            if r.detail and r.verdict != "pass":
                lines += ["", f"{r.file}: {r.model}: {r.property}: {r.verdict}", *("  " + ln for ln in
                                                                                  r.detail.splitlines())]
    return "\n".join(lines)
