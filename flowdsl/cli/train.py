"""``flowdsl train`` and ``flowdsl eval``: the training loop and the held-out score on the command line.

Torch is imported only when one of these commands runs (``flowdsl check`` stays torch-free).

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_commands(sub)
    >>> sorted(sub.choices)
    ['eval', 'train']
"""

from __future__ import annotations

import sys

__all__ = ["add_commands", "cmd_train", "cmd_eval"]


def cmd_train(args) -> int:
    from flowdsl.training.trainer import train

    output = args.output or args.resume
    if output is None:
        print("flowdsl train: error: say where to write the checkpoint with -o CKPT", file=sys.stderr)
        return 2
    result = train(args.spec, args.data, model=args.model, steps=args.steps, batch=args.batch, lr=args.lr,
                   device=args.device, compile=args.compile, output=output, resume=args.resume,
                   eval_every=args.eval_every, seed=args.seed, clip=args.clip, cpu_budget=args.cpu_budget,
                   progress=False if args.quiet else None,
                   log=print)
    ev = result.evaluation
    if ev is not None:
        print(f"{result.model.name}: step {result.step}, held-out {ev['bits_per_dim']:.4f} bits/dim "
              f"({ev['nats']:.2f} nats, {ev['examples']} examples)")
    return 0


def cmd_eval(args) -> int:
    import torch

    from flowdsl.checkpoint import load_checkpoint
    from flowdsl.training.data import load_data
    from flowdsl.training.fitting import fit
    from flowdsl.training.trainer import evaluate, tensors

    model, payload = load_checkpoint(args.checkpoint, return_payload=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    name = args.data or payload.get("data")
    if name is None:
        print(f"{args.checkpoint}: error: the checkpoint does not say which data it was trained on: pass --data",
              file=sys.stderr)
        return 2
    header = model.ir.header
    ds = fit(load_data(name, shape=header.input.shape, levels=header.input.levels), header, model.spec["sources"])
    x, y = tensors(ds, header.input.levels, args.split, device)
    try:
        result = evaluate(model, x, y, batch=args.batch, seed=args.seed)
    except NotImplementedError as err:  # a sampler without a likelihood (texture synthesis)
        print(f"{args.checkpoint}: error: {err}", file=sys.stderr)
        return 1
    step = f", step {payload['step']}" if "step" in payload else ""
    print(f"{model.name}{step} on {ds.name} ({args.split} split, {result['examples']} examples): "
          f"{result['nats']:.4f} nats, {result['bits_per_dim']:.4f} bits/dim")
    return 0


def add_commands(sub) -> None:
    """Register ``train`` and ``eval`` on the ``flowdsl`` command's subparsers."""
    sp = sub.add_parser("train", help="train a spec's model on data (Adam; torchrun for several processes)",
                        description="Train with Adam on the negative log-likelihood. Under `torchrun --nproc_per_node "
                                    "N -m flowdsl train ...` the processes share each batch (DistributedDataParallel).")
    sp.add_argument("spec", help="the spec file")
    sp.add_argument("--data", required=True, help="a built-in data set (moons, circles, checkerboard, 8gaussians, "
                    "pinwheel, spirals, digits, digits-binary, mnist, mnist-binary, waveform), a .npy or .npz file, "
                    "or a folder of PNGs")
    sp.add_argument("--model", help="the model to train (when the file has several)")
    sp.add_argument("--steps", type=int, help="total optimiser steps (default 1000; a resumed run goes on to it)")
    sp.add_argument("--batch", type=int, help="global batch size (default 64)")
    sp.add_argument("--lr", type=float, help="Adam's learning rate (default 1e-3)")
    sp.add_argument("--seed", type=int, help="seed of the initial weights, the data order and the noise (default 0)")
    sp.add_argument("--clip", type=float, help="clip the gradient norm to this value (default: no clipping)")
    sp.add_argument("--eval-every", type=int, help="evaluate and checkpoint every this many steps (default: steps/10)")
    sp.add_argument("--cpu-budget", type=float, metavar="SECONDS",
                    help="stop once this process has used this many CPU seconds (all threads)")
    sp.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    sp.add_argument("--compile", action="store_true", help="torch.compile the objective")
    sp.add_argument("--resume", help="continue this checkpoint exactly (refused if the spec changed)")
    sp.add_argument("-o", "--output", help="checkpoint path (default: the --resume path)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown on a terminal otherwise)")
    sp.set_defaults(run=cmd_train)

    sp = sub.add_parser("eval", help="negative log-likelihood of a checkpoint on a data set's test split")
    sp.add_argument("checkpoint")
    sp.add_argument("--data", help="data set or path (default: the one it was trained on)")
    sp.add_argument("--split", choices=("test", "train"), default="test")
    sp.add_argument("--batch", type=int, default=512)
    sp.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise")
    sp.add_argument("--device")
    sp.set_defaults(run=cmd_eval)
