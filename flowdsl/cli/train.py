"""``flowdsl train`` and ``flowdsl eval``: the training loop and a checkpoint's score on the command line.

Torch is imported only when one of these commands runs (``flowdsl check`` stays torch-free).
Every number is range-checked by the parser (:mod:`flowdsl.cli.arguments`): ``--lr nan``,
``--clip -1``, ``--steps 0`` or ``eval --batch 0`` are one line from argparse, never a run.

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_commands(sub)
    >>> sorted(sub.choices)
    ['eval', 'train']
    >>> schedule_argument("cosine:min=0.1"), ema_decay("0.999")
    ('cosine:min=0.1', 0.999)
"""

from __future__ import annotations

import argparse
import math
import sys

from flowdsl.cli.arguments import (
    bounded_int,
    context_refusals,
    device,
    finite_float,
    finite_positive_float,
    nonnegative_float,
    nonnegative_int,
    positive_int,
    seed,
)

__all__ = ["add_commands", "cmd_train", "cmd_eval", "schedule_argument", "ema_decay"]

#: a run longer than this is a typo, not a plan (10**9 steps of a tiny model take years on a CPU)
MAX_STEPS = 10**9
MAX_EPOCHS = 10**6


def schedule_argument(text: str) -> str:
    """A learning-rate schedule (``cosine``, ``step:every=1000,gamma=0.5``, ``plateau``), checked by the parser."""
    from flowdsl.errors import FlowDSLError
    from flowdsl.training.schedules import parse_schedule

    try:
        parse_schedule(text)
    except FlowDSLError as err:
        d = err.diagnostics[0]
        raise argparse.ArgumentTypeError(d.message + (f" ({d.hint})" if d.hint else "")) from None
    return text


def ema_decay(text: str) -> float:
    """A decay strictly between 0 and 1 (0.999)."""
    v = finite_float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a decay between 0 and 1 (such as 0.999), got {text!r}")
    return v


def cmd_train(args) -> int:
    from flowdsl.training.trainer import train

    output = args.output or args.resume
    if output is None:
        print("flowdsl train: error: say where to write the checkpoint with -o CKPT", file=sys.stderr)
        return 2
    result = train(args.spec, args.data, model=args.model, steps=args.steps, batch=args.batch, lr=args.lr,
                   device=args.device, compile=args.compile, output=output, resume=args.resume,
                   eval_every=args.eval_every, eval_size=args.eval_size, seed=args.seed, clip=args.clip,
                   cpu_budget=args.cpu_budget, progress=False if args.quiet else None, log=print,
                   epochs=args.epochs, patience=args.patience, schedule=args.schedule, warmup=args.warmup or 0,
                   weight_decay=args.weight_decay or 0.0, l2=args.l2 or 0.0, ema=args.ema, threads=args.threads,
                   metrics=False if args.no_metrics else args.metrics, tensorboard=args.tensorboard,
                   context=args.context)
    ev = result.evaluation
    if ev is not None:
        print(f"{result.model.name}: step {result.step}, test {ev['bits_per_dim']:.4f} bits/dim "
              f"({ev['nats']:.2f} nats, {ev['examples']} examples) with the weights of step {result.best_step} "
              f"(validation {result.valid_nll:.2f} nats)")
    return 0


def cmd_eval(args) -> int:
    import torch

    from flowdsl.checkpoint import load_checkpoint
    from flowdsl.training.batches import carve_validation
    from flowdsl.training.devices import resolve_device
    from flowdsl.training.fitting import fitted_data
    from flowdsl.training.trainer import evaluate, tensors

    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, payload = load_checkpoint(args.checkpoint, return_payload=True)
    model.to(device)
    name = args.data or payload.get("data_path") or payload.get("data")
    if not isinstance(name, str):
        print(f"{args.checkpoint}: error: the checkpoint does not say which data it was trained on: pass --data",
              file=sys.stderr)
        return 2
    context = args.context if args.data or args.context else payload.get("context_path")
    header = model.ir.header
    ds = fitted_data(name, header, model.spec["sources"], context)
    if args.split == "valid":
        ds = carve_validation(ds)[0]  # the data set's own, or the 10% the trainer carved (same fixed seed)
    x, y = tensors(ds, header.input.levels, args.split, device)
    if len(x) == 0:
        print(f"{args.checkpoint}: error: the {args.split} split of '{ds.name}' has no examples", file=sys.stderr)
        return 1
    try:
        result = evaluate(model, x, y, batch=args.batch, seed=args.seed)
    except NotImplementedError as err:  # a sampler without a likelihood (texture synthesis)
        print(f"{args.checkpoint}: error: {err}", file=sys.stderr)
        return 1
    if not math.isfinite(result["nats"]):
        print(f"{args.checkpoint}: error: the negative log-likelihood of the {args.split} split of '{ds.name}' is "
              f"{result['nats']}: the model gives some examples no probability, or the data is not finite",
              file=sys.stderr)
        return 1
    step = f", step {payload['step']}" if "step" in payload else ""
    print(f"{model.name}{step} on {ds.name} ({args.split} split, {result['examples']} examples): "
          f"{result['nats']:.4f} nats, {result['bits_per_dim']:.4f} bits/dim")
    if ds.source:
        print(f"data: {ds.source}")  # which data this was (the full set, or a fallback subset)
    return 0


def _train_parser(sub) -> None:
    sp = sub.add_parser("train", help="train a spec's model on data (Adam; torchrun for several processes)",
                        description="Train with Adam(W) on the negative log-likelihood, select the weights on a "
                                    "validation split (CKPT.best.pt beside CKPT), score the test split once at the "
                                    "end. Under `torchrun --nproc_per_node N -m flowdsl train ...` the processes "
                                    "share each batch (DistributedDataParallel).")
    sp.add_argument("spec", help="the spec file")
    sp.add_argument("--data", required=True, help="a built-in data set (moons, circles, checkerboard, 8gaussians, "
                    "pinwheel, spirals, digits, digits-binary, mnist, mnist-binary, mnist-binary-threshold, waveform), "
                    "a .npy or .npz file, "
                    "or a folder of PNGs")
    sp.add_argument("--context", metavar="FILE", help="conditional models: the condition's values, one row per example "
                    "of --data (a .npy, or a .npz with the condition's name as key); a .npz --data may hold them "
                    "itself, named as the condition")
    sp.add_argument("--model", help="the model to train (when the file has several)")
    length = sp.add_mutually_exclusive_group()
    length.add_argument("--steps", type=bounded_int(1, MAX_STEPS),
                        help="total optimiser steps (default 1000; a resumed run goes on to it)")
    length.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS),
                        help="passes over the training split (instead of --steps)")
    sp.add_argument("--batch", type=positive_int, help="global batch size (default 64)")
    sp.add_argument("--lr", type=finite_positive_float, help="the (peak) learning rate (default 1e-3)")
    sp.add_argument("--schedule", type=schedule_argument, help="learning-rate schedule: constant (default), "
                    "cosine[:min=M], step[:every=K,gamma=G], plateau[:factor=F,patience=P,min=M]")
    sp.add_argument("--warmup", type=nonnegative_int, help="linear warm-up over this many steps (default 0)")
    sp.add_argument("--weight-decay", type=nonnegative_float, help="decoupled weight decay (AdamW; default 0)")
    sp.add_argument("--l2", type=nonnegative_float,
                    help="an L2 penalty l2 * w added to the gradient (torch Adam's weight_decay; default 0)")
    sp.add_argument("--ema", type=ema_decay, help="average the parameters with this decay (such as 0.999): the "
                    "averaged weights are evaluated and saved")
    sp.add_argument("--clip", type=finite_positive_float, help="clip the gradient norm to this value "
                    "(default: no clipping)")
    sp.add_argument("--seed", type=seed, help="seed of the initial weights, the data order and the noise (default 0)")
    sp.add_argument("--eval-every", type=positive_int,
                    help="score the validation split and checkpoint every this many steps (default: steps/10, "
                         "or once an epoch with --epochs)")
    sp.add_argument("--eval-size", type=positive_int, help="score only the first N validation examples")
    sp.add_argument("--patience", type=positive_int,
                    help="stop after this many evaluations without a better validation score")
    sp.add_argument("--cpu-budget", type=finite_positive_float, metavar="SECONDS",
                    help="stop once this process has used this many CPU seconds (all threads)")
    sp.add_argument("--threads", type=positive_int, help="torch's CPU threads")
    sp.add_argument("--device", type=device, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    sp.add_argument("--compile", action="store_true",
                    help="torch.compile the model (its tensor paths, for every batch size: docs/benchmarks.md)")
    sp.add_argument("--resume", help="continue this checkpoint exactly (refused if the spec or the data changed)")
    sp.add_argument("-o", "--output", help="checkpoint path (default: the --resume path)")
    sp.add_argument("--metrics", help="the metrics file, JSON lines (default: CKPT.metrics.jsonl beside CKPT)")
    sp.add_argument("--no-metrics", action="store_true", help="write no metrics file")
    sp.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard in DIR (needs tensorboard)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown on a terminal otherwise)")
    sp.set_defaults(run=context_refusals(cmd_train))


def add_commands(sub) -> None:
    """Register ``train`` and ``eval`` on the ``flowdsl`` command's subparsers."""
    _train_parser(sub)
    sp = sub.add_parser("eval", help="negative log-likelihood of a checkpoint on a data set's test split")
    sp.add_argument("checkpoint")
    sp.add_argument("--data", help="data set or path (default: the one it was trained on)")
    sp.add_argument("--context", metavar="FILE", help="the condition's values, one row per example of --data "
                    "(default: those it was trained with)")
    sp.add_argument("--split", choices=("test", "valid", "train"), default="test",
                    help="valid: the data set's validation split, or the 10%% of train the trainer held out")
    sp.add_argument("--batch", type=positive_int, default=512)
    sp.add_argument("--seed", type=seed, default=0, help="seed of the dequantization noise")
    sp.add_argument("--threads", type=positive_int, help="torch's CPU threads")
    sp.add_argument("--device", type=device, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    sp.set_defaults(run=context_refusals(cmd_eval))
