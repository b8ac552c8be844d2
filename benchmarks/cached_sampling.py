"""Cached vs naive ancestral sampling, in one run: the WaveNet acceptance spec, a gated PixelCNN on 28x28
and the binarized-MNIST FVBN, NADE and MADE of specs/paper/.

    python -m benchmarks.cached_sampling            # a few minutes on 2 CPU cores
    python -m benchmarks.cached_sampling --doc      # also writes docs/benchmarks_sampling.md
    python -m benchmarks.cached_sampling --device cuda --markdown out.md   # on a GPU; tables appended to out.md
    python -m benchmarks.cached_sampling --quick    # WaveNet at length 512, the gated PixelCNN on 12x12: seconds
    python -m benchmarks.cached_sampling --only vector   # the FVBN, NADE and MADE rows only

- cached: ``model.sample(n)`` (:mod:`flowdsl.runtime.ar_cache`: per-layer queues for the dilated
  convolutions, row caches for the gated blocks), every step timed;
- naive: the reference ``sample(n, cached=False)``, which runs the whole network for each
  position. Its cost per step does not depend on the position, so it is measured on a prefix
  and on a suffix of the sequence (the other positions are given as known, which the naive loop
  skips without a forward pass) and extrapolated to the whole sequence.

Printed: the cost per step at the start and at the end of the sequence for both, the total
times (naive: extrapolated) and the ratio. Goals (issue 6): >= 20x for WaveNet at length 4096
(the Fast WaveNet paper's figure), >= 10x for the gated PixelCNN; the cached cost per step must
not grow along the sequence.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import flowdsl  # noqa: E402
from flowdsl.runtime import ar_cache  # noqa: E402

__all__ = ["Clock", "bench", "main"]

GATED_28 = """autoregressive gated_pixelcnn_28 {
    input x: image[1, SIZE, SIZE] levels 256
    gated_block(mask=A, kernel=7, channels=32)
    repeat 5 { gated_block(kernel=3, channels=32) }
    relu -> conv1x1(64)
    output categorical
}
"""


#: the row groups (``--only``)
FAMILIES = ("wavenet", "gated", "vector")
#: the per-position-weight families at the papers' sizes (784 binary pixels)
VECTOR_SPECS = ("specs/paper/fvbn.ar", "specs/paper/nade.ar", "specs/paper/made.ar")


class Clock:
    """A progress bar stand-in that time-stamps every step of a sampling loop (on CUDA after a synchronisation,
    so that a step's time is its kernels' and not their launch)."""

    def __init__(self, device="cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self._sync()
        self.stamps = [time.perf_counter()]

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def update(self, n: int = 1) -> None:
        self._sync()
        self.stamps.append(time.perf_counter())

    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def _naive(model, x, known, positions, threads: int):
    """Seconds per step of the naive loop over ``positions`` (the others are known: skipped)."""
    known = known.clone().reshape(x.shape[0], -1)
    known[:] = True
    known[:, positions] = False
    clock = Clock(x.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            model._fill(x, known.reshape(x.shape), None, 0, clock, cached=False)
    finally:
        torch.set_num_threads(before)
    steps = clock.steps()
    return [steps[p] for p in positions]


def bench(name: str, model, batch: int, window: int, naive_steps: int, threads: int = 1, device="cpu") -> dict:
    model.to(device).eval()
    n = model.size
    x = torch.zeros((batch, *model.input_shape), dtype=torch.long, device=device)
    known = torch.zeros_like(x, dtype=torch.bool)
    clock = Clock(device)
    torch.manual_seed(0)
    start = time.perf_counter()
    ar_cache.fill(model, x, known, None, bar=clock)
    cached_total = time.perf_counter() - start
    steps = clock.steps()
    naive_start = _naive(model, x, known, list(range(naive_steps)), threads)
    naive_end = _naive(model, x, known, list(range(n - naive_steps, n)), threads)
    naive_step = statistics.mean(naive_start + naive_end)
    return {
        "name": name, "batch": batch, "positions": n, "params": sum(p.numel() for p in model.parameters()),
        "cached_start": statistics.median(steps[:window]), "cached_end": statistics.median(steps[-window:]),
        "windows": [statistics.median(steps[i: i + window]) for i in range(0, len(steps) - window + 1, window)],
        "window": window,
        "cached_total": cached_total, "naive_start": statistics.median(naive_start),
        "naive_end": statistics.median(naive_end), "naive_total": naive_step * n, "naive_measured": 2 * naive_steps,
        "ratio": naive_step * n / cached_total, "threads": threads, "device": str(device),
    }


def _ms(s: float) -> str:
    return f"{1000 * s:.2f} ms"


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def render(rows: list[dict], command: str) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    lines = [
        "# Cached vs naive sampling", "",
        f"Command: `{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, device "
        f"{_device_name(rows[0].get('device', 'cpu'))}, torch "
        f"{torch.__version__}; {rows[0]['threads']} intra-op thread{'s' if rows[0]['threads'] != 1 else ''} for the "
        f"naive reference, one for the cached driver; load average "
        f"{', '.join(f'{v:.1f}' for v in load)} (a shared machine).", "",
        "| model | batch | positions | parameters | cached / step, start | cached / step, end | cached total "
        "| naive / step, start | naive / step, end | naive total (extrapolated) | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['batch']} | {r['positions']} | {r['params']:,} | {_ms(r['cached_start'])} | "
            f"{_ms(r['cached_end'])} | {r['cached_total']:.1f} s | {_ms(r['naive_start'])} | {_ms(r['naive_end'])} | "
            f"{r['naive_total']:.0f} s | **{r['ratio']:.0f}x** |")
    lines += ["", "Cached: every step of a full `sample` timed; start and end are medians over the first and last "
              "steps. Naive: the reference loop (`sample(n, cached=False)`) measured on the first and the last "
              f"{rows[0]['naive_measured'] // 2} positions (its cost per step is a whole forward pass, the same at "
              "every position) and extrapolated to the whole sequence. Speed-up: naive total / cached total.", ""]
    for r in rows:
        lines.append(f"- {r['name']}: medians of the cached cost per step over consecutive {r['window']}-step windows, "
                     f"in order: {', '.join(f'{1000 * w:.1f}' for w in r['windows'])} ms.")
    if torch.device(rows[0].get("device", "cpu")).type == "cpu":
        lines += ["", "The machine is shared (2 cores, several other jobs): the cached cost per step moves with the "
                  "load over time, not with the position; the windows above show no growth along the sequence.", ""]
    else:
        lines += ["", "On CUDA every step is timed after a synchronisation (its kernels, not their launch).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--naive-steps", type=int, default=4, help="naive steps timed at the start and at the end")
    p.add_argument("--naive-threads", type=int, default=1, help="intra-op threads of the naive reference")
    p.add_argument("--doc", action="store_true", help="write docs/benchmarks_sampling.md")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--quick", action="store_true", help="WaveNet at length 512 and the gated PixelCNN on 12x12")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="append the table to FILE")
    p.add_argument("--only", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="some rows only")
    args = p.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    length, size = (512, 12) if args.quick else (4096, 28)
    rows = []
    if "wavenet" in args.only:
        wavenet_text = (ROOT / "specs" / "wavenet.ar").read_text()
        wavenet = flowdsl.compile_source(wavenet_text.replace("sequence[4096]", f"sequence[{length}]"),
                                         filename=str(ROOT / "specs" / "wavenet.ar"))
        rows.append(bench(f"WaveNet (specs/wavenet.ar), length {length}", wavenet, args.batch, min(256, length // 4),
                          args.naive_steps, args.naive_threads, args.device))
        print(render(rows, "python -m benchmarks.cached_sampling"), flush=True)
    if "gated" in args.only:
        gated = flowdsl.compile_source(GATED_28.replace("SIZE", str(size)), filename="gated_28.ar")
        rows.append(bench(f"gated PixelCNN, {size}x{size}, 6 gated blocks of 32", gated, args.batch, size,
                          args.naive_steps, args.naive_threads, args.device))
    if "vector" in args.only:
        for spec in VECTOR_SPECS:
            model = flowdsl.compile_file(ROOT / spec)
            rows.append(bench(spec, model, args.batch, 49, args.naive_steps, args.naive_threads, args.device))
    command = "python -m benchmarks.cached_sampling" + (f" --batch {args.batch}" if args.batch != 1 else "") + \
        (f" --naive-threads {args.naive_threads}" if args.naive_threads != 1 else "") + \
        (" --doc" if args.doc else "") + (f" --device {args.device}" if args.device != "cpu" else "") + \
        (" --quick" if args.quick else "") + \
        (f" --only {' '.join(args.only)}" if args.only != list(FAMILIES) else "")
    text = render(rows, command)
    print(text)
    if args.doc:
        (ROOT / "docs" / "benchmarks_sampling.md").write_text(text)
    if args.markdown:
        with open(args.markdown, "a") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
