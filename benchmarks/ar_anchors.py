"""flowdsl's autoregressive models against plain-PyTorch ones of the same size: training, density, sampling.

The anchors are :mod:`benchmarks.reference_models` (written from the papers, sharing no code with
flowdsl) at the sizes of ``specs/paper/``: FVBN, NADE with 500 hidden units and MADE 1x500 on 784
binary pixels, batch 100 (sampling: 16 digits). Their samplers are the ones the papers' code uses:
MADE runs the whole network once per pixel (Germain et al.'s code, karpathy/pytorch-made), NADE and
FVBN carry their running sums (O(D H) and O(D^2) a sample, as Larochelle & Murray's NADE does).
flowdsl: ``compile_file(spec)`` and its ``log_prob`` / ``sample`` (the cached driver). The plain
models take float pixels: the cast of the integer batch is part of their timed call.

    OMP_NUM_THREADS=1 python -m benchmarks.ar_anchors              # a few minutes
    OMP_NUM_THREADS=1 python -m benchmarks.ar_anchors --quick      # seconds (16 pixels)

Example:
    >>> rows = run(d=16, hidden=8, batch=8, n_sample=2, repeats=1, block_s=0.001)
    >>> sorted(rows)
    ['fvbn', 'made', 'nade']
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
from torch import nn

import flowdsl

from .harness import Impl, measure, paired_ratio
from .reference_models import PlainFVBN, PlainMADE, PlainNADE

__all__ = ["run", "render", "main"]

LAYERS = {"fvbn": "fvbn", "nade": "nade(hidden={h})", "made": "made([{h}], masks=1, order=natural)"}


def _spec(name: str, d: int, hidden: int) -> str:
    layer = LAYERS[name].format(h=hidden)
    return f"autoregressive {name} {{\n input x: vector[{d}] levels 2\n {layer}\n output bernoulli\n}}\n"


@torch.no_grad()
def _sample_plain(name: str, model: nn.Module, n: int, d: int) -> torch.Tensor:
    x = torch.zeros(n, d)
    if name == "made":  # the whole network once per pixel
        for i in range(d):
            h = x
            for k, layer in enumerate(model.layers):
                h = torch.nn.functional.linear(h, layer.weight * getattr(model, f"mask{k}"), layer.bias)
                if k < len(model.layers) - 1:
                    h = torch.relu(h)
            x[:, i] = torch.bernoulli(torch.sigmoid(h[:, i]))
        return x
    if name == "nade":  # the running hidden pre-activation
        a = model.c.expand(n, -1).clone()
        for i in range(d):
            p = torch.sigmoid(torch.sigmoid(a) @ model.V[i] + model.b[i])
            x[:, i] = torch.bernoulli(p)
            a += x[:, i:i + 1] * model.W[i]
        return x
    w = model.linear.weight * model.mask  # fvbn: the running logits of every later pixel
    logits = model.linear.bias.expand(n, -1).clone()
    for i in range(d):
        x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]))
        logits += x[:, i:i + 1] * w[:, i]
    return x


def _plain(name: str, d: int, hidden: int) -> nn.Module:
    return {"fvbn": lambda: PlainFVBN(d), "nade": lambda: PlainNADE(d, hidden),
            "made": lambda: PlainMADE(d, [hidden])}[name]()


def run(d: int = 784, hidden: int = 500, batch: int = 100, n_sample: int = 16, repeats: int = 5,
        block_s: float = 0.2) -> dict:
    """``{family: {"flowdsl": {op: s}, "plain": {op: s}, "ratio": {op: plain time / flowdsl time}}}``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, d), 0.13)).long()
    out = {}
    for name in LAYERS:
        ours = flowdsl.compile_source(_spec(name, d, hidden), filename=f"{name}.ar")
        plain = _plain(name, d, hidden)
        impls = [Impl("flowdsl", ours, ours.log_prob, ours.sample),
                 Impl("plain", plain, lambda v, m=plain: m(v.float()),
                      lambda n, m=plain, k=name: _sample_plain(k, m, n, d))]
        res = measure(impls, x, n_sample, repeats=repeats, block_s=block_s, clock="cpu")
        out[name] = {"flowdsl": res["flowdsl"], "plain": res["plain"],
                     "ratio": {op: paired_ratio(res, "flowdsl", "plain", op) for op in ("train", "log_prob", "sample")},
                     "params": (sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in plain.parameters()))}
    return out


def render(rows: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, one thread; CPU time of the thread, median of the rounds; "
             "ratio = plain time / flowdsl time "
             "(> 1: flowdsl faster), paired by round.", "",
             "| family | parameters (flowdsl / plain) | train step, flowdsl | ratio | log_prob, flowdsl | ratio "
             "| sample of 16, flowdsl | ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        f, q = r["flowdsl"], r["ratio"]
        lines.append(f"| {name} | {r['params'][0]:,} / {r['params'][1]:,} | {f['train'] * 1e3:.1f} ms | "
                     f"{q['train']:.2f} | {f['log_prob'] * 1e3:.1f} ms | {q['log_prob']:.2f} | "
                     f"{f['sample'] * 1e3:.0f} ms | {q['sample']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ar_anchors", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 pixels, 8 hidden units")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    rows = run(d=16, hidden=8, batch=8, n_sample=2, repeats=2, block_s=0.01) if a.quick else run(repeats=a.repeats)
    print(render(rows, "python -m benchmarks.ar_anchors" + (" --quick" if a.quick else "")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
