"""Exact causality analysis of autoregressive networks: per-position input-dependency sets.

The engine follows every output position of every layer back to the input positions it
reads, running each layer's declared ``dependencies(maps, ctx)`` rule (built from the
operations of :mod:`flowdsl.layers.dependency_sets`), so every tap of every kernel, mask, shift,
padding, channel group, residual and skip edge is propagated exactly. Streams protocol (the
runtime follows the same): a layer whose facts declare ``CausalFacts.streams`` receives and
returns every stream; any other layer (and the output head) reads the ``skip`` stream if one is
present, else ``main``, and ends every other stream. The default generation order is raster order over the
grid, channels innermost; a layer may declare its own orders (``CausalFacts.orders``, one per
configuration, e.g. MADE's masks).

The model check (:func:`check_causality`, listed for autoregressive models in
:mod:`flowdsl.analysis.kinds`) reports an error at the first layer whose main stream reads the
current or a later position, a warning for a blind spot (earlier positions inside the receptive
field's bounding box that no path reaches) at the layer from which it persists, and a note with
the receptive field (on a 1-d grid: the window of earlier positions read; the details of
:data:`RECEPTIVE_DETAILS` add e.g. the dilation schedule). Layers may declare
``CausalFacts.declared_context`` (a warning when the window is shorter) and
``CausalFacts.full_reach`` (attention: every earlier position must reach every later one within
the model's depth; a reachability warning with the fraction reached replaces the blind-spot check).

A model made only of translation-invariant layers is checked (:func:`check_causality`) on its
compressed grid (:mod:`flowdsl.analysis.translation`, :func:`analyze_compressed`), with the same
findings; :func:`analyze` and :func:`dependency_sets` stay dense (their sets are over the input).

Example:
    >>> from flowdsl.api import analyze_source
    >>> text = "autoregressive m {\\n input x: image[1, 4, 4] levels 2\\n masked_conv(mask=A, channels=4)\\n}\\n"
    >>> ir = analyze_source(text, "m.ar").models["m"]
    >>> dependency_sets(ir)[5].nonzero()[0].tolist()   # pixel (1, 1) reads the pixels before it in a 3x3 window
    [0, 1, 2, 4]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np

from flowdsl.analysis.ar_checks import dilation_schedule
from flowdsl.analysis.ir import ModelIR
from flowdsl.analysis.receptive import blind_spots, offset_text, receptive_note, row_chunks
from flowdsl.analysis.translation import Compressed, compressed
from flowdsl.errors import Diagnostic
from flowdsl.language.limits import Limits
from flowdsl.layers.dependency_sets import DepContext, DepMaps, Layout, layout_of, mix, unpack

__all__ = ["Analysis", "analyze", "analyze_compressed", "analysis_bytes", "dependency_sets", "check_causality",
           "generation_orders"]

#: details ``describe(model) -> str | None`` added in parentheses to the receptive-field note, e.g.
#: "3 stacks of dilations 1..512, kernel 2" (the first that answers wins)
RECEPTIVE_DETAILS = (dilation_schedule,)

#: whether :func:`check_causality` proves translation-invariant models on their compressed grid also where the
#: dense sets would exceed ``max_analysis_bytes`` (False: such models are refused, with the limit's error).
#: On: a 512x512 PixelCNN or a WaveNet on sequence[1000000] is proved in about a second.
PROVE_BEYOND_DENSE_BOUND = True


# ----------------------------------------------------------------------------- analysis
@dataclass
class Analysis:
    """Result of :func:`analyze`: per-layer main streams, orders and the findings."""

    layout: Layout
    orders: np.ndarray  # [K, N] generation orders, one per configuration
    layers: list = field(default_factory=list)  # (node id, main stream) of configuration 0
    final: np.ndarray | None = None  # packed [N, NB]: what each position's conditional reads (configuration 0)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    finals: dict = field(default_factory=dict)  # configuration -> packed [N, NB]

    def dependencies(self, config: int = 0) -> np.ndarray:
        """``bool [N, N]``: entry (p, q) when the conditional of position p reads input position q."""
        return unpack(self.finals[config], self.layout.n)


def _per_position(main: np.ndarray, layout: Layout) -> np.ndarray:
    """Packed ``[N, NB]``: the unit each position's conditional is read from (group c, or the only group)."""
    g, s = main.shape[0], int(prod(layout.grid))
    flat = main.reshape(g, s, -1)
    out = np.zeros((layout.n, flat.shape[-1]), dtype=np.uint8)
    for c in range(layout.channels):
        out[layout.index[c].reshape(-1)] = flat[c if g == layout.channels else 0]
    return out


def _violation(pos_deps: np.ndarray, rank: np.ndarray, layout: Layout, weights: np.ndarray | None = None):
    """First (p, q) in generation order where p reads q with rank[q] >= rank[p], and how many p do (each p counted
    ``weights[p]`` times: the real positions a compressed one stands for)."""
    n, count, first = layout.n, 0, None
    for rows in row_chunks(n):
        bad = unpack(pos_deps[rows], n) & (rank[None, :] >= rank[rows][:, None])
        hit = bad.any(axis=1)
        count += int(hit.sum()) if weights is None else int(weights[rows][hit].sum())
        for i in np.flatnonzero(hit):
            p = int(rows[i])
            if first is None or rank[p] < rank[first[0]]:
                qs = np.flatnonzero(bad[i])
                first = (p, int(qs[np.argmin(rank[qs])]))
    return None if first is None else (*first, count)


def _detail(model: ModelIR) -> str | None:
    for describe in RECEPTIVE_DETAILS:
        text = describe(model)
        if text:
            return text
    return None


def _context_warnings(model: ModelIR, span: int | None, layout: Layout) -> list[Diagnostic]:
    """A layer's ``meta["declared_context"]`` (earlier positions a prediction should see) longer than the window."""
    if span is None:
        return []
    out = []
    unit = "samples" if layout.input_type == "sequence" else "positions"
    for node in model.layers:
        want = node.causal.declared_context if node.causal else None
        if want and span < want:
            out.append(Diagnostic(node.pos, "warning",
                                  f"the receptive field ({span} {unit}) is shorter than the declared context "
                                  f"({want} {unit}): predictions never see {unit} more than {span} back",
                                  "add layers or larger dilations, or declare a shorter context"))
    return out


def _reach_warning(model: ModelIR, layout: Layout, rank: np.ndarray, result: Analysis) -> list[Diagnostic] | None:
    """Models whose layers claim ``meta["full_reach"]`` (attention): every earlier position should reach every
    later one within the model's depth. None when no layer claims it; else the warning (if some pair is missed)."""
    nodes = [node for node in model.layers if node.causal and node.causal.full_reach]
    final = result.final
    if not nodes or final is None:
        return None
    n = layout.n
    reads = np.zeros(n, dtype=np.int64)
    for rows in row_chunks(n):
        reads[rows] = unpack(final[rows], n).sum(axis=1)
    total = n * (n - 1) // 2
    reached = int(reads.sum())
    if reached >= total:
        return []
    short = np.flatnonzero(reads < rank)
    p = int(short[np.argmin(rank[short])])
    seen = unpack(final[p], n)
    earlier = np.flatnonzero((rank < rank[p]) & ~seen)
    q = int(earlier[np.argmin(rank[earlier])])
    last, facts = nodes[-1], nodes[-1].causal
    assert facts is not None  # nodes were selected by their causal facts
    kind, depth = facts.full_reach, len(nodes)
    msg = (f"reachability: within {depth} {kind} layer{'s' if depth != 1 else ''}, {100.0 * reached / total:.1f}% "
           f"of the (earlier, later) position pairs are connected (e.g. position {layout.describe(p)} cannot see "
           f"{layout.describe(q)})")
    return [Diagnostic(last.pos, "warning", msg, facts.reach_remedy)]


def generation_orders(model: ModelIR, layout: Layout | None = None) -> np.ndarray:
    """``[K, N]``: the generation order of every configuration (declared by a layer, else raster order)."""
    if layout is None:
        layout = layout_of(model.input.type_name, model.input.shape)
    for node in model.layers:
        orders = node.causal.orders if node.causal else None
        if orders is not None:
            return np.asarray(orders, dtype=np.int64).reshape(-1, layout.n)
    return layout.raster_order()[None, :]


def _propagate(model: ModelIR, layout: Layout, config: int, record: list):
    """Run every layer's rule; returns (maps, None) or (None, diagnostic) for an unanalysable layer."""
    maps = DepMaps.identity(layout)
    for node in model.layers:
        layer = node.layer
        rule = getattr(layer, "dependencies", None)
        if rule is None:
            return None, Diagnostic(node.pos, "warning", f"causality not checked: layer '{layer.name}' declares "
                                    f"no dependency structure")
        ctx = DepContext(layout, node.position, tuple(node.in_shape or ()), tuple(node.out_shape or ()), node.meta,
                         config)
        if not (node.causal is not None and node.causal.streams):
            maps = maps.only(_data(maps))
        maps = rule(maps, ctx)
        record.append((node, _data(maps)))
    return maps.only(_data(maps)), None


def _data(maps: DepMaps) -> np.ndarray:
    """What a stream-unaware layer, or the output head, reads: the ``skip`` sum if a layer left one, else main."""
    skip = maps.get("skip")
    return maps.main if skip is None else skip


def analysis_bytes(model: ModelIR) -> int:
    """Bytes the dense analysis needs, from the declared shapes: one packed ``[N, ceil(N / 8)]`` set per layer kept
    for the report (twice with several configurations), and a few more alive while a layer's rule runs."""
    return _dense_bytes(model, int(prod(model.input.shape)))


def _dense_bytes(model: ModelIR, n: int) -> int:
    configs = max([node.causal.configurations for node in model.layers if node.causal] + [1])
    return (len(model.layers) * min(configs, 2) + 4) * n * ((n + 7) // 8)


def _too_large(model: ModelIR, limits: Limits) -> Diagnostic | None:
    needed = analysis_bytes(model)
    if needed <= limits.max_analysis_bytes:
        return None
    n = int(prod(model.input.shape))
    return Diagnostic(model.header.pos, "error",
                      f"the causality check would need {-(-needed // 2**20):,} MiB for the dependency sets of {n:,} "
                      f"positions (limit {-(-limits.max_analysis_bytes // 2**20):,} MiB)",
                      f"raise the limit with {limits.flag('max_analysis_bytes')} if this is intended, or check "
                      f"a smaller input shape")


def analyze(model: ModelIR, limits: Limits | None = None) -> Analysis:
    """The exact dependency analysis of an autoregressive model (cached on the IR); refused, with an error, when
    its dense sets would exceed ``limits.max_analysis_bytes``."""
    cached = model.cache.get("causality")
    if cached is not None:
        return cached
    layout = layout_of(model.input.type_name, model.input.shape)
    refused = _too_large(model, limits or Limits())
    if refused is not None:
        result = Analysis(layout, np.zeros((1, 0), dtype=np.int64), diagnostics=[refused])
    else:
        result = _run(model, layout, generation_orders(model, layout), None)
    model.cache["causality"] = result
    return result


def analyze_compressed(model: ModelIR, limits: Limits | None = None) -> Analysis | None:
    """The same findings as :func:`analyze`, proved on the compressed grid of a translation-invariant model
    (:mod:`flowdsl.analysis.translation`; its sets are over that grid); None where compression does not apply."""
    if "causality_compressed" in model.cache:
        return model.cache["causality_compressed"]
    small = compressed(model)
    result = None
    if small is not None and _dense_bytes(model, small.layout.n) <= (limits or Limits()).max_analysis_bytes:
        result = _run(model, small.layout, small.layout.raster_order()[None, :], small)
    model.cache["causality_compressed"] = result
    return result


def _run(model: ModelIR, layout: Layout, orders: np.ndarray, small: Compressed | None) -> Analysis:
    header = model.header
    weights = None if small is None else small.weights
    result = Analysis(layout, orders)
    head = model.sink.info.head.allowed if model.sink.info.head is not None else None
    configs = max([node.causal.configurations for node in model.layers if node.causal] + [1])
    for config in range(configs):
        record: list = []
        maps, problem = _propagate(model, layout, config, record)
        if problem is not None:
            result.diagnostics.append(problem)
            break
        rank = np.empty(layout.n, dtype=np.int64)
        rank[orders[min(config, len(orders) - 1)]] = np.arange(layout.n)
        main = maps.main if head is None else mix(maps.main, np.asarray(head))
        final = _per_position(main, layout)
        result.finals[config] = final
        bad = _violation(final, rank, layout, weights)
        if bad is not None:
            result.diagnostics.append(_causality_error(model, layout, rank, record, bad, small))
            break
        if config == 0:
            result.final, result.layers = final, record
    else:
        rank = np.empty(layout.n, dtype=np.int64)
        rank[orders[0]] = np.arange(layout.n)
        reach = _reach_warning(model, layout, rank, result)
        result.diagnostics.extend(_blind_warning(model, layout, rank, result) if reach is None else reach)
        assert result.final is not None  # configuration 0 ran to the end
        note, span = receptive_note(result.final, layout, rank, header.pos, _detail(model))
        result.diagnostics.append(note)
        result.diagnostics.extend(_context_warnings(model, span, layout))
    return result


def _causality_error(model, layout, rank, record, bad, small: Compressed | None = None) -> Diagnostic:
    where, node = model.header.pos, None
    weights = None if small is None else small.weights
    for n, main in record:  # the first layer whose own output already reads the present or the future
        found = _violation(_per_position(main, layout), rank, layout, weights)
        if found is not None:
            node, bad = n, found
            where = node.pos
            break
    p, q, count = bad
    if small is not None:  # the first real position of the class, and what it reads there
        layout, (p, q) = small.real, small.to_real(p, q)
    what = "itself" if p == q else f"the later position {layout.describe(q)}"
    name = node.layer.name if node else "the output"
    msg = (f"{name} breaks causality: the prediction of position {layout.describe(p)} reads {what} "
           f"({count} of {layout.n} positions read the current or a later position)")
    hint = (node.causal.causality_hint if node.causal else None) if node else \
        "start the model with a causal layer (e.g. mask A)"
    return Diagnostic(where, "error", msg, hint)


def _blind_warning(model, layout, rank, result: Analysis) -> list[Diagnostic]:
    if result.final is None:
        return []
    worst = blind_spots(result.final, layout, rank)
    if worst[0] == 0:
        return []
    start, seen = None, {}
    for n, main in reversed(result.layers):  # the layer from which a blind spot persists to the output
        key = id(main)
        if key not in seen:
            seen[key] = blind_spots(_per_position(main, layout), layout, rank, first_only=True)[0] > 0
        if not seen[key]:
            break
        start = n
    node = start
    count, p, q = worst
    unit = "pixels" if len(layout.grid) == 2 else "positions"
    remedy = node.causal.blind_spot_remedy if node is not None and node.causal else None
    unit = unit if count != 1 else unit[:-1]
    msg = (f"blind spot: a position cannot see up to {count} earlier {unit} inside its receptive field "
           f"(e.g. {offset_text(layout, rank, p, q)})" + (f"; {remedy}" if remedy else ""))
    return [Diagnostic(node.pos if node is not None else model.header.pos, "warning", msg)]


def dependency_sets(model: ModelIR, config: int = 0) -> np.ndarray:
    """``bool [N, N]``: what each position's conditional reads, as the checker proved it."""
    return analyze(model).dependencies(config)


def check_causality(model: ModelIR, limits: Limits) -> list[Diagnostic]:
    """Model check: causality errors, blind-spot warnings and the receptive field, for autoregressive models
    (proved on the compressed grid where the model is translation-invariant, else on the dense sets)."""
    if model.header.kind != "autoregressive" or not model.complete or model.header.input is None:
        return []
    result = None
    if PROVE_BEYOND_DENSE_BOUND or analysis_bytes(model) <= limits.max_analysis_bytes:
        result = analyze_compressed(model, limits)
    return list((result if result is not None else analyze(model, limits)).diagnostics)
