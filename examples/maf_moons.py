"""MAF (specs/maf.flow, its input made 2-D) on the two-moons density: samples over the data, the learned density.

    python examples/maf_moons.py                      # about a minute on two CPU cores
    python examples/maf_moons.py --data pinwheel      # any 2-D toy: moons circles checkerboard
                                                      # 8gaussians pinwheel spirals

Writes into --out: maf_2d.flow (the derived spec), maf.pt, density.png (samples + heat map), interpolation.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import flowdsl
from flowdsl.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--data", default="moons")
    p.add_argument("--out", default=str(ROOT / "examples" / "out" / "maf_moons"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "specs" / "maf.flow").read_text()
    spec = out / "maf_2d.flow"
    spec.write_text(text.replace("input x: vector[6]", "input x: vector[2]").replace("flow maf ", "flow maf_2d "))
    ckpt = out / "maf.pt"
    result = flowdsl.train(spec, args.data, steps=args.steps, batch=256, lr=1e-3, output=ckpt, progress=None)
    print(f"MAF on {args.data} after {result.step} steps: {result.evaluation['nats']:.3f} nats (test)")
    main(["sample", str(ckpt), "-n", "2000", "-o", str(out / "density.png")])
    main(["interpolate", str(ckpt), "--steps", "12", "-o", str(out / "interpolation.png")])
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
