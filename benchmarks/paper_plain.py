"""Train a plain-PyTorch FVBN, NADE or MADE (:mod:`reference_models`) the way ``flowdsl train`` trains.

Same data (``mnist-binary``: 50,000 train / 10,000 validation / 10,000 test), batch, Adam and
learning rate, a reduce-on-plateau factor 0.5 after 2 evaluations without improvement (one per
epoch), early stopping after ``--patience`` epochs, the best validation weights scored once on
test. Metrics go to a JSON-lines file, one line per epoch: the yardstick for the flowdsl rows of
docs/results.md (a gap between the two is flowdsl's, not the model's).

Run::

    OMP_NUM_THREADS=1 python benchmarks/paper_plain.py made --out /work/runs/plain_made

Example (two steps on random bits):
    >>> import numpy as np
    >>> res = train_plain("made", np.random.default_rng(0).random((3, 64, 784)) < 0.1, epochs=1, batch=32)
    >>> sorted(res)
    ['best_epoch', 'cpu_s', 'epochs', 'steps', 'test_nll', 'valid_nll', 'wall_s']
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_models import PlainFVBN, PlainMADE, PlainNADE  # noqa: E402

MODELS = {"fvbn": lambda: PlainFVBN(784), "nade": lambda: PlainNADE(784, 500), "made": lambda: PlainMADE(784, [500]),
          "made32": lambda: PlainMADE(784, [500], masks=32)}


def _nll(model, x, batch=1000) -> float:
    model.eval()
    with torch.no_grad():
        return float(sum(-model(torch.from_numpy(x[i:i + batch].astype(np.float32))).sum()
                         for i in range(0, len(x), batch)) / len(x))


def train_plain(name, splits, *, epochs=200, batch=100, lr=1e-3, patience=10, seed=0, log=None, cpu_budget=None,
                best_path=None):
    """``splits``: (train, valid, test) arrays ``[N, 784]`` of 0/1. Returns the run's figures; ``best_path``
    receives the best weights at every improvement (a run stopped early can still be scored)."""
    torch.manual_seed(seed)
    train, valid, test = (np.asarray(s, dtype=np.uint8).reshape(len(s), -1) for s in splits)
    model = MODELS[name]()
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, min_lr=lr * 1e-3)
    gen = np.random.default_rng(seed)
    best, best_state, best_epoch, bad, steps = float("inf"), None, 0, 0, 0
    t0, c0 = time.time(), time.process_time()
    for epoch in range(1, epochs + 1):
        order = gen.permutation(len(train))
        model.train()
        for i in range(0, len(order) - batch + 1, batch):
            xb = torch.from_numpy(train[order[i:i + batch]].astype(np.float32))
            loss = -model(xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        v = _nll(model, valid)
        sched.step(v)
        if v < best:
            best, best_state, best_epoch, bad = v, copy.deepcopy(model.state_dict()), epoch, 0
            if best_path is not None:
                torch.save(best_state, best_path)
        else:
            bad += 1
        if log:
            log({"epoch": epoch, "step": steps, "valid_nll": v, "lr": opt.param_groups[0]["lr"],
                 "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0})
        if bad >= patience or (cpu_budget and time.process_time() - c0 > cpu_budget):
            break
    model.load_state_dict(best_state)
    return {"valid_nll": best, "test_nll": _nll(model, test), "best_epoch": best_epoch, "epochs": epoch,
            "steps": steps, "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0}


def score(name: str, path, test) -> float:
    """The test NLL of the weights saved at ``path`` (a run stopped before its end)."""
    model = MODELS[name]()
    model.load_state_dict(torch.load(path, weights_only=True))
    return _nll(model, np.asarray(test, dtype=np.uint8).reshape(len(test), -1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--out", required=True, help="folder for metrics.jsonl and result.json")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--cpu-budget", type=float, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from flowdsl.training.data import load_data

    ds = load_data("mnist-binary")
    print(ds.source, flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "w") as f:
        def log(row):
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(row, flush=True)

        res = train_plain(a.model, (ds.train, ds.valid, ds.test), epochs=a.epochs, batch=a.batch, lr=a.lr,
                          patience=a.patience, log=log, cpu_budget=a.cpu_budget, best_path=out / "best.pt")
    (out / "result.json").write_text(json.dumps(res, indent=1))
    print(res)


if __name__ == "__main__":
    main()
