"""NADE's speed against MADE's at the same width: CPU time of one thread, ratios within one run.

Both models on 784 binary pixels, 500 hidden units, Bernoulli outputs: a training step (forward,
backward, Adam) at batch 100 and the evaluation of 1,000 images, plus NADE's old formulation (one
cumulative sum over ``[B, D, H]``, kept as ``NADE.reference_forward``) for the record, and the peak
resident memory of the process after each (run in this order: made, nade, the old formulation; the
peak only grows). Prints one line per measurement and the ratios.

Run::

    OMP_NUM_THREADS=1 python benchmarks/nade_speed.py

Example (tiny sizes):
    >>> r = measure(d=16, hidden=8, batch=4, eval_n=8, repeats=1)
    >>> sorted(r)
    ['made', 'nade', 'nade_cumsum']
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import flowdsl


def _spec(d: int, layer: str) -> str:
    return f"autoregressive m {{\n input x: vector[{d}] levels 2\n {layer}\n output bernoulli\n}}\n"


def _cpu(fn, repeats: int) -> float:
    fn()  # warm
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def measure(d: int = 784, hidden: int = 500, batch: int = 100, eval_n: int = 1000, repeats: int = 5,
            torch_compile: bool = False) -> dict:
    """``torch_compile``: also NADE's cumulative-sum form under ``torch.compile`` (inductor; the blocked pass
    runs eager under the compiler, see ``runtime/ar_basic._nade_pass``), its build time in ``compile_s``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, d), 0.13)).long()
    xe = torch.bernoulli(torch.full((eval_n, d), 0.13)).long()
    out = {}
    rows = [("made", f"made([{hidden}], masks=1, order=natural)"), ("nade", f"nade(hidden={hidden})"),
            ("nade_cumsum", f"nade(hidden={hidden})")]
    if torch_compile:
        rows.append(("nade_cumsum_compiled", f"nade(hidden={hidden})"))
    for name, layer in rows:
        model = flowdsl.compile_source(_spec(d, layer), filename="m.ar")
        if name.startswith("nade_cumsum"):  # the formulation before: one cumulative sum over [B, D, H]
            nade = model.layers[0]
            nade.forward = lambda h, context=None, _n=nade: _n.reference_forward(h)
        if name.endswith("compiled"):
            from flowdsl.runtime.torch_compile import use_torch_compile

            use_torch_compile(model)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, opt=opt):
            loss = -model.log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        def evaluate(model=model):
            with torch.no_grad():
                model.log_prob(xe)

        t0 = time.process_time()
        step(), evaluate()  # a compiled model builds its graphs here
        built = time.process_time() - t0
        out[name] = {"train_step_s": _cpu(step, repeats), "eval_s": _cpu(evaluate, max(1, repeats // 2)),
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "compile_s": built}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--torch-compile", action="store_true", help="also the cumulative-sum form under torch.compile")
    a = p.parse_args(argv)
    r = measure(repeats=a.repeats, torch_compile=a.torch_compile)
    for name, m in r.items():
        print(f"{name:12s} train step {m['train_step_s'] * 1e3:8.1f} ms   eval 1000 images {m['eval_s'] * 1e3:8.0f} ms"
              f"   peak RSS so far {m['peak_rss_mb']:6.0f} MB   first call {m['compile_s']:6.1f} s")
    made = r["made"]
    for name in [n for n in r if n != "made"]:
        print(f"{name} / made: train step x{r[name]['train_step_s'] / made['train_step_s']:.1f}, "
              f"eval x{r[name]['eval_s'] / made['eval_s']:.1f}")


if __name__ == "__main__":
    main()
