"""The input-encoding defect measured on binarized MNIST: a MADE 1x500 with one-hot input vs the plain MADE fed 0/1.

Prints, at initialisation, the dead-unit fraction (hidden units <= 0 on all of 1,000 training
digits) and how the first layer's pre-activations split: the spread across units of their mean
(a data-independent offset) against the spread within a unit across digits; then, every 200 steps
of Adam (lr 1e-3, batch 100, the same batches for all), the validation NLL of each model and the
dead fraction. Models: ``plain 0/1`` (:class:`reference_models.PlainMADE`), ``flowdsl``
(``specs``-style ``made([500], masks=1, order=natural)``, its current encoding) and ``flowdsl
one-hot`` (the pre-fix encoding and initialisation: one-hot input, first weights drawn for a
fan-in of 2 x 784).

Run (needs full MNIST: ``flowdsl data fetch mnist``)::

    OMP_NUM_THREADS=1 python benchmarks/paper_defect.py --steps 600
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from reference_models import PlainMADE  # noqa: E402

import flowdsl  # noqa: E402

SRC = "autoregressive m {\n input x: vector[784] levels 2\n made([500], masks=1, order=natural)\n output bernoulli\n}\n"


def pre_activations(model, x):
    if isinstance(model, PlainMADE):
        return model.hidden(x)[0]
    lin = model.layers[0].layers[0]
    enc = model._encode(x.long()).transpose(1, 2).reshape(x.shape[0], -1)
    return F.linear(enc, lin.weight * lin.mask, lin.bias)


def stats(pre) -> str:
    dead = (pre <= 0).all(0).float().mean().item()
    return f"dead {dead:.3f}, spread of unit means {pre.mean(0).std():.3f}, within a unit {pre.std(0).mean():.3f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from flowdsl.training.data import load_data

    ds = load_data("mnist-binary")
    train = torch.from_numpy(ds.train.reshape(len(ds.train), -1)[:20000].astype(np.float32))
    valid = torch.from_numpy(ds.valid.reshape(len(ds.valid), -1)[:2000].astype(np.float32))
    probe = train[:1000]
    torch.manual_seed(0)
    models = {"plain 0/1": PlainMADE(784, [500])}
    torch.manual_seed(0)
    models["flowdsl"] = flowdsl.compile_source(SRC, filename="made.ar")
    old = copy.deepcopy(models["flowdsl"])
    old.encoding = "one-hot"
    with torch.no_grad():  # the pre-fix initialisation: nn.Linear's bound for a fan-in of 2 * 784
        old.layers[0].layers[0].weight.div_(2 ** 0.5)
        old.layers[0].layers[0].bias.div_(2 ** 0.5)
    models["flowdsl one-hot"] = old
    with torch.no_grad():
        for k, m in models.items():
            print(f"init {k}: {stats(pre_activations(m, probe))}")
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(1)
    for step in range(1, a.steps + 1):
        xb = train[torch.randint(len(train), (100,), generator=gen)]
        for k, m in models.items():
            lp = m(xb) if k == "plain 0/1" else m.log_prob(xb.long())
            opts[k].zero_grad()
            (-lp.mean()).backward()
            opts[k].step()
        if step % 200 == 0:
            with torch.no_grad():
                row = []
                for k, m in models.items():
                    nll = -(m(valid) if k == "plain 0/1" else m.log_prob(valid.long())).mean().item()
                    dead = (pre_activations(m, probe) <= 0).all(0).float().mean().item()
                    row.append(f"{k} {nll:.2f} nats, dead {dead:.3f}")
            print(f"step {step}: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
