"""API calls of the adversarial benchmark: misuse of the functions and of compiled models, with oracles.

An API case is ``("call", function, args, kwargs)`` on :mod:`flowdsl` or ``("model", fixture,
method, input recipe, extra)`` on a model loaded from a fixture checkpoint. Whether the input is
valid is decided when the case is generated (``expect``); a valid call must return finite numbers
of the right shape, an invalid one must raise :class:`flowdsl.errors.FlowDSLError`.

Families: ``api`` (the API functions and flows), ``api-ar`` (autoregressive models), ``api-limits``
(:class:`flowdsl.Limits`).

Example:
    >>> cases = api_cases(50)
    >>> len(cases), sorted({c.family for c in cases})
    (50, ['api', 'api-ar', 'api-limits'])
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from benchmarks.adversarial_cases import Case

__all__ = ["api_cases", "run_api"]

_SHAPES = {"flow": (4,), "cond": (4,), "toy": (2,), "ar": (1, 4, 4)}
_LEVELS = {"flow": 4, "cond": 4, "toy": None, "ar": 4}
_MODELS: dict = {}


def _model(key: str, names):
    if key not in _MODELS:
        import flowdsl

        _MODELS[key] = flowdsl.load(names[f"{key}_ck"])
    model = _MODELS[key]
    model.eval()
    if hasattr(model, "mask_index"):
        model.mask_index = 0
    return model


def _tensor(recipe, shape):
    import numpy as np
    import torch

    what = recipe[0]
    batch = recipe[1] if len(recipe) > 1 else 3
    full = (batch, *shape)
    if what == "int":
        return torch.full(full, recipe[2], dtype=torch.long)
    if what == "float":
        return torch.full(full, recipe[2], dtype=torch.float32)
    if what == "dtype":
        return torch.ones(full, dtype=getattr(torch, recipe[2]))
    if what == "complex":
        return torch.ones(full, dtype=torch.complex64)
    if what == "numpy":
        return np.ones(full, dtype=recipe[2])
    if what == "list":
        return np.ones(full, dtype=np.int64).tolist()
    if what == "wrong_shape":
        return torch.ones((batch, *[s + 1 for s in shape]), dtype=torch.long)
    if what == "scalar":
        return torch.tensor(1)
    if what == "none":
        return None
    if what == "text":
        return "x"
    if what == "bool":
        return torch.ones(full, dtype=torch.bool)
    raise ValueError(recipe)  # pragma: no cover


def _valid(key: str, recipe) -> bool:
    levels = _LEVELS[key]
    what = recipe[0]
    if what in ("complex", "wrong_shape", "scalar", "none", "text"):
        return False
    value = recipe[2] if what in ("int", "float") else 1
    if not math.isfinite(value):
        return False
    if levels is None:
        return True
    return float(value).is_integer() and 0 <= value < levels


def _problem(method: str, result, key: str, batch: int) -> str:
    import torch

    shape = _SHAPES[key]
    levels = _LEVELS[key]
    if method in ("log_prob", "bits_per_dim"):
        if tuple(result.shape) != (batch,):
            return f"{method} has shape {list(result.shape)}, not [{batch}]"
        # -inf nats (+inf bits) for a point far out in the tails is float arithmetic, not a wrong answer
        sign = 1 if method == "log_prob" else -1
        ok = ~torch.isnan(result) & (sign * result < float("inf"))
        return "" if ok.all() else f"{method} is NaN or +inf nats: {result.tolist()[:4]}"
    if method == "forward":
        z, logdet = result
        if tuple(z.shape) != (batch, *shape) or tuple(logdet.shape) != (batch,):
            return "forward gave misshapen results"
        return "" if torch.isfinite(z).all() and torch.isfinite(logdet).all() else "forward is not finite"
    if method == "sample":
        if tuple(result.shape) != (batch, *shape):
            return f"sample({batch}) has shape {list(result.shape)}"
        if levels and result.numel() and (result.min() < 0 or result.max() >= levels):
            return "samples outside 0..levels-1"
        return "" if torch.isfinite(result.double()).all() else "samples are not finite"
    return ""


def run_api(case, names) -> tuple[str, str, float]:
    from flowdsl.errors import FlowDSLError

    op = case.api[0]
    try:
        if op == "call":
            import flowdsl

            _, fn, args, kwargs = case.api
            target = flowdsl.Limits if fn == "Limits" else getattr(flowdsl, fn)
            result = target(*[Path(names["dir"]) / a[1] if isinstance(a, tuple) and a[0] == "path" else a
                              for a in args], **kwargs)
            problem = ""
        else:
            _, key, method, recipe, extra = case.api
            model = _model(key, names)
            if method == "mask_index":
                model.mask_index = extra
                result, problem = None, ""
                if model.mask_index != extra:
                    problem = f"mask_index = {extra!r} was stored as {model.mask_index!r}"
            elif method == "sample":
                ctx = extra
                result = model.sample(recipe, ctx)
                problem = _problem("sample", result, key, recipe) if isinstance(recipe, int) and \
                    not isinstance(recipe, bool) else ""
            else:
                x = _tensor(recipe, _SHAPES[key])
                result = getattr(model, method)(x, extra)
                problem = _problem(method, result, key, recipe[1] if len(recipe) > 1 else 3)
    except FlowDSLError as err:
        if case.expect == "ok":
            return "wrong", "refused valid input: " + " ".join(str(err).split())[:200], 0.0
        return "refused", "", 0.0
    except MemoryError:
        return "oom", "MemoryError", 0.0
    except (ValueError, TypeError) as err:
        if case.family != "api-limits":  # Limits documents ValueError/TypeError for bad values
            return "traceback", f"{type(err).__name__}: {' '.join(str(err).split())[:200]}", 0.0
        if case.expect == "ok":
            return "wrong", f"refused valid input: {err}", 0.0
        return "refused", "", 0.0
    except Exception as err:  # a raw exception: not the documented error type
        text = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        return ("oom" if "allocate" in str(err) else "traceback"), text, 0.0
    if case.expect == "refuse":
        return "wrong", f"accepted: {case.name}", 0.0
    if problem:
        return "wrong", problem, 0.0
    return "ok", "", 0.0


def _calls() -> list[Case]:
    spec = "flow f {\n input x: vector[2]\n coupling affine(mask=half)\n}\n"
    out = []

    def add(name, fn, args, kwargs=None, expect="refuse", family="api"):
        out.append(Case(family, name, "api", api=("call", fn, tuple(args), dict(kwargs or {})), expect=expect))

    for fn in ("compile_source", "analyze_source", "check_source", "model_names_source"):
        for bad in (None, 123, 1.5, ["flow"], {"a": 1}, object.__name__, b"\xff\xfe", "", "flow", "\x00" * 10):
            # analyze_source and check_source report a bad text as diagnostics, by design; an empty text has no model
            diagnosed = isinstance(bad, (str, bytes)) and (fn in ("analyze_source", "check_source") or
                                                           (fn == "model_names_source" and bad == ""))
            add(f"{fn}({bad!r:.20})", fn, [bad], expect="any" if diagnosed else "refuse")
        add(f"{fn}(spec, filename=Path)", fn, [spec], {"filename": Path("a.flow")}, "ok")
        add(f"{fn}(spec, filename=None)", fn, [spec], {"filename": None})
        add(f"{fn}(spec, filename=3)", fn, [spec], {"filename": 3})
    for fn in ("compile_source", "analyze_source"):
        add(f"{fn}(spec, limits=5)", fn, [spec], {"limits": 5})
        add(f"{fn}(spec, limits='x')", fn, [spec], {"limits": "x"})
    add("compile_source(spec, model=5)", "compile_source", [spec], {"model": 5})
    add("compile_source(spec, model='nope')", "compile_source", [spec], {"model": "nope"})
    add("compile_source(spec)", "compile_source", [spec], {}, "ok")
    for fn in ("compile_file", "analyze_file", "check_file", "model_names", "load"):
        for bad in (None, 5, 1.5, ("path", "missing.flow"), ("path", "."), ("path", ""), "/dev/null", "/etc/passwd",
                    b"/nonexistent", ["x"]):
            # analyze_file and check_file report a missing or unreadable file as a diagnostic, by design
            diagnosed = fn in ("analyze_file", "check_file") and not isinstance(bad, (type(None), int, float, list))
            add(f"{fn}({bad!r:.30})", fn, [bad], expect="any" if diagnosed else "refuse")
    for kw in ({"max_params": float("nan")}, {"max_layers": float("inf")},
               {"max_layers": 1.5}, {"max_layers": "10"}, {"max_layers": None}, {"bogus": 1}, {"max_layers": True}):
        add(f"Limits({kw})", "Limits", [], kw, family="api-limits")
    for kw in ({"max_params": 0}, {"max_params": 2**200}, {"max_params": -1}):  # 0 or less: refuse everything
        add(f"Limits({kw})", "Limits", [], kw, expect="any", family="api-limits")
    add("Limits()", "Limits", [], {}, "ok", family="api-limits")
    return out


def _model_cases() -> list[Case]:
    out = []
    values = [0, 1, 3, -1, 4, 17, 255, 0.5, 2.0, 1e30, float("nan"), float("inf"), -0.0]
    recipes = [("int", 3, v) for v in (0, 1, 3, -1, 4, 17, 2**40)] + [("float", 3, v) for v in values]
    recipes += [("dtype", 3, d) for d in ("float64", "float16", "bfloat16", "int32", "uint8", "int8")]
    recipes += [("numpy", 3, d) for d in ("float64", "int64", "float32")]
    recipes += [("int", 0, 0), ("float", 0, 0.0), ("int", 1, 0), ("complex", 3), ("list", 3), ("wrong_shape", 3),
                ("scalar",), ("none",), ("text",), ("bool", 3)]
    for key, recipe in itertools.product(("flow", "toy", "cond", "ar"), recipes):
        methods = ["log_prob", "bits_per_dim"] + (["forward"] if key != "ar" else [])
        for method in methods:
            if method == "forward" and recipe[0] in ("int",) and _LEVELS[key]:
                continue  # forward takes the dequantized reals; integers are cast
            ctx = 0 if key == "cond" else None  # a scalar label is broadcast, also to an empty batch
            valid = _valid(key, recipe) if method != "forward" else _valid("toy", recipe)
            out.append(Case("api-ar" if key == "ar" else "api", f"{key}.{method}({recipe!r:.40})", "api",
                            api=("model", key, method, recipe, ctx), expect="ok" if valid else "refuse"))
    for key, n in itertools.product(("flow", "toy", "cond", "ar"), (0, 1, 5, -1, 1.5, None, True, "3", 2**70)):
        valid = isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1000
        ctx = 1 if key == "cond" else None
        out.append(Case("api-ar" if key == "ar" else "api", f"{key}.sample({n!r})", "api",
                        api=("model", key, "sample", n, ctx), expect="ok" if valid else "refuse"))
    for key, ctx in itertools.product(("flow", "cond"), (None, 5, -1, 1.5, "a", [0, 1, 2], [0, 1])):
        valid = (key == "flow" and ctx is None) or (key == "cond" and ctx in (1, [0, 1, 2]))
        out.append(Case("api", f"{key}.log_prob(x, context={ctx!r})", "api",
                        api=("model", key, "log_prob", ("int", 3, 1), ctx), expect="ok" if valid else "refuse"))
    for k in (0, 1, 1.5, -1, "0", None, True, 2**70):
        out.append(Case("api-ar", f"ar.mask_index = {k!r}", "api", api=("model", "ar", "mask_index", None, k),
                        expect="ok" if k == 0 and not isinstance(k, bool) else "refuse"))
    return out


def api_cases(n: int) -> list[Case]:
    """API misuse and valid calls with oracles, interleaved so that any prefix covers the three families."""
    groups: dict[str, list[Case]] = {}
    for c in _calls() + _model_cases():
        groups.setdefault(c.family, []).append(c)
    mixed = [c for group in itertools.zip_longest(*groups.values()) for c in group if c is not None]
    return mixed[:n]
