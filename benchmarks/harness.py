"""Timing, peak memory and the table: the measurement machinery shared by every pairing.

An :class:`Impl` is one library's model: the module (for parameters and train/eval mode), a
``log_prob(x) -> [B]`` and an optional ``sample(n)``. :func:`measure` times the operations of
several implementations alternately in one process: for each operation, after a warm-up and a
calibration (iterations per block chosen so a block lasts about ``block_s``), ``repeats``
rounds time one block of each implementation in turn, the order of the implementations
reversed every round. Medians per call are kept. On CUDA the device is synchronised around
each block only, never inside the timed calls.

Example:
    >>> import torch
    >>> impl = Impl("toy", torch.nn.Linear(4, 1), lambda x: x.sum(1), lambda n: torch.zeros(n, 4))
    >>> res = measure([impl], torch.zeros(8, 4), 8, repeats=2, block_s=0.001, ops=("log_prob", "sample"))
    >>> sorted(res["toy"]), res["toy"]["log_prob"] > 0
    (['log_prob', 'sample'], True)
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Impl", "param_count", "perturb", "measure", "paired_ratio", "peak_memory", "OPS", "CLOCKS", "fmt_rate",
           "fmt_bytes"]

#: operation name -> what it times
OPS = {
    "train": "log_prob + backward (train mode), examples/s",
    "log_prob": "log_prob under no_grad (eval mode), examples/s",
    "sample": "sample under no_grad (eval mode), samples/s",
}


@dataclass
class Impl:
    library: str
    module: nn.Module
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], torch.Tensor] | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def perturb(module: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    """Add N(0, scale^2) to every parameter, so zero-initialised heads do real work (same in every library).

    Scalar (0-d) parameters are left alone: they are settings stored as parameters (normflows keeps
    its residual blocks' roulette probability and Poisson rate so), not weights."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dim() == 0:
            continue
        p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _op(impl: Impl, op: str, x: torch.Tensor, n: int, bf16: bool) -> Callable[[], object]:
    """A zero-argument callable running one operation (mode set by the caller)."""
    device = x.device
    if op == "train":
        params = [p for p in impl.module.parameters() if p.requires_grad]

        def train():
            for p in params:
                p.grad = None
            with _autocast(device, bf16):
                loss = -impl.log_prob(x).float().mean()
            loss.backward()
        return train
    if op == "log_prob":
        def log_prob():
            with torch.no_grad(), _autocast(device, bf16):
                return impl.log_prob(x)
        return log_prob
    if impl.sample is None:
        return None

    def sample():
        with torch.no_grad(), _autocast(device, bf16):
            return impl.sample(n)
    return sample


#: clock name -> function: "cpu" is this thread's CPU time (with one torch thread every CPU op, backward
#: included, runs on the calling thread, so time lost to other processes on a shared machine is not
#: charged); "wall" is wall-clock time (the only meaningful clock with several threads or on a GPU)
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def _time(fn, iters: int, device, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    _sync(device)
    start = now()
    for _ in range(iters):
        fn()
    _sync(device)
    return (now() - start) / iters


def measure(impls, x, n_sample: int, repeats: int = 5, block_s: float = 0.2, ops=tuple(OPS),
            bf16: bool = False, warmup: int = 2, clock: str = "wall") -> dict:
    """``{library: {op: median seconds per call}}`` (``None`` where an impl lacks the operation);
    ``out["rounds"][library][op]`` keeps each round's time (for ratios paired by round)."""
    device = x.device
    out = {impl.library: {} for impl in impls}
    out["rounds"] = {impl.library: {} for impl in impls}
    for op in ops:
        calls = []
        for impl in impls:
            fn = _op(impl, op, x.clone(), n_sample, bf16)  # a copy each: some libraries flag their input in place
            if fn is None:
                out[impl.library][op] = None
                continue
            impl.module.train(op == "train")
            for _ in range(warmup):
                fn()
            once = _time(fn, 1, device, clock)
            calls.append((impl, fn, max(1, int(block_s / max(once, 1e-6)))))
        times = {impl.library: [] for impl, _, _ in calls}
        for r in range(repeats):
            for impl, fn, iters in (calls if r % 2 == 0 else calls[::-1]):
                impl.module.train(op == "train")
                times[impl.library].append(_time(fn, iters, device, clock))
        for lib, ts in times.items():
            out[lib][op] = statistics.median(ts)
            out["rounds"][lib][op] = ts
    for impl in impls:
        impl.module.eval()
    return out


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines (file descriptor 2) for the block."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def paired_ratio(res: dict, lib: str, other: str, op: str) -> float | None:
    """Median over rounds of ``time(other) / time(lib)`` (> 1: ``lib`` faster); rounds pair runs made
    back to back, so a load that drifts during the measurement cancels."""
    a, b = res["rounds"][lib].get(op), res["rounds"][other].get(op)
    if not a or not b:
        return None
    return statistics.median(tb / ta for ta, tb in zip(a, b))


def _cpu_peak(fn) -> int:
    """Peak of live CPU tensor memory during ``fn`` (bytes above the start), from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def peak_memory(impl: Impl, x: torch.Tensor, bf16: bool = False) -> int | None:
    """Peak memory of one training step above the memory held before it (bytes)."""
    fn = _op(impl, "train", x.clone(), 0, bf16)
    impl.module.train()
    fn()  # warm: lazily created state (ActNorm init, power-iteration vectors) is not charged
    try:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            base = torch.cuda.memory_allocated(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            fn()
            torch.cuda.synchronize(x.device)
            return torch.cuda.max_memory_allocated(x.device) - base
        return _cpu_peak(fn)
    finally:
        impl.module.eval()


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "n/a"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def fmt_bytes(v: int | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 2**20:.2f} MiB"
