"""Front-end timings: parse, check and build of every bundled spec, and their growth with depth.

    python -m benchmarks.compile_time [--quick]

- every spec in ``specs/``: parse (text -> AST, ``use``/``let``/blocks), check (expand, IR with
  every layer's rule, model checks) and build (torch modules), milliseconds, best of three;
- scaling: ``repeat N { coupling affine(...) ; permute(reverse) }`` for N = 10, 100, 1000
  (2N layers), and ``flowdsl check`` / ``flowdsl compile`` on the 1000-step spec as processes;
- the causality analysis (exact dependency sets, blind spots, receptive field) of a 20-layer
  gated PixelCNN on 8x8, 32x32 and 64x64 images.

Goals (issue 9): linear growth; check of the 1000-step spec under 1 s; causality of the 64x64
model under 2 s.

Example:
    >>> t = stage_times(deep_spec(10), "deep.flow", build=False)
    >>> sorted(t), t["layers"]
    (['check', 'layers', 'parse'], 20)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["deep_spec", "gated_spec", "stage_times", "causality_time", "run_frontend", "render_frontend", "main"]

ROOT = Path(__file__).resolve().parent.parent


def deep_spec(n: int) -> str:
    """A flow of ``n`` coupling steps (``2 n`` layers) on 8 features."""
    return ("flow deep {\n    input x: vector[8]\n    base normal\n"
            f"    repeat {n} {{\n        coupling affine(mask=half, net=mlp([16]))\n"
            "        permute(reverse)\n    }\n}\n")


def gated_spec(size: int, layers: int = 20) -> str:
    """A gated PixelCNN of ``layers`` gated blocks on ``size x size`` 8-bit images."""
    return (f"autoregressive gated {{\n    input x: image[1, {size}, {size}] levels 256\n"
            "    gated_block(mask=A, kernel=7, channels=32)\n"
            f"    repeat {layers - 1} {{ gated_block(kernel=3, channels=32) }}\n"
            "    relu -> conv1x1(64)\n    output categorical\n}\n")


def _stages(text: str | None, path: Path | None, filename: str, build: bool) -> dict:
    from flowdsl.analysis.analyze import analyze_unit
    from flowdsl.language.loader import load_file, load_source

    t0 = time.perf_counter()
    unit = load_file(path) if path is not None else load_source(text, filename)
    t1 = time.perf_counter()
    analysis = analyze_unit(unit)  # expand + IR + model checks: what `flowdsl check` runs
    t2 = time.perf_counter()
    if not analysis.ok:
        raise RuntimeError(f"{filename}: {analysis.diagnostics[0]}")
    out = {"parse": t1 - t0, "check": t2 - t1,
           "layers": sum(len(ir.layers) for ir in analysis.models.values())}
    if build:
        from flowdsl.runtime.compiler import compile_model

        t3 = time.perf_counter()
        for ir in analysis.models.values():
            compile_model(ir, analysis.unit)
        out["build"] = time.perf_counter() - t3
    return out


def stage_times(text: str | None = None, filename: str = "<string>", path: Path | None = None, build: bool = True,
                best_of: int = 1) -> dict:
    """Seconds spent in each stage (the best of ``best_of`` runs) and the layer count."""
    runs = [_stages(text, path, filename, build) for _ in range(best_of)]
    return {k: (min(r[k] for r in runs) if k != "layers" else runs[0][k]) for k in runs[0]}


def causality_time(size: int, layers: int = 20) -> tuple[float, float]:
    """(whole check, causality analysis alone) in seconds for the gated PixelCNN on ``size x size``."""
    import flowdsl
    from flowdsl.analysis import causality

    t0 = time.perf_counter()
    analysis = flowdsl.analyze_source(gated_spec(size, layers), "gated.ar")
    total = time.perf_counter() - t0
    ir = analysis.model()
    ir.cache.pop("causality", None)  # the analysis caches itself on the IR: time it afresh
    t1 = time.perf_counter()
    causality.analyze(ir)
    return total, time.perf_counter() - t1


def _cli(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowdsl", *args], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def run_frontend(quick: bool = False, log=print) -> dict:
    """Every measurement of the module docstring (``quick``: fewer sizes, no subprocesses)."""
    best = 1 if quick else 3
    result: dict = {"specs": [], "deep": [], "gated": [], "cli": {}}
    specs = sorted((ROOT / "specs").glob("*.flow")) + sorted((ROOT / "specs").glob("*.ar"))
    _stages(deep_spec(2), None, "warm.flow", True)  # imports and registry warm-up are not charged
    for path in specs[:3] if quick else specs:
        try:
            t = stage_times(path=path, filename=path.name, best_of=best)
        except Exception as err:  # noqa: BLE001 - a spec that does not compile is reported, not fatal
            t = {"error": str(err).splitlines()[0][:120]}
        result["specs"].append((path.name, t))
    for n in (10, 100) if quick else (10, 100, 1000):
        result["deep"].append((n, stage_times(deep_spec(n), "deep.flow", best_of=best)))
    for size in (8,) if quick else (8, 32, 64):
        runs = [causality_time(size) for _ in range(best)]
        result["gated"].append((size, min(r[0] for r in runs), min(r[1] for r in runs)))
    if not quick:
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "deep1000.flow"
            spec.write_text(deep_spec(1000))
            result["cli"]["check"] = min(_cli(["check", str(spec)]) for _ in range(best))
            result["cli"]["compile"] = min(_cli(["compile", str(spec)]) for _ in range(best))
            result["cli"]["import"] = min(_time_python() for _ in range(best))
    log(render_frontend(result))
    return result


def _time_python() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flowdsl"], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


_CLI_LABEL = {"import": "python -c 'import flowdsl'"}


def _ms(v) -> str:
    return "" if v is None else f"{v * 1000:.1f}"


def render_frontend(result: dict) -> str:
    out = ["Front end (best of 3, milliseconds; check = expand + IR + every model check, what `flowdsl check` "
           "runs after parsing; build = torch modules):", "",
           "| spec | layers | parse | check | build |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, t in result["specs"]:
        if "error" in t:
            out.append(f"| {name} | | | | {t['error']} |")
        else:
            out.append(f"| {name} | {t['layers']} | {_ms(t['parse'])} | {_ms(t['check'])} | {_ms(t.get('build'))} |")
    out += ["", "Depth scaling (`repeat N { coupling affine(mask=half, net=mlp([16])); permute(reverse) }`):", "",
            "| N | layers | parse | check | build | check per layer |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, t in result["deep"]:
        out.append(f"| {n} | {t['layers']} | {_ms(t['parse'])} | {_ms(t['check'])} | {_ms(t['build'])} | "
                   f"{t['check'] / t['layers'] * 1e6:.0f} us |")
    out += ["", "Causality analysis of a 20-layer gated PixelCNN (`gated_block`, 32 channels):", "",
            "| image | whole check (ms) | causality analysis (ms) |", "| --- | ---: | ---: |"]
    for size, total, caus in result["gated"]:
        out.append(f"| {size}x{size} | {_ms(total)} | {_ms(caus)} |")
    if result["cli"]:
        out += ["", "Whole processes on the 1000-step spec (2000 layers), seconds, interpreter start included: "
                + ", ".join(f"`{_CLI_LABEL.get(k, 'flowdsl ' + k)}` {v:.2f}" for k, v in result["cli"].items()) + "."]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_time", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    run_frontend(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
