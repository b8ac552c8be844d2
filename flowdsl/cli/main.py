"""The ``flowdsl`` command: parse, check, compile, layers.

``parse`` and ``check`` never import torch. A bad spec gets diagnostics and exit status 1,
never a traceback; a bad argument is one line from the parser (exit 2); a file that cannot be read
or written is one line naming it (exit 1). Anything unexpected is one line
``flowdsl: internal error: TYPE: MESSAGE (please report this)`` and exit status 70 (a bug).

Example:
    >>> main(["layers"])  # doctest: +ELLIPSIS
    flow layers:
    ...
    0
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from flowdsl.cli.arguments import device, output_file, positive_int
from flowdsl.errors import FlowDSLError, escape, render_all

__all__ = ["main", "EXTENSIONS", "INTERNAL_ERROR", "add_allow_outside", "add_limit_flags"]

#: exit status of an unexpected exception (EX_SOFTWARE): the backstop, which should never fire
INTERNAL_ERROR = 70

#: modules that add subcommands: each has ``add_commands(subparsers)`` (one module per group of commands)
EXTENSIONS: list[str] = ["flowdsl.cli.train", "flowdsl.cli.draw", "flowdsl.cli.testcmd", "flowdsl.cli.data",
                         "flowdsl.cli.lsp", "flowdsl.cli.explain"]


def _limits(args):
    """The analysis limits the command line sets (``--max-layers`` ... one flag per :data:`FLAGS` entry)."""
    from flowdsl.language.limits import FLAGS, Limits

    kw = {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}
    return Limits(**kw)


def add_limit_flags(parser) -> None:
    """One range-checked flag per analysis limit (``--max-layers``, ``--max-analysis-bytes``, ...)."""
    from flowdsl.language.limits import FLAGS, Limits

    defaults = Limits()
    for name, flag in FLAGS.items():
        what = name.removeprefix("max_").replace("_", " ")
        parser.add_argument(flag, dest=name, type=positive_int, metavar="N",
                            help=f"refuse specs over this limit of {what} (default {getattr(defaults, name):,})")


def _print_diagnostics(diags, sources, stream=None) -> None:
    stream = stream or sys.stderr
    if diags:
        print(render_all(diags, sources), file=stream)


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape is not None else "?"


# ----------------------------------------------------------------------------- parse
def cmd_parse(args) -> int:
    from flowdsl.language import ast
    from flowdsl.language.spec_files import SpecFileError, read_spec
    from flowdsl.language.syntax import parse_program

    status = 0
    for path in args.files:
        try:  # the loader's bounded read: regular files only, at most the size limit
            text = read_spec(path)
            prog = parse_program(text, path)
        except FlowDSLError as err:
            _print_diagnostics(err.diagnostics, err.sources)
            status = 1
            continue
        except SpecFileError as err:
            print(f"{path}: error: {err.message}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: parsed")
        for item in prog.items:
            line = f"{item.pos.line}:{item.pos.column}"
            if isinstance(item, ast.Use):
                print(f"  {line:>7}  use \"{escape(item.path)}\"")
            elif isinstance(item, ast.Let):
                print(f"  {line:>7}  let {item.name}")
            elif isinstance(item, ast.BlockDef):
                print(f"  {line:>7}  block {item.name}({', '.join(item.params)}): {_count(item.body)} statements")
            elif isinstance(item, ast.ModelDef):
                cond = next((s for s in item.body if isinstance(s, ast.ConditionDecl)), None)
                given = f"; {_written(text, cond.pos)}" if cond is not None else ""  # as written: not checked yet
                print(f"  {line:>7}  {item.model_kind} {item.name}: {_count(item.body)} statements{given}")
    return status


def _written(text: str, pos) -> str:
    """The source text of a span, on one line (a declaration may continue over lines inside brackets)."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    span = text[starts[pos.line - 1] + pos.column - 1:starts[pos.end_line - 1] + pos.end_column - 1]
    return " ".join(span.split())


def _count(body) -> int:
    from flowdsl.language import ast

    n = 0
    for s in body:
        n += 1
        if isinstance(s, (ast.Repeat, ast.ForLoop)):
            n += _count(s.body)
    return n


# ----------------------------------------------------------------------------- check
def cmd_check(args) -> int:
    from flowdsl.api import analyze_file

    status = 0
    for path in args.files:
        analysis = analyze_file(path, _limits(args), allow_outside=args.allow_outside)
        _print_diagnostics(analysis.diagnostics, analysis.sources)
        errors = sum(d.severity == "error" for d in analysis.diagnostics)
        warnings = sum(d.severity == "warning" for d in analysis.diagnostics)
        for name, ir in analysis.models.items():
            mine = [d for d in ir.diagnostics if d.severity == "error"]
            verdict = "ok" if ir.complete and not mine else "errors"
            layers = len(ir.layers)
            print(f"{path}: {ir.header.kind} {name}: {verdict} ({layers} layers, {ir.params:,} parameters)")
        if errors:
            status = 1
        print(f"{path}: {errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}")
    return status


# ----------------------------------------------------------------------------- compile
def _report(model, ir, path: str) -> str:
    h = ir.header
    lines = [f"{h.kind} {h.name}  ({path}:{h.pos.line})"]
    inp = h.input
    extra = f" levels {inp.levels}" if inp.levels else ""
    lines.append(f"  input {inp.name}: {inp.type_name}{_shape(inp.shape)}{extra}")
    if h.condition:
        from flowdsl.explain.conditions import condition_summary

        lines.append(f"  condition {condition_summary(h.condition, ir)}")
    if h.kind == "flow":
        lines.append(f"  base: {h.base.describe()}"
                     + ("; uniform dequantization of the integer data" if inp.levels else ""))
    elif h.output is not None:
        lines.append(f"  output: {h.output.describe()}")
    rows = [("#", "line", "layer", "output", "params", "log-det", "notes")]
    for node in ir.layers:
        notes = node.report
        if node.factored is not None:
            notes = f"factors {_shape(node.factored)} out to the base"
        rows.append((str(node.position + 1), f"{node.pos.line}:{node.pos.column}", node.layer.describe(),
                     _shape(node.out_shape), f"{node.params:,}", str(node.logdet or "-"), notes))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [r[k].ljust(widths[k]) if k != 4 else r[k].rjust(widths[k]) for k in range(len(widths))]
        lines.append("  " + "  ".join(cells) + ("  " + r[-1] if r[-1] else ""))
    allocated = sum(p.numel() for p in model.parameters())
    lines.append(f"  total: {len(rows) - 1} layers, {ir.params:,} parameters declared, {allocated:,} allocated")
    return "\n".join(lines)


def _runtime_shapes(model, ir) -> str:
    """Run a batch of zeros through the compiled flow and compare every layer's shape with the IR."""
    import torch

    if ir.header.kind != "flow" or not hasattr(model, "layers"):
        return ""
    was = model.training
    model.eval()
    try:
        x = torch.full((2, *model.input_shape), 0.5 * (model.levels or 1))
        ctx = None  # zeros are a valid context of every condition: class 0, value 0 of levels, 0.0
        if ir.header.condition is not None:
            integer = ir.header.condition.integer
            ctx = torch.zeros(2, *model.context_shape, dtype=torch.long if integer else x.dtype)
        seen = model.layer_shapes(x, ctx)
    finally:
        model.train(was)
    want = [tuple(node.out_shape) for node in ir.layers if node.factored is None]
    if seen != want:
        return "shapes: MISMATCH between inference and runtime"
    return f"shapes: inferred shapes match the runtime ({len(seen)} layers)"


def cmd_compile(args) -> int:
    from flowdsl.api import analyze_file

    analysis = analyze_file(args.file, _limits(args), allow_outside=args.allow_outside)
    _print_diagnostics(analysis.diagnostics, analysis.sources)
    if not analysis.ok:
        return 1
    names = [args.model] if args.model else list(analysis.models)
    if args.output and len(names) > 1:
        print(f"{args.file}: error: the file defines several models ({', '.join(names)}); pick one with --model "
              f"to save it", file=sys.stderr)
        return 1
    from flowdsl.analysis.kinds import model_kind
    from flowdsl.checkpoint import save_checkpoint
    from flowdsl.runtime.compiler import compile_model

    for name in names:
        ir = analysis.model(name)
        model = compile_model(ir, analysis.unit)
        if args.device:
            model.to(args.device)
        print(_report(model, ir, args.file))
        warnings = [d for d in ir.diagnostics if d.severity == "warning"]
        kind = model_kind(ir.kind)
        proved = kind.proved + tuple(c.proves for c in kind.checks if c.proves)
        print("  checks: " + ("passed" if not warnings else f"passed with {len(warnings)} warning(s)")
              + f" ({', '.join(proved)})")
        if args.device in (None, "cpu"):
            verdict = _runtime_shapes(model, ir)
            if verdict:
                print("  " + verdict)
        if args.output:
            save_checkpoint(model.cpu(), args.output)
            print(f"  saved to {args.output}")
    return 0


# ----------------------------------------------------------------------------- layers
def _signature(cls) -> str:
    parts = []
    for key, info in cls.model_fields.items():
        if info.is_required():
            parts.append(key)
        else:
            default = info.get_default(call_default_factory=True)
            text = default.describe() if hasattr(default, "describe") else _value_text(default)
            parts.append(f"{key}={text}")
    return ", ".join(parts)


def _value_text(value) -> str:
    from flowdsl.language.values import describe

    if isinstance(value, str) and value.isidentifier():
        return value  # a bare word, as written in specs
    return "none" if value is None else describe(tuple(value) if isinstance(value, list) else value)


def cmd_layers(args) -> int:
    from flowdsl import layers  # noqa: F401
    from flowdsl.layers.registry import LAYERS, NETS

    md = getattr(args, "markdown", False)
    if md:
        print("# Layer reference\n\nGenerated by `flowdsl layers --markdown` from the registry: every layer, its "
              "arguments with their defaults, and what it is.\n")
    for kind, title in (("flow", "flow layers"), ("autoregressive", "autoregressive layers")):
        print(f"## {title.capitalize()}\n\n| layer | arguments | what |\n| --- | --- | --- |" if md else f"{title}:")
        for name in LAYERS.names():
            cls = LAYERS.get(name)
            if kind in cls.models:
                if md:
                    sig = f"`{_signature(cls)}`" if cls.model_fields else "none"
                    print(f"| `{name}` | {sig} | {cls.summary.replace('|', chr(92) + '|')} |")
                else:
                    print(f"  {name}({', '.join(cls.model_fields)})" + (f"  -- {cls.summary}" if cls.summary else ""))
        if md:
            print()
    print("## Nets (`net=` arguments)\n\n| net | arguments | what |\n| --- | --- | --- |" if md else "nets:")
    for name in NETS.names():
        cls = NETS.get(name)
        if md:
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"| `{name}` | `{_signature(cls)}` | {doc} |")
        else:
            print(f"  {name}({', '.join(cls.model_fields)})")
    if md:
        from flowdsl.explain.conditions import reference_markdown

        print("\n" + reference_markdown(), end="")
    return 0


def add_allow_outside(parser) -> None:
    """``--allow-outside``: let ``use`` load spec files outside the spec's project root (refused by default)."""
    parser.add_argument("--allow-outside", action="store_true",
                        help="let `use` load .flow/.ar files outside the spec's project root")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowdsl", description="Compile normalizing flows and autoregressive models.")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("parse", help="parse specs and print a summary of each")
    sp.add_argument("files", nargs="+")
    sp.set_defaults(run=cmd_parse)
    for name, fn, help_ in (("check", cmd_check, "check specs: shapes, arguments, invertibility, causality"),):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("files", nargs="+")
        sp.set_defaults(run=fn)
    sp = sub.add_parser("compile", help="check, compile and report a spec; -o saves a checkpoint")
    sp.add_argument("file")
    sp.add_argument("--model", help="the model to compile (default: every model of the file)")
    sp.add_argument("-o", "--output", type=output_file,
                    help="save a checkpoint (spec sources, hash, state) to this path")
    sp.add_argument("--device", type=device, help="build the modules on this device (cpu, cuda)")
    sp.set_defaults(run=cmd_compile)
    for sp in (sub.choices["check"], sub.choices["compile"]):
        add_allow_outside(sp)
        add_limit_flags(sp)
    sp = sub.add_parser("layers", help="list the layers and nets the compiler knows")
    sp.add_argument("--markdown", action="store_true", help="print the reference as Markdown (docs/layers.md)")
    sp.set_defaults(run=cmd_layers)
    for module in EXTENSIONS:
        import_module(module).add_commands(sub)
    return p


def _file_error(err: OSError) -> str:
    """One line for a file that could not be read or written: ``PATH: error: REASON``."""
    where = err.filename if err.filename is not None else "flowdsl"
    reason = err.strerror or str(err) or type(err).__name__
    return f"{where}: error: {reason}"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except FlowDSLError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # a file the command reads or writes: one line naming it
        print(_file_error(err), file=sys.stderr)
        return 1
    except Exception as err:  # the backstop: a bug, never a traceback (the adversarial benchmark counts these)
        message = " ".join(str(err).split())[:500]
        print(f"flowdsl: internal error: {type(err).__name__}: {message} (please report this)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

