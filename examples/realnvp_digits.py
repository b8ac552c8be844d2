"""RealNVP (specs/realnvp.flow) on scikit-learn's 8x8 digits: train, score, sample, interpolate, draw the IR.

    python examples/realnvp_digits.py                 # a few minutes on two CPU cores
    python examples/realnvp_digits.py --steps 50      # a quick look

Writes into --out: realnvp.pt (checkpoint), samples.png, interpolation.png, realnvp.svg (the IR).
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
    p.add_argument("--out", default=str(ROOT / "examples" / "out" / "realnvp_digits"))
    args = p.parse_args(argv)
    out = Path(args.out)
    spec, ckpt = ROOT / "specs" / "realnvp.flow", out / "realnvp.pt"
    result = flowdsl.train(spec, "digits", steps=args.steps, batch=64, lr=1e-3, output=ckpt, progress=None)
    print(f"RealNVP on digits after {result.step} steps: {result.evaluation['bits_per_dim']:.3f} bits/dim (test)")
    main(["sample", str(ckpt), "-n", "64", "-o", str(out / "samples.png")])
    main(["interpolate", str(ckpt), "--index", "0", "1", "--steps", "10", "-o", str(out / "interpolation.png")])
    main(["graph", str(spec), "-o", str(out / "realnvp.svg")])
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
