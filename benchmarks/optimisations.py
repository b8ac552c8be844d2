"""What the optimisation passes buy: each flow spec compiled twice, optimised and not, timed side by side.

    OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.optimisations [--reps 7] [--markdown]

Both models hold the same parameters (one state dict). Per spec and operation (a training step:
``-log_prob(x).mean()`` and its backward; ``log_prob`` under ``no_grad``; ``sample(n)``; and
``sample(n)`` inside :func:`flowdsl.runtime.optimize.discarding_logdets`, what sampling costs once
the flow asks its layers not to compute the log-dets it drops) the script takes the CPU time of one
thread, alternating the two models ``--reps`` times, and prints the median of
``time(unoptimised) / time(optimised)`` per repetition: above 1 the optimised model is faster.
Ratios within one run only, never absolute times (the machine is shared). ``specs/ffjord.flow`` is
left out by default (an ODE flow: no optimisation applies, and slow).

Example:
    >>> row = measure_spec(ROOT / "specs" / "nice.flow", reps=1, batch=8, inner=1)
    >>> sorted(row), row["folded"] > 0
    (['cached', 'folded', 'fused', 'log_prob', 'residual', 'sample', 'sample, log-dets dropped', 'spec', 'train'], True)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import flowdsl
from flowdsl.runtime.compiler import compile_model
from flowdsl.runtime.made import MaskedLinear
from flowdsl.runtime.optimize import discarding_logdets
from flowdsl.runtime.residual import Residual
from flowdsl.runtime.structural import InvConv1x1, Permute

__all__ = ["spec_paths", "measure_spec", "render", "main"]

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = ("ffjord.flow",)
OPERATIONS = ("train", "log_prob", "sample", "sample, log-dets dropped")


def spec_paths(include_slow: bool = False) -> list[Path]:
    """The flow specs measured: ``benchmarks/specs/*.flow`` and ``specs/*.flow``."""
    paths = sorted((ROOT / "benchmarks" / "specs").glob("*.flow")) + sorted((ROOT / "specs").glob("*.flow"))
    return [p for p in paths if include_slow or p.name not in SKIPPED]


def _pair(path: Path, x, context):
    analysis = flowdsl.analyze_file(path)
    plain = compile_model(analysis.model(None), analysis.unit, optimize=False)
    fast = compile_model(analysis.model(None), analysis.unit, optimize=True)
    with torch.no_grad():
        plain.log_prob(x, context)  # data-dependent initialisation (actnorm), then one state for both
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def _operation(name: str, flow, x, context):
    n = x.shape[0]
    if name == "train":
        def step():
            flow.zero_grad(set_to_none=True)
            (-flow.log_prob(x, context).mean()).backward()
        return step
    if name == "log_prob":
        return lambda: _no_grad(flow.log_prob, x, context)
    if name == "sample":
        return lambda: flow.sample(n, context)
    return lambda: _dropping(flow.sample, n, context)


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def _dropping(fn, *args):
    with discarding_logdets():
        return fn(*args)


def _cpu_time(fn, inner: int) -> float:
    start = time.thread_time()
    for _ in range(inner):
        fn()
    return time.thread_time() - start


def measure_spec(path: Path, reps: int = 7, batch: int = 512, inner: int = 3) -> dict:
    """Median speed-up per operation (and what the passes found) for one spec."""
    torch.manual_seed(0)
    analysis = flowdsl.analyze_file(path)
    shape = analysis.model(None).header.input.shape
    levels = analysis.model(None).header.input.levels
    n = batch if len(shape) == 1 else max(batch // 8, 4)  # 512 vectors, 64 images (docs/benchmarks.md)
    x = torch.randint(0, levels, (n, *shape)).float() if levels else torch.randn(n, *shape)
    context = torch.zeros(n, dtype=torch.long) if analysis.model(None).header.condition is not None else None
    plain, fast = _pair(path, x, context)
    row: dict = {"spec": str(path.relative_to(ROOT)),
                 "folded": sum(isinstance(m, Permute) and m.identity for m in fast.layers),
                 "cached": sum(isinstance(m, (MaskedLinear, InvConv1x1)) for m in fast.modules()),
                 "fused": sum(isinstance(m, InvConv1x1) and m.fused_actnorm is not None for m in fast.modules()),
                 "residual": sum(isinstance(m, Residual) for m in fast.layers)}
    for name in OPERATIONS:
        slow_fn = _operation("sample" if name.startswith("sample") else name, plain, x, context)
        fast_fn = _operation(name, fast, x, context)
        slow_fn(), fast_fn()  # warm-up (and the caches' first fill)
        ratios = []
        for _ in range(reps):
            slow = _cpu_time(slow_fn, inner)
            quick = _cpu_time(fast_fn, inner)
            ratios.append(slow / max(quick, 1e-9))
        row[name] = statistics.median(ratios)
    return row


def render(rows: list[dict], markdown: bool = False) -> str:
    """The table: one row per spec, the speed-ups (unoptimised time / optimised time)."""
    head = ["spec", "folded permutes", "cached modules", "fused actnorm+invconv", "residual blocks", *OPERATIONS]
    lines = []
    for row in rows:
        cells = [row["spec"], str(row["folded"]), str(row["cached"]), str(row["fused"]), str(row["residual"])]
        cells += [f"{row[name]:.2f}" for name in OPERATIONS]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in [head, *lines])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", nargs="*", help="spec file names to measure (default: all)")
    parser.add_argument("--include-slow", action="store_true", help="also specs/ffjord.flow")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = [p for p in spec_paths(args.include_slow) if not args.only or p.name in args.only
             or str(p.relative_to(ROOT)) in args.only]
    rows = []
    for path in paths:
        rows.append(measure_spec(path, args.reps, args.batch))
        print(render(rows[-1:], args.markdown).splitlines()[-1], flush=True)
    print()
    print(render(rows, args.markdown))


if __name__ == "__main__":
    main()
