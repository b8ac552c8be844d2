"""``flowdsl test``, and ``--plugin`` for the commands that read specs (a :data:`flowdsl.cli.main.EXTENSIONS` module).

``flowdsl test SPEC... [--examples N] [--seed S] [--property NAME] [--plugin MODULE]`` runs every
property of :mod:`flowdsl.testing.runner` on every model of the specs and prints a table
(model, property, verdict, worst error, examples tried), then what failed, with the minimal
failing example; the exit status is 1 if anything failed. Hypothesis keeps its files under the
cache folder (:func:`flowdsl.testing.runner.hypothesis_storage`), not in the working directory.

``--plugin MODULE`` (a module name or a ``.py`` file; repeatable) loads user-defined layers
before ``check``, ``compile``, ``layers`` and ``test`` read a spec; installed plugins (the
``flowdsl.layers`` entry points) are loaded for those commands too.

Example:
    >>> from flowdsl.cli.main import main
    >>> import pathlib, tempfile
    >>> spec = pathlib.Path(tempfile.mkdtemp()) / "p.flow"
    >>> _ = spec.write_text("flow p {\\n input x: vector[3]\\n permute(reverse)\\n actnorm\\n}\\n")
    >>> main(["test", str(spec), "--examples", "2", "--property", "bijection"])  # doctest: +ELLIPSIS
    spec    model  property   verdict  worst error  examples  configuration
    ...
    p.flow  p      bijection  pass     ...
    1 passed or skipped, 0 failed (0 skipped)
    0
"""

from __future__ import annotations

import sys

from flowdsl.cli.arguments import positive_int, seed

__all__ = ["add_commands", "cmd_test", "with_plugins"]

_PLUGIN_HELP = "load user-defined layers from this module or .py file first (repeatable)"


def with_plugins(run):
    """Wrap a command: load the installed plugins and those named by ``--plugin`` before running it."""

    def wrapped(args):
        from flowdsl.plugins import load_plugins

        load_plugins(getattr(args, "plugin", None) or ())
        return run(args)

    wrapped.__wrapped__ = run
    return wrapped


def cmd_test(args) -> int:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        print("flowdsl test needs Hypothesis: pip install 'flowdsl[test]'", file=sys.stderr)
        return 1
    import torch

    from flowdsl.testing.runner import PROPERTIES, format_table, hypothesis_storage, run_file

    hypothesis_storage()

    known = {p for props in PROPERTIES.values() for p, _ in props}
    unknown = sorted(set(args.properties or ()) - known)
    if unknown:
        print(f"flowdsl test: error: unknown property {', '.join(unknown)} (properties: {', '.join(sorted(known))})",
              file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # tiny models: one thread is fastest, and fair to a shared machine
    results = []
    try:
        for path in args.files:
            rows = run_file(path, examples=args.examples, seed=args.seed, properties=args.properties)
            results.extend(rows)
            failed = sum(r.failed for r in rows)
            print(f"{path}: {len(rows)} properties, {failed} failed ({sum(r.seconds for r in rows):.1f} s)",
                  file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
    print(format_table(results))
    return 1 if any(r.failed for r in results) else 0


def add_commands(subparsers) -> None:
    """Add ``test``; give ``check``, ``compile`` and ``layers`` a ``--plugin`` option."""
    sp = subparsers.add_parser("test", help="property-test every model of the specs (round trips, log-dets, "
                                            "structure, causality, normalisation); exit 1 on a failure")
    sp.add_argument("files", nargs="+")
    sp.add_argument("--examples", type=positive_int, default=20,
                    help="examples Hypothesis draws per property (default 20)")
    sp.add_argument("--seed", type=seed, help="draw another reproducible stream of examples")
    sp.add_argument("--property", action="append", dest="properties", metavar="NAME",
                    help="run only this property (repeatable)")
    sp.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    sp.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=_PLUGIN_HELP)
    sp.set_defaults(run=with_plugins(cmd_test))
    for name in ("check", "compile", "layers"):
        parser = subparsers.choices.get(name)
        if parser is None:
            continue
        parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=_PLUGIN_HELP)
        run = parser.get_default("run")
        if run is not None:
            parser.set_defaults(run=with_plugins(run))
