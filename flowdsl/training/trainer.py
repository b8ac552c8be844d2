"""Training: Adam(W) on the negative log-likelihood, model selection on a validation split, the test split
scored once at the end, exact resumption, DistributedDataParallel under ``torchrun``.

:func:`train` works for every compiled model (flows and autoregressive models alike: it only
uses ``log_prob(x, context)``). A run lasts ``steps`` optimiser steps (or ``epochs`` passes over
the training split); every ``eval_every`` steps it scores the validation split (the data set's
own, or 10% carved from train: :mod:`flowdsl.training.batches`), keeps the best weights by
validation NLL (``model.best.pt`` beside ``model.pt``), stops early after ``patience``
evaluations without improvement, and writes the last checkpoint (``model.pt``, for resuming) and
a line of metrics (``model.metrics.jsonl``). The test split is scored once, at the end, with the
best weights; it never takes part in training or selection. Learning-rate schedules and warm-up
(:mod:`.schedules`), gradient clipping, weight decay (AdamW), parameter averaging (:mod:`.averaging`:
with ``ema`` the averaged weights are what is evaluated, selected and saved) and a divergence
guard (:mod:`.guard`) complete it.

The data order is a pure function of ``(seed, step)`` and the checkpoint keeps the model, the
optimiser, the step, every rank's random state, the schedule, the averages and the early-stopping
counters, so a resumed run is the uninterrupted run, bit for bit (on the same machine and thread
count). Under ``torchrun`` (``WORLD_SIZE > 1``) each rank takes its share of every global batch,
gradients are averaged by DDP (gloo on CPU, nccl on CUDA), and rank 0 alone logs and writes.

(The module is ``training``, not ``train``: ``flowdsl.train`` is the function.)

Example:
    >>> import flowdsl, tempfile, os
    >>> spec = os.path.join(tempfile.mkdtemp(), "f.flow")
    >>> _ = open(spec, "w").write("flow f {\\n input x: vector[2]\\n coupling affine(mask=[1, 0])\\n}\\n")
    >>> result = flowdsl.train(spec, "moons", steps=3, batch=16, progress=False, log=None)
    >>> result.step, sorted(result.evaluation), result.best_step in (1, 2, 3)
    (3, ['bits_per_dim', 'examples', 'nats'], True)
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from flowdsl.checkpoint import save_checkpoint
from flowdsl.errors import Diagnostic, FlowDSLError, Pos
from flowdsl.training.averaging import ParameterAverage
from flowdsl.training.batches import EpochOrder, as_model_input, carve_validation, data_fingerprint
from flowdsl.training.data import DATASETS, Dataset
from flowdsl.training.distributed import CPUClock, distributed, rng_state, share, tear_down
from flowdsl.training.evaluation import evaluate, tensors
from flowdsl.training.fitting import fitted_data
from flowdsl.training.guard import DivergenceGuard, RunningMean
from flowdsl.training.metrics_log import MetricsLog, best_path, metrics_path
from flowdsl.training.resume import check_same_data, open_resume, restore, restore_training, spec_fingerprint
from flowdsl.training.schedules import LRSchedule, parse_schedule
from flowdsl.training.settings import DEFAULTS, merge_settings, settings_error

__all__ = ["train", "evaluate", "TrainResult", "spec_fingerprint", "DEFAULTS", "tensors"]


@dataclass
class TrainResult:
    """The trained model (with the weights scored on test: the best by validation, averaged with ``ema``),
    the step reached, the per-evaluation history, the test evaluation and the selection."""

    model: nn.Module
    step: int
    history: list[dict] = field(default_factory=list)
    evaluation: dict | None = None  # the test split, scored once at the end
    output: str | None = None
    valid_nll: float | None = None  # the best validation NLL (nats per example)
    test_nll: float | None = None  # the test NLL of the selected weights (nats per example)
    best_step: int | None = None  # the step whose weights were selected
    stop_reason: str = "steps"  # steps, patience or budget


class _NLL(nn.Module):
    """The objective as a module, so that DDP and torch.compile wrap one forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, context=None):
        return -self.model.log_prob(x, context)


def _error(message: str, hint: str | None = None, where: str = "train") -> FlowDSLError:
    return FlowDSLError([Diagnostic(Pos(str(where)), "error", message, hint)])


def _param_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        if torch.is_tensor(p):  # skip extra state (a MADE's mask counter)
            h.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _clone(state: dict) -> dict:
    return {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in state.items()}


def _check_call(output, cpu_budget, epochs, steps) -> None:
    if cpu_budget is not None and not (isinstance(cpu_budget, (int, float)) and math.isfinite(cpu_budget)
                                       and cpu_budget > 0):
        raise settings_error(f"cpu_budget must be a positive number of seconds, got {cpu_budget!r}")
    if epochs is not None and steps is not None:
        raise settings_error("give steps or epochs, not both")
    if output is not None:
        from pathlib import Path

        if Path(output).is_dir():
            raise _error("cannot write the checkpoint: the path is a directory", None, output)


def _describe_data(ds: Dataset, carved: bool, x_train, x_valid, x_test, condition=None) -> str:
    origin = f": {ds.source}" if ds.source else ""
    carve = " (10% of train, fixed seed)" if carved else ""
    paired = ""
    if condition is not None:
        where = f" from {ds.context_from}" if ds.context_from else ""
        paired = f"; each example paired with its {condition.name} ({condition.describe()}){where}"
    return (f"data {ds.name}{origin}; training on {len(x_train)} examples, validating on {len(x_valid)}{carve}, "
            f"testing on {len(x_test)} ({str(x_train.dtype).removeprefix('torch.')} in memory){paired}")


def train(spec, data, *, model: str | None = None, steps: int | None = None, batch: int | None = None,
          lr: float | None = None, device=None, compile: bool = False, output=None, resume=None,
          eval_every: int | None = None, eval_size: int | None = None, seed: int | None = None,
          clip: float | None = None, cpu_budget: float | None = None, progress: bool | None = True,
          log=print, epochs: int | None = None, patience: int | None = None, schedule: str | None = None,
          warmup: int = 0, weight_decay: float = 0.0, ema: float | None = None, threads: int | None = None, l2=0.0,
          metrics=None, tensorboard=None, context=None) -> TrainResult:
    """Train the model of ``spec`` (a spec file) on ``data`` (a name, a path or a :class:`Dataset`).

    A conditional model trains on paired data: examples with their condition's values (labels of the
    built-in digits and mnist, a ``.npz`` with ``x`` and an array named as the condition, or ``data`` and
    ``context``, a file of the values one row per example: :mod:`.paired`).

    ``steps`` is the total number of optimiser steps (a resumed run goes on to it), or ``epochs``
    passes over the training split; ``batch`` the global batch (split over the ranks). Every
    ``eval_every`` steps (default: a tenth of the run, or once an epoch with ``epochs``) the model
    is scored on the validation split (its first ``eval_size`` examples; default all), the best
    weights are kept (``output``'s ``.best`` sibling) and, with ``output``, the run is checkpointed
    atomically; ``patience`` evaluations without improvement stop it. ``schedule`` (``cosine``,
    ``step``, ``plateau``, with parameters: :mod:`.schedules`) and ``warmup`` steps shape the
    learning rate; ``clip`` the gradient norm; ``weight_decay`` makes Adam AdamW (``l2``: Adam's own coupled
    penalty ``l2 * w`` in the gradient instead); ``ema`` (such as
    0.999) averages the parameters. ``metrics``: the JSON-lines file (default beside ``output``;
    False: none); ``tensorboard``: a folder for TensorBoard. ``cpu_budget`` stops earlier, once this
    process has used that many CPU seconds. ``threads`` sets torch's CPU threads for the run.
    ``resume`` continues a checkpoint exactly and refuses one whose spec or data differ.
    ``progress``: a tqdm bar (None: only on a terminal). ``log`` receives the progress lines (rank
    0 only; None: silent). Returns a :class:`TrainResult`; a diverging run raises a FlowDSLError.
    """
    from flowdsl.api import analyze_file
    from flowdsl.runtime.compiler import compile_model

    _check_call(output, cpu_budget, epochs, steps)
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise settings_error(f"threads must be a positive integer, got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    rank, world, dev, mine = distributed(device)
    journal = None
    try:
        analysis = analyze_file(spec)
        if not analysis.ok:
            raise analysis.error()
        ir = analysis.model(model)
        header = ir.header
        ds = fitted_data(data, header, analysis.sources, context)
        fingerprint = data_fingerprint(ds)
        ds, carved = carve_validation(ds)
        me = {"file": analysis.unit.main, "model": header.name, "sources": dict(analysis.unit.sources)}
        net, payload = open_resume(resume, me, spec) if resume is not None else (None, {})
        if resume is not None:
            check_same_data(resume, payload, fingerprint)
        given = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "clip": clip, "eval_every": eval_every,
                 "epochs": epochs, "patience": patience, "schedule": schedule, "warmup": warmup,
                 "weight_decay": weight_decay, "ema": ema, "l2": l2}
        if steps is not None:
            given["epochs"] = None
        cfg = merge_settings(payload, given, {"eval_size": eval_size})
        if steps is not None:
            cfg["epochs"] = None
        if net is None:
            torch.manual_seed(cfg["seed"])  # the same initial weights on every rank
            net = compile_model(ir, analysis.unit)
        net.to(dev)
        if not any(p.requires_grad for p in net.parameters()):
            raise _error(f"{header.kind} '{header.name}' has no trainable parameters: there is nothing to train",
                         f"sample it directly: flowdsl compile {spec} -o CKPT, then flowdsl sample CKPT", spec)
        if cfg["batch"] % world or cfg["batch"] < world:
            raise _error(f"the batch ({cfg['batch']}) must be a multiple of the number of processes ({world})")
        if cfg["batch"] > len(ds.train):
            raise _error(f"the batch ({cfg['batch']}) is larger than the training split of '{ds.name}' "
                         f"({len(ds.train)} examples)", "use a smaller --batch")
        order = EpochOrder(len(ds.train), cfg["batch"], cfg["seed"])
        if cfg["epochs"]:
            cfg["steps"] = cfg["epochs"] * order.per_epoch
        conditional = getattr(net, "context_shape", None) is not None
        levels = header.input.levels
        x_train, y_train = tensors(ds, levels, "train", dev)
        x_valid, y_valid = tensors(ds, levels, "valid", dev)
        x_test, y_test = tensors(ds, levels, "test", dev)
        if eval_size is not None:
            x_valid, y_valid = x_valid[:eval_size], (y_valid[:eval_size] if y_valid is not None else None)
        wd = cfg["weight_decay"] or cfg["l2"]  # decoupled (AdamW), or an L2 penalty in Adam's gradient
        opt = (torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=wd) if cfg["weight_decay"] > 0 else
               torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=wd))
        plan = LRSchedule(parse_schedule(cfg["schedule"]), cfg["lr"], cfg["warmup"], cfg["steps"])
        start, history = int(payload.get("step", 0)), list(payload.get("history", []))
        selection = {"best": math.inf, "best_step": None, "bad": 0}
        guard, best_state = DivergenceGuard(), None
        if resume is not None:
            guard_best, best_state = restore_training(resume, payload, optimizer=opt, schedule=plan,
                                                      selection=selection, model=net, device=dev, rank=rank,
                                                      world=world, weight_decay=wd)
            guard = DivergenceGuard(guard_best)
        else:
            torch.manual_seed(cfg["seed"] + rank)
            with torch.no_grad():  # data-dependent initialisation (actnorm) on the whole first global batch
                net.train()
                first = order(0)
                net.log_prob(as_model_input(x_train[first]), y_train[first] if conditional else None)
        average = ParameterAverage(net, cfg["ema"]) if cfg["ema"] else None
        if average is not None and "raw_state_dict" in payload:
            restore(resume, "averaged state", lambda: average.load_from(payload["state_dict"]))
        if start >= cfg["steps"]:
            raise _error(f"the checkpoint is at step {start} already: there is nothing to train up to step "
                         f"{cfg['steps']}", "ask for more --steps (or --epochs)", resume)
        if cfg["patience"] and selection["bad"] >= cfg["patience"]:
            raise _error(f"the run stopped early at step {start} ({selection['bad']} evaluations without "
                         f"improvement): there is nothing to resume", "resume with a larger --patience", resume)
        if compile:  # the model's own torch.compile mode: its tensor paths, for every batch size
            from flowdsl.runtime.torch_compile import use_torch_compile

            use_torch_compile(net)
        objective = _NLL(net)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            objective = DistributedDataParallel(objective, device_ids=[dev.index] if dev.type == "cuda" else None)
        every = cfg["eval_every"] or (order.per_epoch if cfg["epochs"] else max(1, cfg["steps"] // 10))
        dims = math.prod(header.input.shape) * math.log(2)
        say = log if rank == 0 and log is not None else (lambda *a, **k: None)
        clock = CPUClock(cpu_budget, world, dev)
        if rank == 0:
            where = None if metrics is False else (metrics if metrics not in (None, True) else
                                                    (metrics_path(output) if output is not None else None))
            journal = MetricsLog(where, tensorboard, resume_step=start if resume is not None else None, say=say)
            journal.write("start" if resume is None else "resume", step=start, data=ds.name, source=ds.source,
                          settings={k: v for k, v in cfg.items()}, world_size=world)

        def scored_state() -> dict:
            return average.averaged_state(net) if average is not None else net.state_dict()

        def score_valid() -> float:
            if rank != 0:
                return share(0.0, world, dev)
            if average is not None:
                with average.applied(net):
                    nats = evaluate(net, x_valid, y_valid)["nats"]
            else:
                nats = evaluate(net, x_valid, y_valid)["nats"]
            return share(nats, world, dev)

        extra = {"data": ds.name, "data_fingerprint": fingerprint, "train": cfg, "world_size": world,
                 "data_path": None if isinstance(data, Dataset) or str(data) in DATASETS else str(data),
                 "context_path": None if context is None else str(context)}

        def checkpoint(step):
            states = [rng_state(dev)]
            if world > 1:
                import torch.distributed as dist

                states = [None] * world
                dist.all_gather_object(states, rng_state(dev))
                states = [{k: v.cpu() for k, v in s.items()} for s in states]
            if rank == 0 and output is not None:
                raw = {"raw_state_dict": net.state_dict()} if average is not None else {}
                save_checkpoint(net, output, state_dict=scored_state(), optimizer=opt.state_dict(), step=step,
                                rng=states, history=history, schedule=plan.state_dict(), selection=selection,
                                guard_best=guard.best, best_state_dict=best_state, **raw, **extra)

        best_saved = []

        def save_best(state):
            if rank == 0 and output is not None:
                save_checkpoint(net, best_path(output), state_dict=state, step=selection["best_step"],
                                valid_nats=selection["best"], **extra)
                best_saved.append(selection["best_step"])

        from tqdm.auto import tqdm

        hide = True if rank != 0 else (None if progress is None else not progress)  # None: on a terminal only
        bar = tqdm(total=cfg["steps"], initial=start, disable=hide, desc=f"train {header.name}", dynamic_ncols=True,
                   file=sys.stderr)
        write = bar.write if not bar.disable and log is not None else say
        write(_describe_data(ds, carved, x_train, x_valid, x_test, header.condition))
        net.train()
        step, running, reason = start, RunningMean(), "steps"
        while step < cfg["steps"]:
            rate = plan.lr(step)
            for group in opt.param_groups:
                group["lr"] = rate
            idx = order(step)[rank::world]
            loss = objective(as_model_input(x_train[idx]), y_train[idx] if conditional else None).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["clip"]:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip"])
            opt.step()
            step, value = step + 1, share(loss.item(), world, dev, mean=True)
            if average is not None:
                average.update(net, step)
            diverged = guard.check(step, value)
            if diverged:
                kept = f"; the last checkpoint ({output}) is kept" if output is not None and history else ""
                if journal is not None:
                    journal.write("stop", step=step, reason="diverged", detail=diverged)
                raise _error(f"training diverged: {diverged}: stopped{kept}",
                             f"lower the learning rate (it was {rate:g}), clip the gradient norm (--clip) or warm up "
                             f"(--warmup)")
            running.add(value)
            bar.update(1)
            bar.set_postfix_str(f"loss {value:.3f} nats, {value / dims:.3f} bits/dim")
            stop = clock.spent()
            if step % every == 0 or step == cfg["steps"] or stop:
                mean, count = running.take()
                guard.interval_done(mean)
                valid = score_valid()
                improved = valid < selection["best"]
                if improved:
                    selection.update(best=valid, best_step=step, bad=0)
                    best_state = _clone(scored_state())
                    save_best(best_state)
                else:
                    selection["bad"] += 1
                lowered = plan.observe(valid)
                history.append({"step": step, "lr": rate, "train_nats": mean, "train_bits_per_dim": mean / dims,
                                "valid_nats": valid, "valid_bits_per_dim": valid / dims,
                                "best_step": selection["best_step"]})
                write(f"step {step}/{cfg['steps']}: train {mean / dims:.4f} bits/dim ({mean:.2f} nats, mean of "
                      f"{count} steps), validation {valid / dims:.4f} bits/dim ({valid:.2f} nats)"
                      + (" *" if improved else "") + (f", learning rate lowered to {plan.lr(step):.3g}"
                                                      if lowered else ""))
                if journal is not None:
                    journal.write("eval", epoch=order.epoch(step - 1), **history[-1])
                checkpoint(step)
                if cfg["patience"] and selection["bad"] >= cfg["patience"]:
                    reason = "patience"
                    write(f"stopped early at step {step}: no improvement on validation for {selection['bad']} "
                          f"evaluations (best {selection['best']:.2f} nats at step {selection['best_step']})")
                    break
            if stop:
                reason = "budget"
                write(f"stopped at step {step}: the CPU budget of {cpu_budget:g} s is spent")
                break
        bar.close()
        if best_state is not None:
            if not best_saved and resume is not None and output is not None and \
                    os.path.abspath(output) != os.path.abspath(resume):
                save_best(best_state)  # a resumed run writing elsewhere gets its best checkpoint too
            net.load_state_dict(best_state)
        evaluation = evaluate(net, x_test, y_test) if rank == 0 else None
        if evaluation is not None:
            weights = f"step {selection['best_step']}, best on validation" + (", averaged" if average else "")
            write(f"test: {evaluation['bits_per_dim']:.4f} bits/dim ({evaluation['nats']:.2f} nats, "
                  f"{evaluation['examples']} examples), scored once with the weights of {weights}")
            if journal is not None:
                journal.write("stop", step=step, reason=reason)
                journal.write("test", step=step, best_step=selection["best_step"], **evaluation)
        if world > 1:
            print(f"rank {rank}/{world}: parameters sha256 {_param_digest(net)}", file=sys.stderr, flush=True)
            # every rank arrives before any tears the group down: a rank that exits while its peer is still
            # in a gloo call aborts ("terminate called without an active exception", seen in CI runs)
            import torch.distributed as dist

            dist.barrier()
        if output is not None:
            say(f"saved {output} (step {step}) and {best_path(output)} (step {selection['best_step']})")
        return TrainResult(net, step, history, evaluation, str(output) if output else None, selection["best"],
                           evaluation["nats"] if evaluation else None, selection["best_step"], reason)
    finally:
        if journal is not None:
            journal.close()
        torch.set_num_threads(old_threads)
        tear_down(mine)
