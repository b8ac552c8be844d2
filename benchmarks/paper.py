"""The papers' numbers: train specs/paper/ to convergence, score test once, write the table into docs/results.md.

Rows (:data:`ROWS`): on binarized MNIST (``mnist-binary``, 50,000 / 10,000 / 10,000) FVBN, NADE,
MADE with 1 and 32 masks, trained on this CPU (Adam lr 1e-3, batch 100, plateau schedule, early
stopping after 10 validation scores without improvement, one thread); PixelCNN, Gated PixelCNN,
PixelRNN, RealNVP and Glow marked "needs a GPU" with a short CPU run proving the spec trains;
and exactly known answers: 2-D densities whose entropy is known (``checkerboard``: uniform on an
area of 32, ``H = log 32``; ``8gaussians``: a Monte Carlo of the exact mixture density with its
standard error), against which the test NLL of MAF, NSF and FFJORD is a KL divergence
(NLL - H >= 0). ``--collect DIR`` builds the MNIST rows from runs made with ``flowdsl train``
instead (``DIR/<row>/model.metrics.jsonl``; a run stopped before its test score is scored here,
once, from its best checkpoint). ``--quick``: every row for a few steps on small data (CI).

Run::

    OMP_NUM_THREADS=1 python benchmarks/paper.py                  # everything, hours
    OMP_NUM_THREADS=1 python benchmarks/paper.py --collect /work/runs --write docs/results.md
    python benchmarks/paper.py --quick                            # under a minute

Example:
    >>> round(entropy("checkerboard")[0], 4)
    3.4657
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "specs" / "paper"
BEGIN, END = "<!-- paper-table:begin -->", "<!-- paper-table:end -->"
#: how the collected runs were made (``DIR/<row>/``), one thread each, in the background
TRAIN = ("flowdsl train specs/paper/{spec} --data mnist-binary --epochs 300 --batch 100 --lr 1e-3 --schedule plateau "
         "--patience 10 --threads 1 --seed 0 --cpu-budget 4800 -q -o DIR/{name}/model.pt")
TRAIN_EXTRA = {"made32": " --eval-size 2000",
               "nade": " --eval-every 250 --eval-size 1000 (stopped by hand after 10.3 CPU minutes, then the same "
                       "command with --cpu-budget 4200 --resume DIR/nade/model.pt)",
               }
#: the plain-PyTorch yardsticks (benchmarks/paper_plain.py): folder, model, table row, the paper cell
PLAINS = [("plain_made", "made", "plain PyTorch MADE 1x500", "≈94.5 nats (MADE 1x500)",
           "python benchmarks/paper_plain.py made --out DIR/plain_made --epochs 300 --patience 10 --cpu-budget 4800"),
          ("plain_made32", "made32", "plain PyTorch MADE 1x500, 32 masks", "- (as made32)",
           "python benchmarks/paper_plain.py made32 --out DIR/plain_made32 --epochs 46 --patience 10")]


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    spec: str
    data: str
    paper: float | None  # the paper's test figure
    unit: str  # "nats" (per example) or "bits/dim"
    source: str  # where the paper's figure is from
    gpu: bool = False
    paper_cell: str = ""  # the table's paper cell when the figure needs words (read off a plot, another size)
    recipe: dict | None = None  # training settings other than the common recipe (a second run of a spec)
    command: str = ""  # how the collected run was made, when not TRAIN


ROWS = [
    Row("fvbn", "fvbn.ar", "mnist-binary", 97.45, "nats", "Larochelle & Murray 2011, Table 2 (FVSBN)"),
    Row("nade", "nade.ar", "mnist-binary", 88.86, "nats", "Larochelle & Murray 2011, Table 2"),
    # Table 6's MADE rows are networks of 8000 hidden units (the authors' MNIST command, mgermain/MADE);
    # the 500-unit network is Figure 2's (the number of masks varied), its one-mask point read off the plot
    Row("made", "made.ar", "mnist-binary", 94.5, "nats", "Germain et al. 2015, Figure 2 (500 units, 1 mask)",
        paper_cell="≈94.5 nats (Fig. 2, read off the plot)"),
    # the same network under the recipe of karpathy/pytorch-made (Adam with an L2 penalty 1e-4, the rate
    # x0.1 after 45 epochs, 100 epochs), which reproduces Figure 2's one-mask point on the authors' data
    Row("made_l2", "made.ar", "mnist-binary", 94.5, "nats", "Germain et al. 2015, Figure 2 (500 units, 1 mask)",
        paper_cell="≈94.5 nats (Fig. 2, read off the plot)",
        recipe={"epochs": 100, "l2": 1e-4, "schedule": "step:every=22500,gamma=0.1"},
        command="flowdsl train specs/paper/made.ar --data mnist-binary --epochs 100 --batch 100 --lr 1e-3 --l2 1e-4 "
                "--schedule step:every=22500,gamma=0.1 --patience 10 --threads 1 --seed 0 --cpu-budget 4800 -q "
                "-o DIR/made_l2/model.pt"),
    Row("made_8000", "made_8000.ar", "mnist-binary", 88.40, "nats",
        "Germain et al. 2015, Table 6 (1 hidden layer of 8000, 1 mask)",
        command=TRAIN.format(spec="made_8000.ar", name="made_8000").replace("--cpu-budget 4800", "--cpu-budget 4500")),
    Row("made32", "made_32masks.ar", "mnist-binary", None, "nats",
        "Germain et al. 2015, Figure 2 (500 units, 32 masks; Table 6's 86.64 is 8000 units)",
        paper_cell="Fig. 2, not read off (Table 6's 86.64: 8000 units, GPU work)"),
    Row("pixelcnn", "pixelcnn.ar", "mnist-binary", 81.30, "nats", "van den Oord et al. 2016a, Table 4", True),
    Row("gated_pixelcnn", "gated_pixelcnn.ar", "mnist-binary", None, "nats",
        "van den Oord et al. 2016b (no MNIST figure)", True),
    Row("pixelrnn", "pixelrnn.ar", "mnist-binary", 79.20, "nats",
        "van den Oord et al. 2016a, Table 4 (Diagonal BiLSTM, 7 layers)", True),
    Row("realnvp", "realnvp_mnist.flow", "mnist", 1.06, "bits/dim", "Chen et al. 2019, Table 1", True),
    Row("glow", "glow_mnist.flow", "mnist", 1.05, "bits/dim", "Chen et al. 2019, Table 1", True),
]
TOYS = [(flow, density) for density in ("checkerboard", "8gaussians") for flow in ("maf_2d", "nsf_2d", "ffjord_2d")]


# ----------------------------------------------------------------------------- known answers
def entropy(density: str, n: int = 2_000_000, seed: int = 0) -> tuple[float, float]:
    """``(H, standard error)`` in nats of a built-in 2-D density (flowdsl.training.data's generators)."""
    if density == "checkerboard":  # x1 ~ U[-2, 2), x2 in one of two unit intervals per column; scaled by 2
        return math.log(4 * 2 * 2 * 2), 0.0
    if density == "8gaussians":  # centres 4 (cos, sin)(k pi / 4) / 1.414, sd 0.5 / 1.414, equal weights
        from flowdsl.training.data import load_data

        x = load_data("8gaussians", n=n, seed=seed + 12345).train.astype(np.float64)
        angles = np.arange(8) * math.pi / 4
        centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 4 / 1.414
        sd = 0.5 / 1.414
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        logp = np.logaddexp.reduce(-d2 / (2 * sd * sd), axis=1) - math.log(8) - math.log(2 * math.pi * sd * sd)
        return float(-logp.mean()), float(logp.std() / math.sqrt(n))
    raise ValueError(f"no known entropy for {density!r}")


# ----------------------------------------------------------------------------- training
def _subset(ds, n: int):
    """The data set with each split cut to its first ``n`` examples (quick runs, GPU-sized specs on a CPU)."""
    def cut(a):
        return None if a is None else a[:n]
    return dataclasses.replace(ds, train=ds.train[:n], test=ds.test[:n], valid=cut(ds.valid),
                               train_labels=cut(ds.train_labels), test_labels=cut(ds.test_labels),
                               valid_labels=cut(ds.valid_labels))


def _train(spec: Path, data, **kw) -> dict:
    import torch

    import flowdsl

    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    res = flowdsl.train(str(spec), data, threads=1, progress=False, log=None, metrics=False, **kw)
    return {"test": res.test_nll, "valid": res.valid_nll, "steps": res.step, "best_step": res.best_step,
            "stop": res.stop_reason, "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0,
            "dims": int(np.prod(res.model.input_shape))}


def run_rows(quick: bool, out: Path, report=print, only=None) -> list[dict]:
    """Train the rows (``only``: row names, ``gpu`` for the GPU-sized ones, ``toys`` for the 2-D ones)."""
    from flowdsl.training.data import load_data

    def wanted(name, group):
        return not only or name in only or group in only

    results = []
    for row in ROWS:
        if not wanted(row.name, "gpu" if row.gpu else "cpu"):
            continue
        ds = load_data(row.data)
        if quick or row.gpu:  # a short CPU run proving the spec trains
            small = _subset(ds, 16 if quick else 256)
            r = _train(PAPER / row.spec, small, steps=2 if quick else 20, batch=4 if quick else 16)
            r["note"] = "quick" if quick else "needs a GPU: 20 CPU steps on 256 examples prove the spec trains"
        else:
            recipe = {"epochs": 300, "batch": 100, "lr": 1e-3, "schedule": "plateau", "patience": 10,
                      **(row.recipe or {})}
            r = _train(PAPER / row.spec, ds, output=out / row.name / "model.pt", **recipe)
        results.append({"row": row.name, **r})
        report(results[-1])
    for flow, density in TOYS:
        if not wanted(flow, "toys"):
            continue
        ds = load_data(density, n=256 if quick else 20000)
        steps = 2 if quick else (1000 if flow == "ffjord_2d" else 5000)
        r = _train(PAPER / f"{flow}.flow", ds, steps=steps, batch=64 if quick else 256, lr=1e-3,
                   schedule=None if quick else "cosine")
        h, se = entropy(density, n=10000 if quick else 2_000_000)
        results.append({"row": f"{flow} on {density}", "entropy": h, "entropy_se": se, **r})
        report(results[-1])
    return results


# ----------------------------------------------------------------------------- collecting CLI runs
def _score_best(run: Path, data: str) -> dict:
    import torch

    import flowdsl
    from flowdsl.training.data import load_data
    from flowdsl.training.evaluation import evaluate, tensors
    from flowdsl.training.fitting import fit

    torch.set_num_threads(1)
    model = flowdsl.load(run / "model.best.pt")
    x, y = tensors(fit(load_data(data), model.ir.header), model.levels, "test")
    return evaluate(model, x, y)


def collect(root: Path) -> list[dict]:
    """The MNIST rows from ``flowdsl train`` runs under ``root/<row>/`` (metrics, best checkpoint)."""
    results = []
    for row in ROWS:
        metrics = root / row.name / "model.metrics.jsonl"
        if not metrics.is_file():
            continue
        events = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        evals = _evals_across_resumes(events)
        test = next((e for e in events if e.get("event") == "test"), None)
        if not evals:
            continue
        best = min(evals, key=lambda e: e["valid_nats"])
        r = {"row": row.name, "valid": best["valid_nats"], "best_step": best["step"], "steps": evals[-1]["step"],
             "wall_s": evals[-1]["wall_s"], "cpu_s": evals[-1]["cpu_s"], "epochs": len(evals),
             "curve": [(e["step"], round(e["valid_nats"], 3)) for e in evals],
             "command": row.command or TRAIN.format(spec=row.spec, name=row.name) + TRAIN_EXTRA.get(row.name, "")}
        if test is not None:
            r.update(test=test["nats"], stop="finished")
        else:
            r.update(test=_score_best(root / row.name, row.data)["nats"],
                     stop="stopped by hand before convergence; test scored once from the best checkpoint")
        results.append(r)
    for folder, model, label, _, command in PLAINS:
        # the plain-PyTorch model of the same size, trained the same way (benchmarks/paper_plain.py)
        plain = root / folder / "metrics.jsonl"
        rows = [json.loads(line) for line in plain.read_text().splitlines() if line.strip()] if plain.is_file() else []
        if not rows:
            continue
        best = min(rows, key=lambda e: e["valid_nll"])
        done = root / folder / "result.json"
        if done.is_file():
            test, stop = json.loads(done.read_text())["test_nll"], "finished"
        else:
            from paper_plain import score

            from flowdsl.training.data import load_data

            test = score(model, root / folder / "best.pt", load_data("mnist-binary").test)
            stop = "stopped by hand before convergence; test scored once from the best weights"
        results.append({"row": label, "valid": best["valid_nll"], "best_step": best["step"],
                        "steps": rows[-1]["step"], "wall_s": rows[-1]["wall_s"], "cpu_s": rows[-1]["cpu_s"],
                        "test": test, "stop": stop, "epochs": len(rows),
                        "curve": [(e["step"], round(e["valid_nll"], 3)) for e in rows], "command": command})
    return results


def _evals_across_resumes(events: list[dict]) -> list[dict]:
    """The evaluations of a run, resumed runs included: a resumed process counts its wall and CPU time
    from 0, so each segment is offset by the time spent before it; an evaluation repeated after a
    resume (the same step) keeps its latest record.

    Example:
        >>> ev = [{"event": "eval", "step": 1, "valid_nats": 3.0, "wall_s": 5.0, "cpu_s": 4.0},
        ...       {"event": "resume", "step": 1},
        ...       {"event": "eval", "step": 2, "valid_nats": 2.0, "wall_s": 1.0, "cpu_s": 1.0}]
        >>> [(e["step"], e["cpu_s"]) for e in _evals_across_resumes(ev)]
        [(1, 4.0), (2, 5.0)]
    """
    wall = cpu = 0.0
    last: dict = {}
    by_step: dict[int, dict] = {}
    for e in events:
        if e.get("event") == "resume" and last:
            wall, cpu = last["wall_s"], last["cpu_s"]
        elif e.get("event") == "eval":
            last = {**e, "wall_s": e["wall_s"] + wall, "cpu_s": e["cpu_s"] + cpu}
            by_step[e["step"]] = last
    return [by_step[k] for k in sorted(by_step)]


def write_curves(results: list[dict], path: Path) -> None:
    """``model,step,valid_nats`` for every evaluation of every collected run."""
    lines = ["model,step,valid_nats"]
    for r in results:
        lines += [f"{r['row']},{s},{v}" for s, v in r.get("curve", [])]
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- the table
def _fmt_time(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def table(results: list[dict], command: str) -> str:
    rows = {r.name: r for r in ROWS}
    machine = f"{os.cpu_count()}-core shared {platform.machine()} CPU, 1 thread, no GPU"
    lines = ["| model | paper | flowdsl (test) | steps (best) | wall / CPU time | machine | command |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        spec = rows.get(r["row"])
        plain = {label: cell for _, _, label, cell, _ in PLAINS}
        if r["row"] in plain:
            paper, ours = plain[r["row"]], f"{r['test']:.2f} nats"
        elif spec is not None:
            unit = spec.unit
            paper = spec.paper_cell or (f"{spec.paper:.2f} {unit}" if spec.paper is not None else "-")
            got = r["test"] / (r.get("dims", 784) * math.log(2)) if unit == "bits/dim" else r["test"]
            ours = f"{got:.2f} {unit}" + (" (short CPU run)" if spec.gpu else "")
            if spec.gpu:
                paper += " (needs a GPU)"
        else:
            paper = f"H = {r['entropy']:.4f} ± {r['entropy_se']:.4f} nats"
            ours = f"{r['test']:.4f} nats (KL {r['test'] - r['entropy']:+.4f})"
        times = f"{_fmt_time(r['wall_s'])} / {_fmt_time(r['cpu_s'])}"
        lines.append(f"| {r['row']} | {paper} | {ours} | {r['steps']} ({r.get('best_step')}) | {times} | {machine} | "
                     f"`{r.get('command', command)}` |")
    return "\n".join(lines)


def write_table(path: Path, text: str) -> None:
    try:  # run as a script (python benchmarks/...) or imported as benchmarks.<module>
        from .markdown_blocks import replace_block
    except ImportError:
        from markdown_blocks import replace_block

    replace_block(path, BEGIN, END, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="every row for a few steps on small data (CI)")
    p.add_argument("--collect", metavar="DIR", help="build the MNIST rows from flowdsl train runs in DIR/<row>/")
    p.add_argument("--out", default="runs/paper", help="checkpoints of the full runs")
    p.add_argument("--write", metavar="MD", help="write the table into this Markdown file (between markers)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--curves", metavar="CSV", help="with --collect: write every run's validation curve here")
    p.add_argument("--only", nargs="*", help="rows to run: names, 'cpu', 'gpu' or 'toys' (default: all)")
    a = p.parse_args(argv)
    command = "python benchmarks/paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.collect:
        results = collect(Path(a.collect))
        if a.curves:
            write_curves(results, Path(a.curves))
    else:
        results = run_rows(a.quick, Path(a.out), report=lambda r: print(json.dumps(r), flush=True), only=a.only)
    text = table(results, command)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if a.write:
        write_table(Path(a.write), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
