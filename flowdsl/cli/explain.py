"""The ``flowdsl explain`` command: pictures of what the checker proves (PNG, SVG or one HTML page).

``flowdsl explain SPEC`` lists the pictures of each model; ``-o FILE.png|svg`` draws them into one
file, ``-o FILE.html`` writes a self-contained page with the report, the IR graph and the pictures.
``--position`` picks the prediction drawn (autoregressive models), ``--picture`` picks pictures and
``--compare OTHER.ar`` draws another image model's receptive field beside this one. Bad arguments
are one line, never a traceback. No torch is imported.

Example:
    >>> from flowdsl.cli.main import main
    >>> main(["explain", "specs/pixelcnn.ar", "--picture", "masks"])  # doctest: +ELLIPSIS
    pixelcnn: masks: pixelcnn: masked convolution kernels
    ...
    0
    >>> main(["explain", "specs/pixelcnn.ar", "-o", "pictures.pdf"])  # one line on stderr: cannot write ...
    1
"""

from __future__ import annotations

import sys
from pathlib import Path

from flowdsl.cli.arguments import positive_int

__all__ = ["add_commands", "cmd_explain", "PICTURE_NAMES"]

#: every picture's name (``--picture``)
PICTURE_NAMES = ("reads", "layers", "masks", "stacks", "attention", "reach", "made", "compare", "coupling-masks",
                 "jacobian-structure", "jacobian", "factored")
_SUFFIXES = (".png", ".svg", ".html")


def _fail(message: str, hint: str | None = None) -> int:
    print(f"flowdsl explain: error: {message}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
    return 1


def _output(path: str | None) -> str | None:
    """A problem with the output path, or None."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in _SUFFIXES:
        return f"cannot write '{path}': use .png, .svg or .html"
    if not out.parent.is_dir():
        return f"the folder '{out.parent}' does not exist"
    return None


def _compare(args, first, position: int | None):
    """The compare picture of ``first`` against the single image model of ``--compare``."""
    from flowdsl.api import analyze_file
    from flowdsl.explain.model_pictures import default_position, explain_error
    from flowdsl.explain.reads import compare_picture

    other = analyze_file(args.compare)
    if not other.ok:
        raise other.error()
    ir = other.model()
    if first.kind != "autoregressive" or ir.kind != "autoregressive" or len(first.input.shape) != 3 \
            or tuple(ir.input.shape) != tuple(first.input.shape):
        raise explain_error(f"--compare draws two autoregressive image models of one input shape; '{first.name}' "
                            f"and '{ir.name}' are not")
    p = position if position is not None else default_position(first)
    return compare_picture([first, ir], p)


def cmd_explain(args) -> int:
    problem = _output(args.output)
    if problem:
        return _fail(problem)
    from flowdsl.api import analyze_file
    from flowdsl.errors import render_all
    from flowdsl.explain.model_pictures import model_pictures, parse_position

    analysis = analyze_file(args.file)
    if analysis.diagnostics and not analysis.ok:
        print(render_all(analysis.diagnostics, analysis.sources), file=sys.stderr)
        return 1
    names = [args.model] if args.model else list(analysis.models)
    irs = [analysis.model(name) for name in names]
    if not irs:
        return _fail(f"{args.file} defines no model")
    suffix = Path(args.output).suffix.lower() if args.output else ""
    if suffix in (".png", ".svg") and len(irs) > 1:
        return _fail(f"{args.file} defines several models ({', '.join(names)}); pick one with --model, or write "
                     f".html")
    only = tuple(args.picture or ())
    pictures = {}
    for ir in irs:
        position = parse_position(args.position, ir) if args.position is not None else None
        found = model_pictures(ir, position, only)
        if args.compare and (not only or "compare" in only):
            found.append(_compare(args, ir, position))
        if only and not found:
            return _fail(f"model '{ir.name}' has no picture {', '.join(only)}")
        pictures[ir.name] = found
    if not args.output:
        for name, found in pictures.items():
            for picture in found:
                print(f"{name}: {picture.name}: {picture.title}\n  {picture.caption}")
        return 0
    if suffix == ".html":
        from flowdsl.explain.page import page

        Path(args.output).write_text(page(analysis, pictures, dpi=args.dpi), encoding="utf-8")
    else:
        from flowdsl.explain.render import save

        save(pictures[irs[0].name], args.output, dpi=args.dpi)
    count = sum(len(found) for found in pictures.values())
    print(f"{args.output}: {count} picture{'s' if count != 1 else ''} of {', '.join(pictures)}")
    return 0


def add_commands(sub) -> None:
    """Register ``explain``."""
    sp = sub.add_parser("explain", help="draw what the checker proves: read sets, blind spots, masks, attention, "
                                        "MADE connectivity, Jacobian structure (PNG, SVG or HTML)")
    sp.add_argument("file", help="the spec (.flow or .ar)")
    sp.add_argument("--model", help="the model to draw (default: every model; PNG and SVG need one)")
    sp.add_argument("--position", help="the prediction to draw: a flat index or coordinates such as 0,4,4 or 4,4 "
                                       "(default: the worst blind spot, else the centre / the last position)")
    sp.add_argument("--picture", action="append", choices=PICTURE_NAMES, help="draw only this picture (repeatable)")
    sp.add_argument("--compare", metavar="SPEC", help="another image model drawn beside this one (receptive fields)")
    sp.add_argument("-o", "--output", help="write FILE.png, FILE.svg or FILE.html (default: list the pictures)")
    sp.add_argument("--dpi", type=positive_int, default=100, help="resolution of the pictures (default 100)")
    sp.set_defaults(run=cmd_explain)
