"""What the actnorm + invconv1x1 fusion buys on its own: one optimised flow, fused and with the fusion undone.

    OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.fusion benchmarks/specs/glow.flow specs/glow.flow

Both copies hold the same parameters and every other optimisation; the copy has its fused pairs unlinked.
For ``log_prob`` under ``no_grad`` and ``sample(64)`` (models in evaluation mode) the script alternates the two
7 times and prints the median of ``CPU time(unfused) / CPU time(fused)`` of one thread (ratios within one run).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

import flowdsl


def unfused_copy(flow):
    """A copy of ``flow`` with every fused actnorm + invconv1x1 pair run as two layers again."""
    plain = copy.deepcopy(flow)
    for m in plain.modules():
        if getattr(m, "fused_actnorm", None) is not None:
            m.fused_actnorm.fused_into_next = False
            m._pre = ()
    return plain


def _cpu(fn, k: int = 3) -> float:
    start = time.thread_time()
    for _ in range(k):
        fn()
    return time.thread_time() - start


def measure(path: str, batch: int = 64, reps: int = 7) -> dict:
    fast = flowdsl.compile_file(path)
    shape = fast.input_shape
    x = torch.randint(0, fast.levels, (batch, *shape)).float() if fast.levels else torch.randn(batch, *shape)
    with torch.no_grad():
        fast.log_prob(x)  # actnorm's data-dependent initialisation
    fast.eval()
    plain = unfused_copy(fast)
    row = {"spec": path, "fused": sum(getattr(m, "fused_actnorm", None) is not None for m in fast.modules())}
    for name, op in (("log_prob", lambda f: f.log_prob(x)), ("sample", lambda f: f.sample(batch))):
        with torch.no_grad():
            op(plain), op(fast)
            row[name] = statistics.median(_cpu(lambda op=op: op(plain)) / _cpu(lambda op=op: op(fast))
                                          for _ in range(reps))
    return row


def main(argv=None) -> None:
    torch.set_num_threads(1)
    for path in (argv if argv is not None else sys.argv[1:]) or ["benchmarks/specs/glow.flow"]:
        row = measure(path)
        print(f"{row['spec']}: {row['fused']} fused pairs; unfused/fused CPU time, median of 7: "
              f"log_prob {row['log_prob']:.2f}, sample {row['sample']:.2f}", flush=True)


if __name__ == "__main__":
    main()
