"""WaveNet (specs/wavenet.ar, shortened to 512 samples) on synthetic mu-law waveforms: samples as WAV and plot.

    python examples/wavenet_waveform.py --device cuda # 30 gated residual layers: slow on a CPU (tens of minutes)
    python examples/wavenet_waveform.py --steps 5 --length 256   # a quick look

Needs specs/wavenet.ar and its layers (causal_conv, gated_residual); without them the script says
so and exits with status 2. Writes into --out: wavenet_short.ar, wavenet.pt, samples.wav
(mu-law decoded, 16 kHz), samples.png, completion.wav (the second half of a test waveform re-generated).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flowdsl
from flowdsl.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default=str(ROOT / "examples" / "out" / "wavenet_waveform"))
    args = p.parse_args(argv)
    source = ROOT / "specs" / "wavenet.ar"
    if not source.is_file():
        print("this example needs specs/wavenet.ar and the WaveNet layers (causal_conv, gated_residual), "
              "which have not landed yet", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "wavenet_short.ar"
    spec.write_text(source.read_text().replace("sequence[4096]", f"sequence[{args.length}]"))
    try:
        flowdsl.compile_file(spec)
    except flowdsl.FlowDSLError as err:
        print(f"specs/wavenet.ar does not compile yet:\n{err}", file=sys.stderr)
        return 2
    ckpt = out / "wavenet.pt"
    result = flowdsl.train(spec, "waveform", steps=args.steps, batch=8, lr=1e-3, output=ckpt, device=args.device,
                           progress=None)
    print(f"WaveNet on waveforms after {result.step} steps: {result.evaluation['bits_per_dim']:.3f} bits/sample (test)")
    device = ["--device", args.device] if args.device else []
    main(["sample", str(ckpt), "-n", "2", "-o", str(out / "samples.wav"), *device])
    main(["sample", str(ckpt), "-n", "2", "-o", str(out / "samples.png"), *device])
    main(["complete", str(ckpt), "--input", "waveform:0", "--mask", "right", "-n", "1",
          "-o", str(out / "completion.wav"), *device])
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
