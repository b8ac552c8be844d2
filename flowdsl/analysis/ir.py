"""The typed IR: an ordered list of typed layer nodes between a model's input and its sink.

A :class:`ModelIR` holds the model's declarations (``header``), one :class:`LayerNode` per
expanded layer in data-path order, and a :class:`SinkNode` (a flow's base density or an
autoregressive model's output). Each layer node carries the bound spec, where it was written
and the block calls around it, the shape arriving at it, and the facts its rules inferred
(:class:`~flowdsl.layers.registry.LayerInfo`: output shape, parameters, log-det kind, declared
dependency, what it factors out, whether it reads the condition, ...) as typed fields. The IR
describes; it holds no torch object: the compiler builds modules from it. networkx is used where
its algorithms are (drawing, ordering): :meth:`ModelIR.graph` builds a DiGraph view on demand.

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n", "f.flow")
    >>> ir = a.models["f"]
    >>> [(n.position, n.key, n.out_shape, n.logdet) for n in ir.layers]
    [(0, 'coupling additive', (4,), 'zero')]
    >>> ir.sink.op, list(ir.graph())
    ('base', ['input', 0, 'base'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import networkx as nx

from flowdsl.analysis.model_kind import ModelKind
from flowdsl.errors import Diagnostic, Pos, SpecError, trace_notes
from flowdsl.language.expand import InputInfo, ModelHeader, Site
from flowdsl.language.limits import Limits
from flowdsl.layers.budgets import layer_activation_size
from flowdsl.layers.registry import CausalFacts, Layer, LayerContext, LayerInfo, SinkInfo

__all__ = ["ModelIR", "LayerNode", "SinkNode", "build_ir"]


@dataclass(frozen=True)
class LayerNode:
    """One expanded layer: its spec, source, the shape reaching it and what its rules inferred.

    ``info`` is None where inference did not reach the layer (an earlier error); the facts then
    read as empty (no parameters, no dependency).
    """

    position: int  # 0-based position among the model's layers
    layer: Layer
    key: str
    pos: Pos
    trace: tuple[tuple[str, Pos], ...] = ()
    arg_pos: tuple[tuple[str, Pos], ...] = ()
    in_shape: tuple[int, ...] | None = None
    info: LayerInfo | None = None
    #: False where the call says ``reads=false`` (the layer was inferred without the condition)
    reads: bool = True

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return tuple(self.info.out_shape) if self.info else None

    @property
    def params(self) -> int:
        return self.info.params if self.info else 0

    @property
    def logdet(self) -> str | None:
        return self.info.logdet if self.info else None

    @property
    def dependency(self):
        return self.info.dependency if self.info else None

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.info.meta) if self.info else {}

    @property
    def factored(self) -> tuple[int, ...] | None:
        return self.info.factored if self.info else None

    @property
    def reads_condition(self) -> bool:
        return bool(self.info and self.info.reads_condition)

    @property
    def report(self) -> str:
        return self.info.report if self.info else ""

    @property
    def causal(self) -> CausalFacts | None:
        return self.info.causal if self.info else None


@dataclass(frozen=True)
class SinkNode:
    """A flow's base density (``op="base"``) or an autoregressive model's output (``op="output"``)."""

    op: Literal["base", "output"]
    spec: Any
    pos: Pos
    in_shape: tuple[int, ...] | None = None
    info: SinkInfo = field(default_factory=SinkInfo)

    @property
    def params(self) -> int:
        return self.info.params


@dataclass
class ModelIR:
    """One model: its declarations, its layers in order, its sink, and whether inference reached the end."""

    header: ModelHeader
    layers: list[LayerNode]
    sink: SinkNode
    complete: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: results of analyses run on this IR (the causality analysis caches itself here)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def input(self) -> InputInfo:
        """The input declaration (every model that reached the checks has one)."""
        if self.header.input is None:
            raise ValueError(f"model '{self.name}' declares no input")
        return self.header.input

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def params(self) -> int:
        """The layers', the sink's and the condition's embed net's parameters."""
        cond = self.header.condition
        return sum(n.params for n in self.layers) + self.sink.params + (cond.embed_params if cond else 0)

    @property
    def latents(self) -> list[tuple[int, tuple[int, ...]]]:
        """``(layer position, shape)`` of each part factored out to the base (multi-scale flows)."""
        return [(n.position, n.factored) for n in self.layers if n.factored is not None]

    def graph(self) -> nx.DiGraph:
        """A networkx view for drawing: ``"input"`` -> layer positions -> ``"base"``/``"output"``, plus
        ``("latent", position)`` nodes for factored parts (edge attribute ``port``: main or factored)."""
        return self._graph

    @cached_property
    def _graph(self) -> nx.DiGraph:
        g = nx.DiGraph(name=self.name, kind=self.kind)
        g.add_node("input", op="input")
        prev: Any = "input"
        for node in self.layers:
            g.add_node(node.position, op="layer", node=node)
            g.add_edge(prev, node.position, port="main")
            if self.complete and node.factored is not None:
                g.add_node(("latent", node.position), op="latent", shape=node.factored)
                g.add_edge(node.position, ("latent", node.position), port="factored")
            prev = node.position
        g.add_node(self.sink.op, op=self.sink.op)
        g.add_edge(prev, self.sink.op, port="main")
        return g


def _infer(site: Site, ctx: LayerContext) -> tuple[LayerInfo, list]:
    try:
        info = site.layer.infer(ctx)
        return info, site.layer.check(ctx, info)
    except SpecError:
        raise
    except MemoryError:  # a rule that sizes what it builds refuses first; this is the last line of defence
        raise SpecError(f"the rules of '{site.key}' ran out of memory analysing this layer",
                        hint=f"smaller shapes, or lower limits (e.g. {ctx.limits.flag('max_analysis_bytes')}) "
                             f"so that it is refused before it is built") from None
    except Exception as bug:  # a bug in a layer rule reaches the user as a diagnostic
        raise SpecError(f"internal error in the rules of '{site.key}': {type(bug).__name__}: {bug}",
                        hint="this is a bug in flowdsl, not in the spec; please report it") from None


def build_ir(header: ModelHeader, sites: list[Site], kind: ModelKind, spec_dir: str = ".",
             limits: Limits | None = None) -> ModelIR:
    """Infer shapes and facts layer by layer with the rules of ``kind``; an error stops inference there.

    After an error inference goes on past shape-preserving flow layers only (so that all of a
    model's errors show); a layer that moves data (squeeze, split, ...) leaves later shapes unknown.
    """
    diags: list[Diagnostic] = []
    inp = header.input
    complete = inp is not None
    inferring = complete
    shape = inp.shape if inp else None
    previous: tuple[str, ...] = ()
    encoded = header.condition.encoded if header.condition else None
    layers: list[LayerNode] = []
    last: LayerInfo | None = None
    for position, site in enumerate(sites):
        info: LayerInfo | None = None
        in_shape = shape if inferring else None
        context = encoded if site.reads else None
        features = context.features if context else 0
        if inferring and inp is not None and shape is not None:
            ctx = LayerContext(shape=shape, model_kind=kind.name, input_type=inp.type_name, levels=inp.levels,
                               context_features=features, spec_dir=spec_dir, position=position, previous=previous,
                               output=header.output, input_shape=inp.shape, limits=limits or Limits(),
                               context=context)
            try:
                info, findings = _infer(site, ctx)
            except SpecError as err:
                where = err.pos or (dict(site.arg_pos).get(err.arg, site.pos) if err.arg else site.pos)
                diags.append(Diagnostic(where, "error", err.message, err.hint, related=trace_notes(site.trace)))
                diags.extend(err.extra)
                complete = False
                inferring = kind.infer_past_errors and not type(site.layer).structural
            else:
                try:
                    elements = layer_activation_size(site.layer, shape, info.out_shape, features)
                except Exception:  # a plugin net whose widths are not numbers: its own rules bound it
                    elements = 0
                if elements > ctx.limits.max_activation_size:  # the shape pass and training would allocate them
                    diags.append(Diagnostic(site.pos, "error", f"'{site.key}' would make activations of {elements:,} "
                                            f"elements per example (limit {ctx.limits.max_activation_size:,})",
                                            f"raise the limit with {ctx.limits.flag('max_activation_size')} if this "
                                            f"is intended", related=trace_notes(site.trace)))
                    complete = False
                for f in findings:
                    where = dict(site.arg_pos).get(f.arg, site.pos) if f.arg else site.pos
                    diags.append(Diagnostic(where, f.severity, f.message, related=trace_notes(site.trace)))
                shape = tuple(info.out_shape)
                last = info
        layers.append(LayerNode(position=position, layer=site.layer, key=site.key, pos=site.pos, trace=site.trace,
                                arg_pos=site.arg_pos, in_shape=in_shape, info=info, reads=site.reads))
        previous = previous + (site.key,)
    spec = header.base if kind.sink == "base" else header.output
    count = getattr(spec, "param_count", None)
    if inp is None or count is None:
        sink_params = 0
    elif kind.sink == "base" and getattr(spec, "conditional", False):  # it maps the condition to mean, log-scale
        sink_params = count(inp.shape, encoded)
    else:
        sink_params = count(inp.shape)
    sink_info = SinkInfo(params=sink_params)
    if complete and kind.sink_rule is not None:
        try:
            sink_info = kind.sink_rule(header, shape, last)
        except SpecError as err:
            diags.append(Diagnostic(err.pos or header.pos, "error", err.message, err.hint))
            complete = False
    sink = SinkNode(op=kind.sink, spec=spec, pos=header.pos, in_shape=shape if complete else None, info=sink_info)
    return ModelIR(header=header, layers=layers, sink=sink, complete=complete, diagnostics=diags)
