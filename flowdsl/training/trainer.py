"""Training: Adam on the negative log-likelihood, periodic held-out evaluation, exact resumption,
DistributedDataParallel under ``torchrun``.

:func:`train` works for every compiled model (flows and autoregressive models alike: it only
uses ``log_prob(x, context)``). The data order is a pure function of ``(seed, step)`` and the
checkpoint keeps the model, the optimiser, the step and every rank's random state, so a resumed
run is the uninterrupted run, bit for bit (on the same machine and thread count). Under
``torchrun`` (``WORLD_SIZE > 1``) each rank takes its share of every global batch, gradients are
averaged by DDP (gloo on CPU, nccl on CUDA), and rank 0 alone logs and writes checkpoints.

(The module is ``training``, not ``train``: ``flowdsl.train`` is the function.)

Example:
    >>> import flowdsl, tempfile, os
    >>> spec = os.path.join(tempfile.mkdtemp(), "f.flow")
    >>> _ = open(spec, "w").write("flow f {\\n input x: vector[2]\\n coupling affine(mask=[1, 0])\\n}\\n")
    >>> result = flowdsl.train(spec, "moons", steps=3, batch=16, progress=False, log=None)
    >>> result.step, sorted(result.evaluation)
    (3, ['bits_per_dim', 'examples', 'nats'])
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from flowdsl.checkpoint import load_checkpoint, save_checkpoint
from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.training.data import Dataset, load_data
from flowdsl.training.fitting import fit

__all__ = ["train", "evaluate", "TrainResult", "spec_fingerprint", "DEFAULTS", "tensors"]

#: defaults of the training settings (a resumed run takes the checkpoint's unless told otherwise)
DEFAULTS = {"steps": 1000, "batch": 64, "lr": 1e-3, "seed": 0, "clip": None, "eval_every": None}


@dataclass
class TrainResult:
    """The trained model, the step reached, the per-evaluation history and the last evaluation."""

    model: nn.Module
    step: int
    history: list[dict] = field(default_factory=list)
    evaluation: dict | None = None
    output: str | None = None


def spec_fingerprint(spec: dict) -> str:
    """A hash of a model's spec sources that ignores where they lie and what the main file is called
    (used files are named relative to it)."""
    main = spec["file"].replace(os.sep, "/")
    root = posixpath.dirname(main) or "."

    def rel(name: str) -> str:
        name = name.replace(os.sep, "/")
        return "<main>" if name == main else posixpath.relpath(name, root)

    h = hashlib.sha256(spec["model"].encode() + b"\0")
    for name in sorted(spec["sources"], key=rel):
        h.update(rel(name).encode() + b"\0" + spec["sources"][name].encode() + b"\0")
    return h.hexdigest()


def tensors(ds: Dataset, levels, split: str = "train", device=None):
    """(x, labels or None) of a split as tensors: integers for discrete inputs, floats otherwise."""
    x = ds.train if split == "train" else ds.test
    y = ds.train_labels if split == "train" else ds.test_labels
    x = torch.as_tensor(x).to(device, torch.long if levels else torch.get_default_dtype())
    return x, (torch.as_tensor(y).to(device, torch.long) if y is not None else None)


@torch.no_grad()
def evaluate(model, x, labels=None, batch: int = 512, seed: int = 0) -> dict:
    """Mean negative log-likelihood of ``x`` in nats per example and bits per dimension.

    Runs in evaluation mode under a fixed seed (the dequantization noise of flows), leaving the
    caller's random state and the model's mode as they were."""
    was = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    total = 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch):
            ctx = labels[i:i + batch] if labels is not None and getattr(model, "context_shape", None) == () else None
            total += -model.log_prob(x[i:i + batch], ctx).double().sum().item()
    model.train(was)
    nats = total / max(len(x), 1)
    return {"nats": nats, "bits_per_dim": nats / (math.prod(model.input_shape) * math.log(2)), "examples": len(x)}


class _NLL(nn.Module):
    """The objective as a module, so that DDP and torch.compile wrap one forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, context=None):
        return -self.model.log_prob(x, context)


def _distributed(device):
    """(rank, world, device, initialised-here) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), False
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    mine = not dist.is_initialized()
    if mine:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev, mine


class _Order:
    """Which examples make global batch ``step``: epoch permutations seeded by (seed, epoch)."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed
        self.per_epoch = n // batch
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return self._perm[i * self.batch:(i + 1) * self.batch]


def _rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _error(message: str, hint: str | None = None, where: str = "train") -> FlowDSLError:
    return FlowDSLError([Diagnostic(Pos(str(where)), "error", message, hint)])


def _resume(path, spec: dict, spec_path):
    model, payload = load_checkpoint(path, return_payload=True)
    if "optimizer" not in payload or "step" not in payload:
        raise _error("the checkpoint holds no training state (was it written by `flowdsl compile -o`?)",
                     "train from scratch with -o instead of --resume", path)
    old = payload["spec"]
    if old["model"] != spec["model"] or spec_fingerprint(old) != spec_fingerprint(spec):
        raise _error(f"the spec changed since the checkpoint was written: {spec_path} ({spec['model']}) has "
                     f"spec hash {spec_fingerprint(spec)[:12]}, the checkpoint ({old['model']}) "
                     f"{spec_fingerprint(old)[:12]}",
                     "resume with the spec the checkpoint was trained from, or train from scratch", path)
    return model, payload


def _param_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        if torch.is_tensor(p):  # skip extra state (a MADE's mask counter)
            h.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _settings(payload: dict, given: dict) -> dict:
    cfg = dict(DEFAULTS)
    cfg.update(payload.get("train", {}))
    cfg.update({k: v for k, v in given.items() if v is not None})
    return cfg


class _Clock:
    """Process CPU seconds since the start; under DDP the ranks agree to stop together."""

    def __init__(self, budget: float | None, world: int, device):
        import time

        self.budget, self.world, self.device = budget, world, device
        self._now = time.process_time
        self.start = self._now()

    def spent(self) -> bool:
        if self.budget is None:
            return False
        over = torch.tensor([float(self._now() - self.start >= self.budget)], device=self.device)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(over, op=dist.ReduceOp.MAX)
        return bool(over.item())


def train(spec, data, *, model: str | None = None, steps: int | None = None, batch: int | None = None,
          lr: float | None = None, device=None, compile: bool = False, output=None, resume=None,
          eval_every: int | None = None, eval_size: int = 2048, seed: int | None = None,
          clip: float | None = None, cpu_budget: float | None = None, progress: bool | None = True,
          log=print) -> TrainResult:
    """Train the model of ``spec`` (a spec file) on ``data`` (a name, a path or a :class:`Dataset`).

    ``steps`` is the total number of optimiser steps (a resumed run goes on to it); ``batch`` the
    global batch (split over the ranks); ``eval_every`` steps (default: a tenth of the run) the
    model is evaluated on up to ``eval_size`` held-out examples and, with ``output``, checkpointed
    atomically. ``cpu_budget`` stops earlier, once this process has used that many CPU seconds
    (all threads). ``resume`` continues a checkpoint exactly and refuses one whose spec differs.
    ``progress``: a tqdm bar (None: only on a terminal). ``log`` receives the progress lines
    (rank 0 only; None: silent). Returns a :class:`TrainResult`.
    """
    from flowdsl.api import analyze_file
    from flowdsl.runtime.compiler import compile_model

    rank, world, dev, mine = _distributed(device)
    try:
        analysis = analyze_file(spec)
        if not analysis.ok:
            raise analysis.error()
        ir = analysis.model(model)
        header = ir.header
        ds = data if isinstance(data, Dataset) else load_data(data, shape=header.input.shape,
                                                              levels=header.input.levels)
        ds = fit(ds, header, analysis.sources)
        me = {"file": analysis.unit.main, "model": header.name, "sources": dict(analysis.unit.sources)}
        net, payload = _resume(resume, me, spec) if resume is not None else (None, {})
        cfg = _settings(payload, {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "clip": clip,
                                  "eval_every": eval_every})
        if net is None:
            torch.manual_seed(cfg["seed"])  # the same initial weights on every rank
            net = compile_model(ir, analysis.unit)
        net.to(dev)
        if not any(p.requires_grad for p in net.parameters()):
            raise _error(f"{header.kind} '{header.name}' has no trainable parameters: there is nothing to train",
                         f"sample it directly: flowdsl compile {spec} -o CKPT, then flowdsl sample CKPT", spec)
        conditional = getattr(net, "context_shape", None) == ()
        x_train, y_train = tensors(ds, header.input.levels, "train", dev)
        x_test, y_test = tensors(ds, header.input.levels, "test", dev)
        x_test, y_test = x_test[:eval_size], (y_test[:eval_size] if y_test is not None else None)
        if cfg["batch"] % world or cfg["batch"] < world:
            raise _error(f"the batch ({cfg['batch']}) must be a multiple of the number of processes ({world})")
        if cfg["batch"] > len(x_train):
            raise _error(f"the batch ({cfg['batch']}) is larger than the training split of '{ds.name}' "
                         f"({len(x_train)} examples)", "use a smaller --batch")
        order = _Order(len(x_train), cfg["batch"], cfg["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        start, history = int(payload.get("step", 0)), list(payload.get("history", []))
        if resume is not None:
            opt.load_state_dict(payload["optimizer"])
            for group in opt.param_groups:
                group["lr"] = cfg["lr"]
            if len(payload.get("rng", [])) == world:
                _set_rng_state(payload["rng"][rank], dev)
        else:
            torch.manual_seed(cfg["seed"] + rank)
            with torch.no_grad():  # data-dependent initialisation (actnorm) on the whole first global batch
                net.train()
                first = order(0)
                net.log_prob(x_train[first], y_train[first] if conditional else None)
        objective = _NLL(net)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            objective = DistributedDataParallel(objective, device_ids=[dev.index] if dev.type == "cuda" else None)
        if compile:
            objective = torch.compile(objective)
        every = cfg["eval_every"] or max(1, cfg["steps"] // 10)
        dims = math.prod(header.input.shape) * math.log(2)
        say = log if rank == 0 and log is not None else (lambda *a, **k: None)
        clock = _Clock(cpu_budget, world, dev)

        def checkpoint(step):
            states = [_rng_state(dev)]
            if world > 1:
                import torch.distributed as dist

                states = [None] * world
                dist.all_gather_object(states, _rng_state(dev))
                states = [{k: v.cpu() for k, v in s.items()} for s in states]
            if rank == 0 and output is not None:
                save_checkpoint(net, output, optimizer=opt.state_dict(), step=step, rng=states, train=cfg,
                                history=history, data=ds.name, world_size=world)

        from tqdm.auto import tqdm

        hide = True if rank != 0 else (None if progress is None else not progress)  # None: on a terminal only
        bar = tqdm(total=cfg["steps"], initial=start, disable=hide, desc=f"train {header.name}", dynamic_ncols=True,
                   file=sys.stderr)
        write = bar.write if not bar.disable and log is not None else say
        net.train()
        evaluation, step = None, start
        while step < cfg["steps"]:
            idx = order(step)[rank::world]
            loss = objective(x_train[idx], y_train[idx] if conditional else None).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["clip"]:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip"])
            opt.step()
            step, value = step + 1, loss.item()
            if not math.isfinite(value):
                raise _error(f"the loss became {value} at step {step}", "lower --lr, or set --clip")
            bar.update(1)
            bar.set_postfix_str(f"loss {value:.3f} nats, {value / dims:.3f} bits/dim")
            stop = clock.spent()
            if step % every == 0 or step == cfg["steps"] or stop:
                evaluation = evaluate(net, x_test, y_test) if rank == 0 else None
                if rank == 0:
                    history.append({"step": step, "train_bits_per_dim": value / dims,
                                    "eval_nats": evaluation["nats"], "eval_bits_per_dim": evaluation["bits_per_dim"]})
                    write(f"step {step}/{cfg['steps']}: train {value / dims:.4f} bits/dim, held-out "
                          f"{evaluation['bits_per_dim']:.4f} bits/dim ({evaluation['nats']:.2f} nats)")
                checkpoint(step)
            if stop:
                write(f"stopped at step {step}: the CPU budget of {cpu_budget:g} s is spent")
                break
        bar.close()
        if evaluation is None and rank == 0:
            evaluation = evaluate(net, x_test, y_test)
        if world > 1:
            print(f"rank {rank}/{world}: parameters sha256 {_param_digest(net)}", file=sys.stderr, flush=True)
            # every rank arrives before any tears the group down: a rank that exits while its peer is still
            # in a gloo call aborts ("terminate called without an active exception", seen in CI runs)
            import torch.distributed as dist

            dist.barrier()
        if output is not None and step > start:
            say(f"saved {output} (step {step})")
        return TrainResult(net, step, history, evaluation, str(output) if output else None)
    finally:
        if mine:
            import torch.distributed as dist

            dist.destroy_process_group()
