"""Entry point: ``python -m benchmarks.run [--device cuda] [--quick] [--compile] [--bf16] [--only KEY...]``.

Prints, for every pairing of :mod:`benchmarks.cases`, the parameter counts of both sides, the
median throughput of a training step, of ``log_prob`` in evaluation and of sampling, the
flowdsl/peer ratios and the peak memory of a training step; then the front end's timings
(:mod:`benchmarks.compile_time`, skipped by ``--quick``) and, with ``--compile``, torch.compile's
speed-up on each flowdsl model (:mod:`benchmarks.compiled`). ``--doc`` writes the tables into
``docs/benchmarks.md`` between its ``<!-- results -->`` markers; ``--markdown FILE`` appends them to FILE
(``benchmarks/gpu.sh`` collects the device's tables so). Peers that are not installed
(``pip install -e .[bench]``) are listed as missing; the flowdsl half always runs.

Example (the quick smoke test CI runs, flowdsl only):
    >>> rows = run_cases(["planar"], quick=True, peers=False)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from .cases import CASES, build_peer, flowdsl_impl
from .harness import OPS, fmt_bytes, fmt_rate, measure, paired_ratio, param_count, peak_memory, perturb

__all__ = ["main", "run_cases", "machine", "render_cases"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    from importlib import metadata

    for lib in ("zuko", "nflows", "normflows"):
        try:
            info[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[lib] = "not installed"
    return info


def _load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def default_clock(device) -> str:
    """This thread's CPU time on a CPU with one torch thread, wall-clock time otherwise."""
    return "cpu" if torch.device(device).type == "cpu" and torch.get_num_threads() == 1 else "wall"


def run_cases(keys=None, device="cpu", quick=False, peers=True, repeats=None, block_s=None, bf16=False,
              compile_=False, clock=None, log=print, backend="inductor") -> list[dict]:
    """Measure each selected pairing; one dict per case (see :func:`render_cases`)."""
    device = torch.device(device)
    repeats = repeats or (2 if quick else 11)
    block_s = block_s or (0.005 if quick else 0.15)
    clock = clock or default_clock(device)
    rows = []
    for case in CASES:
        if keys and case.key not in keys:
            continue
        batch = case.quick_batch if quick else case.batch
        gen = torch.Generator().manual_seed(1)
        x = torch.randn((batch, *case.shape), generator=gen).to(device)
        torch.manual_seed(0)
        impls = [flowdsl_impl(case, device)]
        missing = []
        for builder in case.peers if peers else ():
            torch.manual_seed(0)
            impl = build_peer(builder, device)
            if impl is None:
                missing.append(builder.__name__.split("_")[0])
            else:
                impls.append(impl)
        for i, impl in enumerate(impls):
            perturb(impl.module, 0.05, seed=i)
        start = time.perf_counter()
        timings = measure(impls, x, batch, repeats=repeats, block_s=block_s, bf16=bf16,
                          warmup=1 if quick else 3, clock=clock)
        memory = {impl.library: peak_memory(impl, x, bf16) for impl in impls} if not quick else {}
        row = {"case": case, "batch": batch, "clock": clock, "impls": impls, "missing": missing, "timings": timings,
               "memory": memory, "params": {impl.library: param_count(impl.module) for impl in impls}}
        if compile_:
            from .compiled import compiled_pairings, compiled_speedup

            row["compiled"] = compiled_speedup(impls[0], x, repeats=repeats, block_s=block_s, clock=clock, bf16=bf16,
                                               backend=backend)
            if len(impls) > 1:
                row["compiled_pairs"] = compiled_pairings(impls, x, batch, repeats=repeats, block_s=block_s,
                                                          clock=clock, bf16=bf16, backend=backend)
        rows.append(row)
        log(_console(row) + f"   ({time.perf_counter() - start:.1f} s)")
    return rows


def _rate(row, lib, op):
    t = row["timings"][lib].get(op)
    return None if t is None else row["batch"] / t


def _console(row) -> str:
    case = row["case"]
    lines = [f"{case.key}: {case.title}"]
    for impl in row["impls"]:
        lib = impl.library
        rates = "  ".join(f"{op} {fmt_rate(_rate(row, lib, op)):>7}" for op in OPS)
        ratio = ""
        if lib != "flowdsl":
            ratio = "  ratio " + " ".join(_ratio(row, lib, op) for op in OPS)
        mem = f"  peak {fmt_bytes(row['memory'][lib])}" if row["memory"] else ""
        lines.append(f"  {lib:>9}: {row['params'][lib]:>7,} params  {rates}{mem}{ratio}")
    if row["missing"]:
        lines.append(f"  not installed: {', '.join(row['missing'])}")
    if "compiled" in row:
        c = row["compiled"]
        lines.append("  torch.compile (flowdsl): " + ", ".join(_speed(c, k) for k in c["speedup"])
                     + (f"; graph breaks: {c['breaks']}" if c.get("breaks") is not None else ""))
    for peer, c in row.get("compiled_pairs", {}).items():
        if peer != "wall":
            lines.append(f"  compiled vs compiled {peer}: " + ", ".join(
                f"{op} {c['ratio'][op]:.2f}" if c["ratio"].get(op) is not None else f"{op}: {c['errors'].get(op)}"
                for op in OPS))
    return "\n".join(lines)


def _speed(c: dict, op: str) -> str:
    v = c["speedup"].get(op)
    return f"{op} x{v:.2f}" if v is not None else f"{op}: {c.get('errors', {}).get(op, 'n/a')}"


def _ratio(row, lib, op) -> str:
    r = paired_ratio(row["timings"], "flowdsl", lib, op)
    return "n/a" if r is None else f"{r:.2f}"


_CLOCK_WORDS = {"cpu": "CPU time (this thread's: time the shared machine gave to other processes is not charged)",
                "wall": "wall-clock time"}


def render_cases(rows, info: dict, load_before: str, load_after: str, args_line: str) -> str:
    """The markdown tables (machine, pairings, optional torch.compile column)."""
    out = [f"Command: `{args_line}`", "",
           f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch thread(s), device {info['device']}"
           + (f" ({info['gpu']})" if "gpu" in info else "")
           + f"; torch {info['torch']}, Python {info['python']}; zuko {info['zuko']}, nflows {info['nflows']}, "
           f"normflows {info['normflows']}. Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
           "",
           f"Throughput in examples (samples) per second of {_CLOCK_WORDS[rows[0]['clock'] if rows else 'wall']}, "
           "median of the rounds; ratio = flowdsl / peer throughput, the median over rounds of the ratio of two "
           "blocks timed back to back (> 1: flowdsl faster). Peak = tensor memory allocated by one training step "
           "above what was held before it.",
           "",
           "| pairing | library | params | train | log_prob | sample | train ratio | log_prob ratio | sample ratio "
           "| train peak |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        case = row["case"]
        for impl in row["impls"]:
            lib = impl.library
            rates = " | ".join(fmt_rate(_rate(row, lib, op)) for op in OPS)
            ratios = " | ".join("" if lib == "flowdsl" else _ratio(row, lib, op) for op in OPS)
            mem = fmt_bytes(row["memory"].get(lib)) if row["memory"] else "n/a"
            out.append(f"| {case.key if lib == 'flowdsl' else ''} | {lib} | {row['params'][lib]:,} | {rates} | "
                       f"{ratios} | {mem} |")
        for lib in row["missing"]:
            out.append(f"| | {lib} | not installed | | | | | | | |")
    out += ["", "Pairings (batch: vectors 512, Glow 64; the same for sampling):", ""]
    for row in rows:
        case = row["case"]
        notes = "; ".join(n for n in [case.note] + [i.note for i in row["impls"] if i.note] if n)
        out.append(f"- **{case.key}** (`benchmarks/specs/{case.spec}`): {case.title}"
                   + (f". {notes}." if notes else "."))
    if any("compiled" in r for r in rows):
        out += ["", "torch.compile (flowdsl models, default mode): speed of the compiled model / eager, same "
                "harness; graph breaks counted by `torch._dynamo.explain` on `log_prob`.", "",
                "| model | train compiled/eager | log_prob compiled/eager | graph breaks |",
                "| --- | ---: | ---: | ---: |"]
        for row in rows:
            c = row.get("compiled")
            if c:
                cells = [f"{c['speedup'][op]:.2f}" if c["speedup"].get(op) is not None
                         else c.get("errors", {}).get(op, "n/a") for op in ("train", "log_prob")]
                out.append(f"| {row['case'].key} | {cells[0]} | {cells[1]} | {c.get('breaks', 'n/a')} |")
    if any("compiled_pairs" in r for r in rows):
        out += ["", "Compiled against compiled (issue 16, item 4): flowdsl in its `torch_compile` mode, the peer's "
                "`log_prob` and `sample` under `torch.compile`, torch's default options on both sides; ratio = "
                "flowdsl / peer throughput, paired by round (> 1: flowdsl faster).", "",
                "| pairing | peer | train ratio | log_prob ratio | sample ratio |",
                "| --- | --- | ---: | ---: | ---: |"]
        for row in rows:
            for peer, c in row.get("compiled_pairs", {}).items():
                if peer == "wall":
                    continue
                cells = [f"{c['ratio'][op]:.2f}" if c["ratio"].get(op) is not None
                         else c["errors"].get(op, "n/a").replace("|", "/") for op in OPS]
                out.append(f"| {row['case'].key} | {peer} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def write_doc(block: str, name: str, path: Path = DOC) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the doc."""
    from .markdown_blocks import replace_block

    replace_block(path, f"<!-- {name}:start -->", f"<!-- {name}:end -->", block)


def main(argv=None) -> int:
    from flowdsl.runtime.input_checks import value_checks

    with value_checks(False):  # like for like: the peers validate no input values (and a check is a GPU sync)
        return _main(argv)


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--quick", action="store_true", help="tiny batches, two repeats, no memory or front-end timing")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd flowdsl models, "
                   "alone and against the compiled peers (slow: minutes of compilation per pairing)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of --compile (default "
                   "inductor; eager: trace only, the CPU dry run of benchmarks/gpu.sh)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="append the tables to FILE")
    p.add_argument("--only", nargs="*", help="pairings to run: " + " ".join(c.key for c in CASES))
    p.add_argument("--no-peers", action="store_true", help="flowdsl half only")
    p.add_argument("--repeats", type=int, help="timed rounds per operation (default 7; --quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: stable on a shared machine)")
    p.add_argument("--clock", choices=("cpu", "wall"), help="cpu: this thread's CPU time (default on a CPU with one "
                   "thread); wall: wall-clock time (default otherwise)")
    p.add_argument("--frontend", action=argparse.BooleanOptionalAction, default=None,
                   help="time parse/check/build of the specs (default: on unless --quick)")
    p.add_argument("--doc", action="store_true", help=f"write the tables into {DOC.relative_to(ROOT)}")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    info = machine(device)
    load_before = _load()
    print(f"{info['cpu']}; torch {info['torch']} ({info['threads']} threads); device {device}; load {load_before}")
    rows = run_cases(args.only, device, args.quick, not args.no_peers, args.repeats, bf16=args.bf16,
                     compile_=args.compile, clock=args.clock, backend=args.compile_backend)
    load_after = _load()
    line = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.doc:
        write_doc(render_cases(rows, info, load_before, load_after, line.strip()), "results")
    if args.markdown:
        with open(args.markdown, "a") as out:
            out.write(render_cases(rows, info, load_before, load_after, line.strip()) + "\n\n")
    frontend = (not args.quick) if args.frontend is None else args.frontend
    if frontend:
        from .compile_time import render_frontend, run_frontend

        result = run_frontend(quick=args.quick, log=print)
        if args.doc:
            write_doc(render_frontend(result), "frontend")
    if args.doc:
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
