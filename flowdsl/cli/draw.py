"""``flowdsl sample``, ``complete``, ``interpolate`` and ``graph``: pictures, sounds and arrays from models.

What a file gets depends on its suffix and on the model's input: ``.npy`` always (the raw
integers or reals); ``.png`` an image grid (images; videos one row of frames per sample; square
vectors with levels as images), a scatter + density heat map (2-D vectors) or a waveform plot
(sequences); ``.wav`` mu-law decoded audio (sequences). Torch is imported only when a command runs.

Example:
    >>> occluded((1, 4, 4), "bottom")[0].astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from flowdsl.cli.arguments import bounded_int, context_refusals, device, nonnegative_int, output_file, seed
from flowdsl.errors import Diagnostic, FlowDSLError, Pos

__all__ = ["add_commands", "occluded", "write_output", "cmd_sample", "cmd_complete", "cmd_interpolate", "cmd_graph"]

_SIDES = ("top", "bottom", "left", "right")
#: the most samples, completions or interpolation steps one command draws
MAX_COUNT = 100_000
_COUNT = bounded_int(1, MAX_COUNT)
_RATE = bounded_int(1, 384_000)


def _fail(where, message: str, hint: str | None = None) -> FlowDSLError:
    """One error line ``WHERE: error: MESSAGE`` (``flowdsl`` when there is no file to name)."""
    return FlowDSLError([Diagnostic(Pos(str(where) or "flowdsl"), "error", message, hint)])


def occluded(shape, mask: str) -> np.ndarray:
    """Boolean array of ``shape``, True where ``mask`` hides the input: a side (top, bottom, left, right:
    that half of each image; of a vector or sequence, top/left is the first half) or a PNG (white hides)."""
    shape = tuple(shape)
    if mask in _SIDES:
        hidden = np.zeros(shape, dtype=bool)
        if len(shape) == 1:
            half = shape[0] // 2
            hidden[:half] = mask in ("top", "left")
            hidden[half:] = mask in ("bottom", "right")
            return hidden
        h, w = shape[-2:]
        rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
        side = {"top": rows < h // 2, "bottom": rows >= h // 2, "left": cols < w // 2, "right": cols >= w // 2}[mask]
        return np.broadcast_to(side, shape).copy()
    if not Path(mask).is_file():
        raise _fail(mask, f"--mask must be one of {', '.join(_SIDES)} or a PNG file; '{mask}' is neither")
    from flowdsl.training.user_data import read_png

    a, levels = read_png(mask)
    m = a.mean(axis=0) > (levels - 1) / 2  # white hides (grey level above the middle)
    if len(shape) < 2 or m.shape != shape[-2:]:
        raise _fail(mask, f"the mask is {m.shape[1]}x{m.shape[0]} pixels, but the model's input is "
                          f"{list(shape)}")
    return np.broadcast_to(m, shape).copy()


def _kind(model) -> str:
    return model.ir.header.input.type_name


def _as_images(model, x: np.ndarray):
    """[N, C, H, W] view of samples, or None when the input is not image-like (a vector of a square
    number of discrete features, such as flattened digits, is shown as a square image)."""
    kind, shape = _kind(model), model.input_shape
    if kind == "image":
        return x
    if kind == "vector" and model.levels and shape[0] >= 16 and math.isqrt(shape[0]) ** 2 == shape[0]:
        s = math.isqrt(shape[0])
        return x.reshape(len(x), 1, s, s)
    return None


def _density(model, samples: np.ndarray, data=None, context=None):
    """(xs, ys, log p on the grid) of a 2-D model; for a conditional one, at ``context`` (one context, or
    class 0 of a label); None when there is no single context to draw it at."""
    import torch

    if model.context_shape is not None and context is None and model.context_shape != ():
        return None
    ref = samples if data is None else np.concatenate([samples, data])
    lo, hi = np.quantile(ref, 0.005, axis=0), np.quantile(ref, 0.995, axis=0)
    pad = (hi - lo) * 0.15 + 1e-3
    if model.levels:
        xs, ys = np.arange(model.levels), np.arange(model.levels)
    else:
        xs, ys = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 160), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 160)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), device=_device(model))
    pts = pts.long() if model.levels else pts.to(torch.get_default_dtype())
    was = model.training
    model.eval()
    with torch.no_grad():
        if context is not None:
            ctx = torch.as_tensor(context, device=pts.device)
        else:
            ctx = torch.zeros((), dtype=torch.long, device=pts.device) if model.context_shape == () else None
        logp = torch.cat([model.log_prob(c, ctx) for c in pts.split(4096)])
    model.train(was)
    return xs, ys, logp.double().cpu().numpy().reshape(len(ys), len(xs))


def write_output(model, x: np.ndarray, path, cols: int | None = None, rgb=None, data=None, rate: int = 16000,
                 context=None) -> str:
    """Write samples ``x`` ([N, *input_shape]) to ``path`` by its suffix; returns what was written. ``context``:
    the one context all samples were drawn at (a 2-D model's density is drawn at it)."""
    from flowdsl.cli import plotting
    from flowdsl.training.data import mu_law_decode

    path = Path(path)
    suffix, kind = path.suffix.lower(), _kind(model)
    if suffix == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x)
        return f"array {list(x.shape)}"
    if suffix == ".wav":
        if kind != "sequence":
            raise _fail(path, f"a WAV file needs a sequence model, but the input is {kind}{list(model.input_shape)}",
                        "write .png or .npy")
        signal = mu_law_decode(x, model.levels) if model.levels else np.clip(x, -1, 1)
        frames = plotting.write_wav(signal, path, rate=rate)
        return f"{len(x)} sound(s), {frames / rate:.2f} s at {rate} Hz"
    if suffix != ".png":
        raise _fail(path, f"cannot write '{suffix}' files", "use .png, .npy or .wav")
    if kind == "video":
        n, t = x.shape[:2]
        w, h = plotting.image_grid(x.reshape(n * t, *x.shape[2:]), path, model.levels, cols=t)
        return f"{n} video(s) of {t} frames, {w}x{h} pixels"
    images = _as_images(model, x) if rgb is None else x
    if images is not None:
        w, h = plotting.image_grid(images, path, model.levels, cols=cols, rgb=rgb)
        return f"{len(x)} image(s), {w}x{h} pixels"
    if kind == "vector" and model.input_shape == (2,):
        density = _density(model, x, data, context)
        w, h = plotting.scatter_density(x, path, density, data=data, title=model.name)
        return f"{len(x)} points with the {'density' if density is not None else 'histogram'}, {w}x{h} pixels"
    if kind == "sequence":
        w, h = plotting.waveform_plot(mu_law_decode(x, model.levels) if model.levels else x, path)
        return f"{len(x)} waveform(s), {w}x{h} pixels"
    raise _fail(path, f"no picture for {kind}{list(model.input_shape)} samples", "write .npy instead")


def _device(model):
    import torch

    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else torch.device("cpu")


def _context(model, n: int | None, label=None, context=None, default: int = 16, own=None):
    """(the context of the samples or None, their number) from ``--label``/``--context``
    (:func:`flowdsl.training.paired.choose_contexts`), on the model's device."""
    import torch

    from flowdsl.training.paired import choose_contexts

    values, count = choose_contexts(model.ir.header.condition, f"'{model.name}'", n, label, context, default, own)
    return (None if values is None else torch.as_tensor(values, device=_device(model))), count


def _load(path, device):
    import torch

    from flowdsl.checkpoint import load_checkpoint

    model, payload = load_checkpoint(path, return_payload=True)
    model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    model.eval()
    return model, payload


def _dataset(model, name, context=None):
    from flowdsl.training.fitting import fitted_data

    return fitted_data(name, model.ir.header, model.spec["sources"], context)


def _trained_on(payload) -> tuple[str | None, str | None]:
    """The data (a name or a path) and context file a checkpoint was trained on."""
    return payload.get("data_path") or payload.get("data"), payload.get("context_path")


def cmd_sample(args) -> int:
    import torch

    model, payload = _load(args.checkpoint, args.device)
    torch.manual_seed(args.seed)
    ctx, n = _context(model, args.n, args.label, args.context)
    x = model.sample(n, ctx).cpu().numpy()
    data = None
    name, context = _trained_on(payload)
    if args.data or (model.input_shape == (2,) and name and model.context_shape in (None, ())):
        data = _dataset(model, args.data or name, None if args.data else context).test
    labels = ctx is not None and model.context_shape == () and args.label is None and args.context is None
    cols = model.ir.header.condition.classes if labels else None
    one = ctx[0].cpu() if ctx is not None and (ctx == ctx[:1]).all() else None  # all drawn at one context
    what = write_output(model, x, args.output, cols=cols, data=data, rate=args.rate, context=one)
    print(f"wrote {args.output}: {what}")
    return 0


def _read_input(model, spec: str):
    """One example of the model's input shape from a PNG, a .npy or ``DATA:INDEX`` (a test example)."""
    shape, levels = model.input_shape, model.levels
    if Path(spec).suffix.lower() == ".png" and Path(spec).is_file():
        from flowdsl.training.user_data import read_png

        a, depth = read_png(spec)
        if shape and shape[0] == 1 and a.shape[0] == 3:
            a = np.rint(a.mean(axis=0, keepdims=True)).astype(np.int64)  # as a greyscale conversion would
        if len(shape) != 3 or a.shape != tuple(shape):
            raise _fail(spec, f"the image is {a.shape[2]}x{a.shape[1]} with {a.shape[0]} channel(s), but the input "
                              f"of '{model.name}' is {_kind(model)}{list(shape)}")
        return np.rint(a.astype(np.float64) * (levels - 1) / (depth - 1)).astype(np.int64), None
    if spec.endswith(".npy") and Path(spec).is_file():
        from flowdsl.training.user_data import check_array, load_npy

        a = check_array(load_npy(spec), spec, examples=False)
        a = a[0] if a.ndim == len(shape) + 1 and len(a) else a
        if tuple(a.shape) != tuple(shape):
            raise _fail(spec, f"the array is {list(a.shape)}, but the input of '{model.name}' is {list(shape)}")
        if (a.dtype.kind == "f" and not np.all(a == np.round(a))) or a.min() < 0 or a.max() >= levels:
            raise _fail(spec, f"the input of '{model.name}' is whole numbers in 0..{levels - 1} (levels {levels}); "
                              f"the array holds values in {a.min():g}..{a.max():g}")
        return a.astype(np.int64), None
    name, _, index = spec.rpartition(":")
    if not name or not index.isdigit():
        raise _fail(spec, "--input must be a PNG, a .npy file or DATA:INDEX (a test example, e.g. digits:0)")
    ds = _dataset(model, name)
    i = int(index)
    if i >= len(ds.test):
        raise _fail(spec, f"'{name}' has {len(ds.test)} test examples; {i} is out of range")
    return ds.test[i], (ds.test_labels[i] if ds.test_labels is not None else None)


def cmd_complete(args) -> int:
    import torch

    model, _ = _load(args.checkpoint, args.device)
    if not hasattr(model, "complete"):
        raise _fail(args.checkpoint, f"complete needs an autoregressive model; '{model.name}' is a flow, which has "
                                     "no left-to-right conditionals to sample the hidden part from",
                    "use `flowdsl sample` or `flowdsl interpolate` with a flow")
    x, label = _read_input(model, args.input)
    hidden = occluded(model.input_shape, args.mask)
    torch.manual_seed(args.seed)
    ctx, n = _context(model, args.n, args.label, args.context, default=4, own=label)
    dev = _device(model)
    batch = torch.as_tensor(x, device=dev).expand(n, *model.input_shape).clone()
    known = torch.as_tensor(~hidden, device=dev).expand_as(batch)
    out = model.complete(batch, known, ctx).cpu().numpy()
    images = _as_images(model, np.concatenate([x[None], out]))
    if Path(args.output).suffix.lower() == ".png" and images is not None:
        from flowdsl.cli.plotting import OCCLUDED, to_rgb

        rgb = to_rgb(images, model.levels)
        shown = rgb[0].copy()
        cover = hidden.reshape(images.shape[1:]).any(axis=0) if images.shape[1] == 3 else \
            hidden.reshape(images.shape[1:]).transpose(1, 0, 2).reshape(images.shape[2], -1)
        shown[cover] = OCCLUDED
        rgb = np.concatenate([rgb[:1], shown[None], rgb[1:]])
        what = write_output(model, rgb, args.output, cols=n + 2, rgb=rgb) + \
            f" (original, occluded, {n} completion(s))"
    else:
        what = write_output(model, out, args.output, rate=args.rate) + f" ({n} completion(s))"
    print(f"wrote {args.output}: {what}")
    return 0


def cmd_interpolate(args) -> int:
    import torch

    model, payload = _load(args.checkpoint, args.device)
    if not hasattr(model, "inverse"):
        raise _fail(args.checkpoint, f"interpolate needs a flow's latent space; '{model.name}' is an autoregressive "
                                     "model", "use `flowdsl complete` or `flowdsl sample`")
    name, context = _trained_on(payload)
    name = args.data or name
    if name is None:
        raise _fail(args.checkpoint, "the checkpoint does not say which data it was trained on: pass --data")
    ds = _dataset(model, name, None if args.data else context)
    a, b = args.index
    if max(a, b) >= len(ds.test):
        raise _fail(name, f"'{ds.name}' has {len(ds.test)} test examples; --index {a} {b} is out of range")
    dev = _device(model)
    x = torch.as_tensor(ds.test[[a, b]], device=dev)
    x = x.to(torch.get_default_dtype()) + (0.5 if model.levels else 0.0)  # the centre of each bin
    ctx = None
    if model.context_shape is not None:
        ctx = torch.as_tensor(ds.test_labels[[a, b]], device=dev)
    with torch.no_grad():
        z, _ = model(x, ctx)
        t = torch.linspace(0, 1, args.steps, device=dev, dtype=z.dtype).view(-1, *[1] * (z.dim() - 1))
        zt = (1 - t) * z[0] + t * z[1]
        ct = None if ctx is None else ctx[(t.flatten() >= 0.5).long()]  # each point decoded at its nearer end's
        xt = model.inverse(zt, ct)
    if model.levels:
        xt = xt.floor().clamp(0, model.levels - 1).long()
    xt = xt.cpu().numpy()
    if Path(args.output).suffix.lower() == ".png" and model.input_shape == (2,):
        from flowdsl.cli.plotting import path_plot

        w, h = path_plot(xt, args.output, data=ds.test, title=f"{model.name}: latent interpolation")
        what = f"a path of {args.steps} points, {w}x{h} pixels"
    else:
        what = write_output(model, xt, args.output, cols=args.steps)
    print(f"wrote {args.output}: {what} (test examples {a} -> {b})")
    return 0


def cmd_graph(args) -> int:
    from flowdsl.api import analyze_file
    from flowdsl.cli.graph import draw, to_dot
    from flowdsl.cli.main import _print_diagnostics

    analysis = analyze_file(args.spec, allow_outside=args.allow_outside)
    _print_diagnostics(analysis.diagnostics, analysis.sources)
    if not analysis.ok:
        return 1
    if args.model is None and len(analysis.models) > 1:
        raise _fail(args.spec, f"the file defines several models ({', '.join(analysis.models)}); pick one with --model")
    ir = analysis.model(args.model)
    if args.output is None:
        sys.stdout.write(to_dot(ir))
        return 0
    try:
        engine = draw(ir, args.output, args.engine)
    except ValueError as err:
        raise _fail(args.output, str(err)) from None
    print(f"wrote {args.output} ({engine}, {ir.graph().number_of_nodes()} nodes)")
    return 0


def add_commands(sub) -> None:
    """Register ``sample``, ``complete``, ``interpolate`` and ``graph``."""
    def common(sp):
        sp.add_argument("checkpoint")
        sp.add_argument("-o", "--output", required=True, type=output_file,
                        help="output file: .png, .npy (or .wav for sequences)")
        sp.add_argument("--device", type=device, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
        sp.add_argument("--seed", type=seed, default=0)

    sp = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG, WAV or .npy file")
    common(sp)
    sp.add_argument("-n", type=_COUNT, help=f"number of samples (default 16, or one per row of --context; at most "
                                            f"{MAX_COUNT:,})")
    sp.add_argument("--label", type=nonnegative_int,
                    help="class of label-conditional models (default: every class in turn)")
    sp.add_argument("--context", metavar="FILE", help="conditional models: a .npy of one context [*shape] for all "
                    "-n samples, or one per sample [N, *shape] (a .npz: the array named as the condition)")
    sp.add_argument("--data", help="2-D models: data drawn under the samples (default: the training data)")
    sp.add_argument("--rate", type=_RATE, default=16000, help="sample rate of WAV files")
    sp.set_defaults(run=context_refusals(cmd_sample))

    sp = sub.add_parser("complete", help="complete occluded inputs with an autoregressive model")
    common(sp)
    sp.add_argument("--input", required=True, help="a PNG, a .npy file, or DATA:INDEX (a test example, e.g. digits:3)")
    sp.add_argument("--mask", required=True, help="the hidden part: top, bottom, left, right or a PNG (white = hidden)")
    sp.add_argument("-n", type=_COUNT, help="number of completions (default 4, or one per row of --context)")
    sp.add_argument("--label", type=nonnegative_int, help="class of conditional models (default: the example's)")
    sp.add_argument("--context", metavar="FILE", help="conditional models: the context of every completion, or one "
                    "per completion (a .npy; default: the example's own, for DATA:INDEX)")
    sp.add_argument("--rate", type=_RATE, default=16000, help="sample rate of WAV files")
    sp.set_defaults(run=context_refusals(cmd_complete))

    sp = sub.add_parser("interpolate", help="decode a straight line between two examples' latents (flows)")
    common(sp)
    sp.add_argument("--data", help="data set or path (default: the one it was trained on)")
    sp.add_argument("--index", type=nonnegative_int, nargs=2, default=(0, 1), metavar=("A", "B"),
                    help="test examples (default 0 1)")
    sp.add_argument("--steps", type=_COUNT, default=8, help="points on the line, ends included (default 8)")
    sp.set_defaults(run=context_refusals(cmd_interpolate))

    sp = sub.add_parser("graph", help="draw a spec's IR: layers, shapes, lines (.svg, .png or .dot)")
    sp.add_argument("spec")
    sp.add_argument("--model")
    sp.add_argument("-o", "--output", type=output_file,
                    help=".svg, .png or .dot (default: DOT text on standard output)")
    from flowdsl.cli.main import add_allow_outside

    add_allow_outside(sp)
    sp.add_argument("--engine", choices=("auto", "graphviz", "matplotlib"), default="auto",
                    help="auto: Graphviz when its `dot` program is installed, else matplotlib")
    sp.set_defaults(run=cmd_graph)
