"""Tiny configurations: the same model on a smaller input, so that brute force is affordable.

A brute-force Jacobian costs one backward pass per input number and normalisation sums
``levels ** N`` probabilities, so the expensive properties run on a copy of the spec whose
``input`` declaration is rewritten to a smaller shape (and, for autoregressive models, fewer
levels); a sequence or image condition aligned with the input's grid (WaveNet's local conditioning,
a Gated PixelCNN's image map) is scaled with it, to sizes that divide the new grid. A candidate is kept
only if the checker accepts it with the same chain of layers: the tiny model is the declared one,
only narrower.

Example:
    >>> text = "let w = 16\\nflow f {\\n  input x: image[1, w, w]\\n  squeeze(2)\\n  actnorm\\n}\\n"
    >>> tiny = shrink_source(text, "f.flow", "f", max_size=8, min_size=4)
    >>> tiny.shape, tiny.text.splitlines()[2]
    ((1, 2, 2), '  input x: image[1, 2, 2]')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flowdsl.language import ast

__all__ = ["TinyConfig", "input_spans", "with_input", "with_condition", "scaled_condition", "shrink_source"]

_MAX_TRIES = 40


@dataclass(frozen=True)
class TinyConfig:
    """A rewritten spec: its text, the new input shape and levels, and how it differs."""

    text: str
    shape: tuple[int, ...]
    levels: int | None
    type_name: str
    #: the condition's sizes when they were scaled with the input (None: as declared)
    condition: tuple[int, ...] | None = None

    def describe(self) -> str:
        levels = f" levels {self.levels}" if self.levels else ""
        scaled = f", condition [{', '.join(map(str, self.condition))}]" if self.condition else ""
        return f"{self.type_name}[{', '.join(map(str, self.shape))}]{levels}{scaled}"


def _offset(text: str, line: int, column: int) -> int:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts[line - 1] + column - 1


def _decl(text: str, filename: str, model: str, kind: type):
    from flowdsl.language.syntax import parse_program

    prog = parse_program(text, filename)
    for m in prog.models:
        if m.name == model:
            for stmt in m.body:
                if isinstance(stmt, kind):
                    return stmt
    return None


def _input_decl(text: str, filename: str, model: str) -> ast.InputDecl | None:
    return _decl(text, filename, model, ast.InputDecl)


def _sizes_span(text: str, type_pos) -> tuple[int, int]:
    """``(start, end)`` of the ``[...]`` after a declaration's type name."""
    i = text.index("[", _offset(text, type_pos.line, type_pos.column))
    depth, j = 0, i
    while j < len(text):
        depth += {"[": 1, "]": -1}.get(text[j], 0)
        if depth == 0:
            break
        j += 1
    return i, j + 1


def scaled_condition(cond, input_shape, shape) -> tuple[int, ...] | None:
    """The sizes of a sequence or image condition aligned with the input's grid (local conditioning, an image
    map), scaled as the input is shrunk from ``input_shape`` to ``shape``: the same ratio where it scales
    exactly, else the largest size that still divides the new grid (the layers upsample by the ratio they
    find); None when the condition has no grid aligned with the input's.

        >>> from types import SimpleNamespace as C
        >>> scaled_condition(C(type_name="sequence", shape=(64, 8)), (1024,), (32,))
        (2, 8)
        >>> scaled_condition(C(type_name="sequence", shape=(64, 8)), (1024,), (12,))  # 12 / 1 steps
        (1, 8)
    """
    if cond is None or cond.type_name not in ("sequence", "image"):
        return None
    if cond.type_name == "sequence":
        grid, at = (cond.shape[0],), 0
        old, new = tuple(input_shape[:1]), tuple(shape[:1])
    else:
        grid, at = tuple(cond.shape[1:]), 1
        old, new = tuple(input_shape[-2:]), tuple(shape[-2:])
    if len(old) != len(grid) or len(new) != len(grid):
        return None
    sizes = []
    for g, o, n in zip(grid, old, new):
        if o % g:
            return None  # the condition's grid does not divide the input's: not aligned
        want = max(1, g * n // o)  # the same ratio where it scales exactly, else the nearest smaller divisor of n
        sizes.append(max(d for d in range(1, want + 1) if n % d == 0))
    out = list(cond.shape)
    out[at:at + len(sizes)] = sizes
    return tuple(out)


def with_condition(text: str, filename: str, model: str, sizes) -> str:
    """The spec text with the model's condition sizes replaced."""
    decl = _decl(text, filename, model, ast.ConditionDecl)
    if decl is None:
        return text
    a, b = _sizes_span(text, decl.type_pos)
    return text[:a] + "[" + ", ".join(map(str, sizes)) + "]" + text[b:]


def input_spans(text: str, filename: str, model: str):
    """``((start, end) of the '[...]' sizes, (start, end) of the levels expression or None)``."""
    decl = _input_decl(text, filename, model)
    if decl is None:
        return None
    dims = _sizes_span(text, decl.type_pos)
    if decl.levels is None:
        return dims, None
    k = start = _offset(text, decl.levels.pos.line, decl.levels.pos.column)
    depth = 0
    while k < len(text) and not (depth == 0 and text[k] in "\n;#}"):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[k], 0)
        k += 1
    return dims, (start, len(text[:k].rstrip()))


def with_input(text: str, filename: str, model: str, shape, levels: int | None = None) -> str:
    """The spec text with the model's input sizes (and levels, if given) replaced."""
    spans = input_spans(text, filename, model)
    if spans is None:
        raise ValueError(f"model '{model}' has no input declaration")
    (d0, d1), lv = spans
    edits = [(d0, d1, "[" + ", ".join(map(str, shape)) + "]")]
    if levels is not None and lv is not None:
        edits.append((lv[0], lv[1], str(levels)))
    for a, b, new in sorted(edits, reverse=True):
        text = text[:a] + new + text[b:]
    return text


def _shape_candidates(type_name: str, shape: tuple[int, ...], max_size: int):
    if len(shape) == 1:
        return [(d,) for d in range(1, shape[0] + 1) if d <= max_size]
    lead = shape[:-2]
    h, w = shape[-2:]
    out = set()
    for hh in range(1, h + 1):
        ww = max(1, min(w, round(hh * w / h)))
        for cand_w in {ww, hh if hh <= w else ww}:
            out.add((hh, cand_w))
    cands = []
    for hh, ww in out:
        for t in (range(1, lead[0] + 1) if len(lead) == 2 else [None]):
            full = ((t,) if t is not None else ()) + lead[-1:] + (hh, ww)
            if math.prod(full) <= max_size:
                cands.append(full)
    return sorted(set(cands), key=lambda s: (math.prod(s), s))


def shrink_source(text: str, filename: str, model: str, *, max_size: int = 64, min_size: int = 8,
                  max_configurations: int | None = None, limits=None) -> TinyConfig | None:
    """A small input on which ``model`` checks with the same layers: the smallest with at least
    ``min_size`` numbers (else the largest below), never more than ``max_size`` numbers.

    ``max_configurations``: also shrink the levels of an autoregressive model so that
    ``levels ** N`` is at most this (for the normalisation check). None when nothing smaller works.
    """
    from flowdsl.api import analyze_source

    analysis = analyze_source(text, filename, limits)
    if not analysis.ok or model not in analysis.models:
        return None
    ir = analysis.models[model]
    inp = ir.header.input
    keys = [node.key for node in ir.layers]
    if input_spans(text, filename, model) is None:
        return None
    candidates = []
    for shape in _shape_candidates(inp.type_name, tuple(inp.shape), max_size):
        n = math.prod(shape)
        if max_configurations is not None and inp.levels:
            levels = [lv for lv in range(2, inp.levels + 1) if lv ** n <= max_configurations]
            candidates += [(shape, lv) for lv in levels[:1] + ([inp.levels] if inp.levels in levels[1:] else [])]
        else:
            candidates.append((shape, None))
    big = [c for c in candidates if math.prod(c[0]) >= min_size]
    small = [c for c in candidates if math.prod(c[0]) < min_size]
    tries = 0
    for shape, levels in big + small[::-1]:
        if tuple(shape) == tuple(inp.shape) and levels in (None, inp.levels):
            return TinyConfig(text, tuple(inp.shape), inp.levels, inp.type_name)
        tries += 1
        if tries > _MAX_TRIES:
            break
        new = with_input(text, filename, model, shape, levels)
        sizes = scaled_condition(ir.header.condition, inp.shape, shape)
        scaled = sizes is not None and tuple(sizes) != tuple(ir.header.condition.shape)
        versions = [(with_condition(new, filename, model, sizes), sizes)] if scaled else []
        for version, cond in versions + [(new, None)]:
            a = analyze_source(version, filename, limits)
            if a.ok and model in a.models and [node.key for node in a.models[model].layers] == keys:
                return TinyConfig(version, tuple(shape), levels if levels is not None else inp.levels,
                                  inp.type_name, tuple(cond) if cond else None)
    return None
