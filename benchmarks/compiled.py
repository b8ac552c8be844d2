"""torch.compile: graph breaks of every bundled flow's ``log_prob``, and the compiled/eager speed ratio.

    python -m benchmarks.compiled [--specs specs/*.flow] [--speed]
    python -m benchmarks.compiled --ar        # every bundled spec, autoregressive models too

:func:`explain` runs ``torch._dynamo.explain`` on a compiled flow's ``log_prob`` (evaluation
mode, after one training-mode call so that data-initialised layers are initialised) and
returns the graph and break counts with the distinct reasons and where they happen.
:func:`compiled_speedup` times ``torch.compile(flow.log_prob)`` against eager with the
side-by-side harness (training step and evaluation); :func:`compiled_pairings` times compiled
flowdsl against each compiled peer (like for like, issue 16 item 4); :mod:`benchmarks.run` calls
both for each pairing under ``--compile``. Compilation needs a C++ compiler on CPU (gcc).

Example:
    >>> import flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n coupling affine(mask=half)\\n}\\n")
    >>> explain(flow)["breaks"]  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

import torch

from .harness import Impl, measure, paired_ratio

__all__ = ["example_input", "explain", "compiled_speedup", "compile_impl", "compiled_pairings", "explain_specs",
           "render_explain", "main"]

ROOT = Path(__file__).resolve().parent.parent


def example_input(flow, batch: int = 8):
    """(x, context) fitting a compiled flow or autoregressive model: integers for discrete inputs, a
    context of the condition's declared shape (integers in range for a discrete one)."""
    from flowdsl.runtime.flow import CompiledFlow

    gen = torch.Generator().manual_seed(0)
    if flow.levels:
        x = torch.randint(0, flow.levels, (batch, *flow.input_shape), generator=gen)
        x = x.float() if isinstance(flow, CompiledFlow) else x
    else:
        x = torch.randn((batch, *flow.input_shape), generator=gen)
    ctx = None
    if flow.context_shape is not None:
        levels = flow.condition.levels
        ctx = torch.randint(0, levels, (batch, *flow.context_shape), generator=gen) if levels else \
            torch.randn((batch, *flow.context_shape), generator=gen)
    return x, ctx


def _where(b) -> str:
    stack = getattr(b, "user_stack", None)
    if not stack:
        return ""
    frame = stack[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _quiet_dynamo() -> None:
    """Graph-break warnings are reported by :func:`explain`; keep them off the console."""
    import logging

    torch._logging.set_logs(dynamo=logging.ERROR)


def explain(flow, x=None, context=None) -> dict:
    """``{"graphs", "breaks", "reasons": [(reason, "file:line"), ...]}`` for ``flow.log_prob``."""
    import torch._dynamo as dynamo

    _quiet_dynamo()
    if x is None:
        x, context = example_input(flow)
    flow.train()
    with torch.no_grad():
        flow.log_prob(x, context)  # data-dependent initialisation (actnorm) happens outside the trace
    flow.eval()
    dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dynamo.explain(flow.log_prob)(x, context)
    reasons = sorted({(b.reason.splitlines()[0][:120], _where(b)) for b in out.break_reasons})
    return {"graphs": out.graph_count, "breaks": out.graph_break_count, "reasons": reasons}


def compiled_speedup(impl: Impl, x, repeats: int = 5, block_s: float = 0.2, clock: str = "wall", bf16: bool = False,
                     backend: str = "inductor") -> dict:
    """Compiled / eager throughput of flowdsl's model (train step and eval log_prob), and its graph breaks.

    ``bf16``: both sides under bf16 autocast; ``backend``: torch.compile's (``eager`` traces only)."""
    import torch._dynamo as dynamo

    flow = impl.module
    _quiet_dynamo()
    t0 = time.perf_counter()
    speed, errors = {}, {}
    for op in ("log_prob", "train"):
        dynamo.reset()
        compiled = Impl("compiled", flow, torch.compile(flow.log_prob, backend=backend), None)
        try:
            res = measure([impl, compiled], x, x.shape[0], repeats=repeats, block_s=block_s, ops=(op,), warmup=2,
                          clock=clock, bf16=bf16)
        except Exception as err:  # noqa: BLE001 - e.g. double backward, which aot_autograd does not support
            speed[op], errors[op] = None, f"{type(err).__name__}: {str(err).splitlines()[0][:100]}"
            flow.eval()
            continue
        speed[op] = paired_ratio(res, "compiled", "flowdsl", op)
    wall = time.perf_counter() - t0
    breaks = None
    if x.device.type == "cpu":
        breaks = explain(flow, x)["breaks"]
    dynamo.reset()
    return {"speedup": speed, "breaks": breaks, "wall": wall, "errors": errors}


def compile_impl(impl: Impl, backend: str = "inductor") -> Impl:
    """``impl`` under ``torch.compile``, with torch's default options on both sides.

    flowdsl: a copy of the model in its ``torch_compile`` mode (what ``compile_file(..., torch_compile=True)``
    gives a user: the tensor paths compiled, the input checks eager), here with ``dynamic=None`` like the
    peer (a fixed batch is timed). A peer: its ``log_prob`` and ``sample`` functions compiled whole (the
    module is shared with the eager impl: the peers build their models inside closures)."""
    if impl.library == "flowdsl":
        from flowdsl.runtime.torch_compile import use_torch_compile

        model = use_torch_compile(copy.deepcopy(impl.module), backend=backend, dynamic=None)
        return Impl("flowdsl", model, model.log_prob, model.sample if impl.sample is not None else None)
    sample = torch.compile(impl.sample, backend=backend) if impl.sample is not None else None
    return Impl(impl.library, impl.module, torch.compile(impl.log_prob, backend=backend), sample)


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:100]}"


def compiled_pairings(impls, x, n_sample: int, repeats: int = 5, block_s: float = 0.2, clock: str = "wall",
                      bf16: bool = False, backend: str = "inductor", ops=("train", "log_prob", "sample")) -> dict:
    """Compiled flowdsl (``impls[0]``) against every compiled peer: ``{peer: {"ratio": {op: flowdsl/peer
    throughput}, "errors": {op: why none}}}``, plus ``"wall"`` (seconds, compilation included).

    Each operation is first run once per side on its own (compiling it), so that a peer which does not
    compile is named in ``errors`` and the others are still timed side by side."""
    import torch._dynamo as dynamo

    _quiet_dynamo()
    t0 = time.perf_counter()
    out: dict = {impl.library: {"ratio": {}, "errors": {}} for impl in impls[1:]}
    for op in ops:
        dynamo.reset()  # one code object (CompiledFlow._forward) per model: keep its cache to this case
        ready, failed = [], {}
        for impl in impls:
            try:
                compiled = compile_impl(impl, backend)
                measure([compiled], x, n_sample, repeats=1, block_s=0.0, ops=(op,), warmup=1, clock=clock, bf16=bf16)
                ready.append(compiled)
            except Exception as err:  # noqa: BLE001 - reported in the table (e.g. double backward, data-dependent flow)
                failed[impl.library] = _first_line(err)
                impl.module.eval()
        if "flowdsl" in failed:
            for peer in out:
                out[peer]["errors"][op] = "flowdsl: " + failed["flowdsl"]
            continue
        res = measure(ready, x, n_sample, repeats=repeats, block_s=block_s, ops=(op,), warmup=1, clock=clock,
                      bf16=bf16)
        for peer in out:
            if peer in failed:
                out[peer]["errors"][op] = failed[peer]
            elif res[peer].get(op) is None or res["flowdsl"].get(op) is None:
                out[peer]["errors"][op] = "no sampling" if res[peer].get(op) is None else "flowdsl: no sampling"
            else:
                out[peer]["ratio"][op] = paired_ratio(res, "flowdsl", peer, op)
    dynamo.reset()
    out["wall"] = time.perf_counter() - t0
    return out


def explain_specs(paths, log=print) -> list[tuple[str, dict]]:
    import flowdsl

    rows = []
    for path in paths:
        path = Path(path)
        models = flowdsl.model_names(path)
        for model in models:
            try:
                flow = flowdsl.compile_file(path, model)
                info = explain(flow)
            except Exception as err:  # noqa: BLE001 - reported in the table
                info = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"}
            name = str(path.relative_to(ROOT)) if path.is_absolute() and ROOT in path.parents else str(path)
            name += f" ({model})" if len(models) > 1 else ""
            rows.append((name, info))
            log(f"{name}: " + (info["error"] if "error" in info else
                               f"{info['graphs']} graph(s), {info['breaks']} break(s)"
                               + "".join(f"\n    {r} @ {w}" for r, w in info["reasons"])))
    return rows


def render_explain(rows) -> str:
    out = ["| spec | graphs | breaks | reasons (file:line) |", "| --- | ---: | ---: | --- |"]
    for name, info in rows:
        if "error" in info:
            out.append(f"| {name} | | | {info['error']} |")
            continue
        reasons = "<br>".join(f"{r.replace('|', '/')} @ `{w}`" for r, w in info["reasons"]) or "none"
        out.append(f"| {name} | {info['graphs']} | {info['breaks']} | {reasons} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compiled", description=__doc__.splitlines()[0])
    p.add_argument("--specs", nargs="*", help="flow specs (default: specs/*.flow and benchmarks/specs/*.flow)")
    p.add_argument("--ar", action="store_true", help="every bundled spec: also the autoregressive ones "
                   "(specs/*.ar), specs/conditional/ and specs/paper/ (texture, a sampler, has no log_prob)")
    p.add_argument("--doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    paths = args.specs or (sorted((ROOT / "specs").glob("*.flow"))
                           + sorted((ROOT / "benchmarks" / "specs").glob("*.flow")))
    if args.ar and not args.specs:
        paths = (sorted((ROOT / "specs").glob("*.flow")) + sorted((ROOT / "specs").glob("*.ar"))
                 + sorted((ROOT / "specs" / "conditional").glob("*.*"))
                 + sorted((ROOT / "specs" / "paper").glob("*.*"))
                 + sorted((ROOT / "benchmarks" / "specs").glob("*.flow")))
        paths = [p for p in paths if p.name != "texture.ar"]
    rows = explain_specs(paths)
    table = render_explain(rows)
    print(table)
    if args.doc:
        from .run import write_doc

        write_doc(table, "graph-breaks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
