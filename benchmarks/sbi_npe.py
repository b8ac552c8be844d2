"""Simulation-based inference: NPE with flowdsl flows against the ``sbi`` package's NPE, on sbibm tasks.

For each task and simulation budget, one set of simulations (seeded) trains both methods:

- ``flowdsl``: the conditional spec ``examples/sbi/<task>.flow``, trained by :mod:`flowdsl.sbi.npe`
  (sbi's training recipe: z-scoring, Adam 5e-4, batch 200, 10% validation, stop after 20 epochs
  without improvement);
- ``sbi``: ``sbi.inference.NPE(density_estimator="nsf")`` with its defaults (the timeseries task
  with an ``FCEmbedding`` of the same size as the flowdsl spec's ``embed`` net); sbi 0.27's default
  estimator is ``maf``: ``nsf`` is the neural spline flow that sbibm's NPE figures use;
- ``adapter`` (opt-in, ``--methods``): the flowdsl spec trained by sbi's own loop through
  :mod:`flowdsl.sbi.sbi_adapter`.

Each trained posterior is sampled at the task's 10 observations (amortized: one network per task
and budget); the C2ST (:mod:`flowdsl.sbi.c2st`) against the reference posterior samples is
averaged over the observations, and for the linear-Gaussian tasks the KL to the exact posterior
(:mod:`flowdsl.sbi.gaussian`, Monte Carlo on exact draws) too. sbibm's references come out of its
wheel (:mod:`flowdsl.sbi.reference`); the timeseries task's from its closed form.

Run (the full table of docs/sbi.md; one thread, niced)::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/sbi_npe.py --write docs/sbi.md
    python benchmarks/sbi_npe.py --quick --out /tmp/sbi.md           # CI: tiny budgets, seconds

Example:
    >>> row = {"task": "two_moons", "budget": 1000, "method": "flowdsl", "c2st": [0.6, 0.7], "kl": None,
    ...        "epochs": 80, "train_cpu_s": 10.0, "c2st_n": 10000}
    >>> print(table([row]).splitlines()[2])
    | two_moons | 1,000 | flowdsl | 0.650 ± 0.050 | — | 80 | 10 s | 10,000 |
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "examples" / "sbi"
BEGIN, END = "<!-- sbi-table:begin -->", "<!-- sbi-table:end -->"
MACHINE = "shared 2-core CPU, no GPU"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def references(task_name: str, task, observations: int, n_samples: int):
    """``[(x_o, reference samples)]`` for the first ``observations`` observations."""
    if task_name == "timeseries":
        from flowdsl.sbi.gaussian import task_posterior

        out = []
        for k in range(1, observations + 1):
            _, x = task.observation(k)
            torch.manual_seed(10_000 + k)
            out.append((x, task_posterior(task, x).sample((n_samples,)).float().numpy()))
        return out
    from flowdsl.sbi.reference import load_reference

    refs = [load_reference(task_name, k) for k in range(1, observations + 1)]
    return [(torch.tensor(r.observation, dtype=torch.float32), r.samples[:n_samples]) for r in refs]


def sbi_prior(task):
    from sbi.utils import BoxUniform

    if task.low is not None:
        return BoxUniform(task.low, task.high)
    _, cov, _, _ = task.linear_model()
    return torch.distributions.MultivariateNormal(torch.zeros(task.dim_theta), covariance_matrix=cov.float())


class NullTracker:
    """sbi's ``Tracker`` that records nothing (sbi's default logs TensorBoard files into ``./sbi-logs/``).

    A run whose ``./sbi-logs/`` is removed under it (a clean of the checkout) dies at its next write:
    the benchmark and the tests give sbi this tracker instead.
    """

    log_dir = None

    def log_metric(self, name, value, step=None) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_params(self, params) -> None:
        pass

    def add_figure(self, name, figure, step=None) -> None:
        pass

    def flush(self) -> None:
        pass


def train_sbi(task_name, task, theta, x, seed, max_epochs, builder=None):
    """sbi's NPE on the same simulations: ``(sample(n, x_o), log_prob(theta, x_o), epochs)``."""
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn
    from sbi.neural_nets.embedding_nets import FCEmbedding

    torch.manual_seed(seed)
    estimator = builder
    if estimator is None:
        estimator = "nsf"
        if task_name == "timeseries":
            embedding = FCEmbedding(input_dim=task.dim_x, output_dim=16, num_layers=3, num_hiddens=64)
            estimator = posterior_nn("nsf", embedding_net=embedding)
    options = {} if max_epochs is None else {"max_num_epochs": max_epochs}
    inference = NPE(prior=sbi_prior(task), density_estimator=estimator, show_progress_bars=False,
                    tracker=NullTracker())
    inference.append_simulations(theta, x).train(**options)
    epochs = len(inference.summary["validation_loss"])
    posterior = inference.build_posterior()

    def sample(n, x_o):
        return posterior.sample((n,), x=x_o.reshape(1, -1), show_progress_bars=False)

    def log_prob(th, x_o):
        return posterior.log_prob(th, x=x_o.reshape(1, -1), norm_posterior=False)

    return sample, log_prob, epochs


def train_flowdsl(task_name, task, theta, x, seed, max_epochs):
    import flowdsl
    from flowdsl.sbi.npe import train_npe

    torch.manual_seed(seed)
    flow = flowdsl.compile_file(SPECS / f"{task_name}.flow")
    options = {} if max_epochs is None else {"max_epochs": max_epochs}
    post = train_npe(flow, theta, x, task=task, seed=seed, **options)
    return post.sample, post.log_prob, post.report.epochs


def run_one(task_name, budget, method, refs, args) -> dict:
    from flowdsl.sbi.c2st import c2st
    from flowdsl.sbi.gaussian import mc_kl, task_posterior
    from flowdsl.sbi.tasks import get_task

    task = get_task(task_name)
    theta, x = task.simulate_pairs(budget, seed=args.seed)  # the same simulations for every method
    cpu0, wall0 = time.process_time(), time.time()
    if method == "flowdsl":
        sample, log_prob, epochs = train_flowdsl(task_name, task, theta, x, args.seed, args.max_epochs)
    elif method == "sbi":
        sample, log_prob, epochs = train_sbi(task_name, task, theta, x, args.seed, args.max_epochs)
    else:
        from flowdsl.sbi.sbi_adapter import flowdsl_density_estimator

        builder = flowdsl_density_estimator(SPECS / f"{task_name}.flow", seed=args.seed)
        sample, log_prob, epochs = train_sbi(task_name, task, theta, x, args.seed, args.max_epochs, builder)
    train_cpu, train_wall = time.process_time() - cpu0, time.time() - wall0
    scores, kls, c2st_cpu = [], [], 0.0
    for x_o, ref in refs:
        with torch.no_grad():
            samples = sample(args.posterior_samples, x_o).detach().float().numpy()
        t0 = time.process_time()
        scores.append(c2st(ref[:args.c2st_samples], samples[:args.c2st_samples], max_iter=args.c2st_max_iter))
        c2st_cpu += time.process_time() - t0
        if hasattr(task, "linear_model"):
            kls.append(mc_kl(task_posterior(task, x_o), lambda th, x_o=x_o: log_prob(th, x_o),
                             n=args.posterior_samples)[0])
    row = {"task": task_name, "budget": budget, "method": method, "c2st": scores, "kl": kls or None,
           "epochs": epochs, "train_cpu_s": train_cpu, "train_wall_s": train_wall, "c2st_cpu_s": c2st_cpu,
           "c2st_n": min(args.c2st_samples, args.posterior_samples)}
    _say(f"{task_name} {budget} {method}: C2ST {np.mean(scores):.3f}"
         + (f", KL {np.mean(kls):.3f}" if kls else "") + f", {epochs} epochs, train {train_cpu:.0f} CPU s, "
         f"C2ST {c2st_cpu:.0f} CPU s")
    return row


def _job(job) -> tuple[dict, float]:
    """One row (in a worker process with ``--jobs``): the row and the CPU seconds it used."""
    from flowdsl.sbi.tasks import get_task

    torch.set_num_threads(1)
    cpu0 = time.process_time()
    task_name, budget, method, args = job
    refs = references(task_name, get_task(task_name), args.observations, args.posterior_samples)
    return run_one(task_name, budget, method, refs, args), time.process_time() - cpu0


def _progress(args, row: dict) -> None:
    """Append a finished row to ``<out>.jsonl`` (a run stopped early keeps what it has done)."""
    if args.out:
        with open(args.out.with_suffix(".jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


def table(rows: list[dict]) -> str:
    lines = ["| task | simulations | method | C2ST (mean ± sd over observations) | KL(p ‖ q) nats, mean | "
             "epochs | training CPU | C2ST samples per side |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = np.asarray(r["c2st"])
        kl = f"{np.mean(r['kl']):.3f}" if r.get("kl") else "—"
        lines.append(f"| {r['task']} | {r['budget']:,} | {r['method']} | {c.mean():.3f} ± {c.std():.3f} | {kl} | "
                     f"{r['epochs']} | {r['train_cpu_s']:.0f} s | {r['c2st_n']:,} |")
    return "\n".join(lines)


def write_between_markers(path: Path, block: str) -> None:
    try:  # run as a script (python benchmarks/...) or imported as benchmarks.<module>
        from .markdown_blocks import replace_block
    except ImportError:
        from markdown_blocks import replace_block

    replace_block(path, BEGIN, END, block)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="two_moons,gaussian_linear,timeseries")
    p.add_argument("--budgets", default="1000,10000", help="simulation budgets, comma-separated")
    p.add_argument("--methods", default="flowdsl,sbi", help="flowdsl, sbi, adapter (comma-separated)")
    p.add_argument("--observations", type=int, default=10)
    p.add_argument("--posterior-samples", type=int, default=10000)
    p.add_argument("--c2st-samples", default="two_moons=2000,gaussian_linear=1000,timeseries=1000",
                   help="samples per side for C2ST, per task (task=N,...) or one number")
    p.add_argument("--c2st-max-iter", type=int, default=10000, help="the C2ST classifier's max_iter (sbibm: 10000)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1, help="rows trained at once, one process each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny budgets and samples (CI, seconds)")
    p.add_argument("--out", type=Path, help="write the markdown table (and a .json of the rows) here")
    p.add_argument("--write", type=Path, help="put the table between the sbi-table markers of this file")
    args = p.parse_args(argv)
    if args.quick:
        args.budgets, args.observations, args.posterior_samples, args.max_epochs = "200", 2, 300, 3
        args.c2st_samples, args.c2st_max_iter = "200", 100
    return args


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    from flowdsl.sbi.sbi_adapter import sbi_available
    from flowdsl.sbi.tasks import get_task

    methods = [m for m in args.methods.split(",") if m]
    if not sbi_available():
        dropped = [m for m in methods if m in ("sbi", "adapter")]
        methods = [m for m in methods if m not in ("sbi", "adapter")]
        if dropped:
            _say(f"sbi is not installed: {', '.join(dropped)} left out (pip install sbi)")
    per_task = dict(kv.split("=") for kv in args.c2st_samples.split(",")) if "=" in args.c2st_samples else {}
    jobs = []
    for task_name in args.tasks.split(","):
        get_task(task_name)  # an unknown name stops the run before any training
        for budget in (int(b) for b in args.budgets.split(",")):
            for method in methods:
                ns = argparse.Namespace(**vars(args))
                ns.c2st_samples = int(per_task.get(task_name, args.c2st_samples if not per_task else 10000))
                jobs.append((task_name, budget, method, ns))
    if args.out:
        args.out.with_suffix(".jsonl").unlink(missing_ok=True)
    wall0, cpu0 = time.time(), time.process_time()
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            # the largest budgets first (the longest rows), the table in the order of the jobs
            futures = {i: pool.submit(_job, jobs[i]) for i in sorted(range(len(jobs)), key=lambda i: -jobs[i][1])}
            for future in as_completed(futures.values()):
                _progress(args, future.result()[0])
            results = [futures[i].result() for i in range(len(jobs))]
        rows = [row for row, _ in results]
        cpu = sum(c for _, c in results) + time.process_time() - cpu0
    else:
        rows = []
        for job in jobs:
            rows.append(_job(job)[0])
            _progress(args, rows[-1])
        cpu = time.process_time() - cpu0
    wall = time.time() - wall0
    command = "python benchmarks/sbi_npe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    try:
        import sbi

        versions += f", sbi {sbi.__version__}"
    except ImportError:
        pass
    block = (table(rows) + f"\n\nMachine: {MACHINE}, one torch thread, {versions}. Whole run: {wall / 60:.1f} "
             f"wall minutes, {cpu / 60:.1f} CPU minutes. Command: `{command.strip()}`.")
    print(block)
    if args.out:
        args.out.write_text(block + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    if args.write:
        write_between_markers(args.write, block)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
