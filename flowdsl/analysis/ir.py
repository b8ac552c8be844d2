"""The graph IR: a networkx DiGraph of a model's layers with inferred shapes and declared structure.

Nodes (integer ids) carry a dict like torch.fx's ``meta``:

- ``op``: ``"input"``, ``"layer"``, ``"latent"`` (a part factored out by ``split``),
  ``"base"`` (a flow's base density) or ``"output"`` (an autoregressive model's head);
- ``pos``, ``trace``: where it was written, and the block calls around it;
- ``layer``: the bound layer spec (frozen pydantic), ``key`` its name;
- ``in_shape``, ``out_shape``, ``params``, ``logdet``, ``dependency`` (a
  :class:`~flowdsl.layers.structure.Dependency`), ``meta`` (layer-specific facts).

Edges carry ``port``: ``"main"`` for the data path, ``"factored"`` from a split to its latent.
The graph holds no torch object: the compiler builds modules from it.

Example:
    >>> from flowdsl.api import analyze_source
    >>> a = analyze_source("flow f {\\n  input x: vector[4]\\n  coupling additive(mask=half)\\n}\\n", "f.flow")
    >>> g = a.models["f"].graph
    >>> [g.nodes[n]["op"] for n in main_path(g)]
    ['input', 'layer', 'base']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from flowdsl.errors import Diagnostic, SpecError
from flowdsl.language.expand import ModelHeader, Site
from flowdsl.layers.registry import LayerContext

__all__ = ["ModelIR", "build_graph", "main_path", "layer_nodes", "SINK_RULES"]

#: model kind -> rule inferring the sink node from what reaches it: ``rule(header, shape, last)`` with
#: ``last`` the last layer node's dict (None without layers) returns node facts to add (``params``,
#: ``meta``) or raises SpecError. The autoregressive layers register their output head here.
SINK_RULES: dict = {}


@dataclass
class ModelIR:
    """One model: its declarations, its graph, and whether shape inference reached the end."""

    header: ModelHeader
    graph: nx.DiGraph
    complete: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def params(self) -> int:
        return sum(self.graph.nodes[n].get("params", 0) for n in self.graph)


def main_path(graph: nx.DiGraph) -> list[int]:
    """Node ids along the data path, input first (a topological order of the ``main`` edges)."""
    main = nx.DiGraph((u, v) for u, v, p in graph.edges(data="port") if p == "main")
    main.add_nodes_from(n for n in graph if graph.nodes[n]["op"] in ("input",))
    return list(nx.topological_sort(main))


def layer_nodes(graph: nx.DiGraph) -> list[int]:
    return [n for n in main_path(graph) if graph.nodes[n]["op"] == "layer"]


def _hint(err: SpecError, trace) -> str | None:
    hint = err.hint
    if trace:
        calls = ", ".join(f"'{name}' called at {p}" for name, p in trace)
        hint = (hint + "; " if hint else "") + f"in block {calls}"
    return hint


def build_graph(header: ModelHeader, sites: list[Site], spec_dir: str = ".") -> ModelIR:
    """Infer shapes layer by layer and build the IR graph; errors stop inference at that layer."""
    g = nx.DiGraph(name=header.name, kind=header.kind, header=header)
    diags: list[Diagnostic] = []
    inp = header.input
    complete = inp is not None
    inferring = complete  # after an error, inference goes on past shape-preserving layers only
    g.add_node(0, op="input", pos=header.input.pos if inp else header.pos, trace=(),
               out_shape=inp.shape if inp else None)
    shape = inp.shape if inp else None
    prev = 0
    previous: tuple[str, ...] = ()
    classes = header.condition.classes if header.condition else 0
    for i, site in enumerate(sites, start=1):
        node = dict(op="layer", layer=site.layer, key=site.key, pos=site.pos, trace=site.trace,
                    in_shape=shape, out_shape=None, params=0, logdet=None, dependency=None, meta={})
        if inferring:
            ctx = LayerContext(shape=shape, model_kind=header.kind, input_type=inp.type_name, levels=inp.levels,
                               context_features=classes, spec_dir=spec_dir, index=i - 1, previous=previous,
                               output=header.output, input_shape=inp.shape)
            try:
                try:
                    info = site.layer.infer(ctx)
                    findings = site.layer.check(ctx, info)
                except (SpecError, MemoryError):
                    raise
                except Exception as bug:  # a bug in a layer rule reaches the user as a diagnostic
                    raise SpecError(f"internal error in the rules of '{site.key}': {type(bug).__name__}: {bug}",
                                    hint="this is a bug in flowdsl, not in the spec; please report it") from None
            except SpecError as err:
                where = err.pos or dict(site.arg_pos).get(err.arg, site.pos)
                diags.append(Diagnostic(where, "error", err.message, _hint(err, site.trace)))
                diags.extend(err.extra)
                complete = False
                # A layer that moves data (squeeze, split, ...) leaves later shapes unknown: stop there.
                inferring = header.kind == "flow" and not type(site.layer).structural
            else:
                node.update(out_shape=tuple(info.out_shape), params=info.params, logdet=info.logdet,
                            dependency=info.dependency, meta=dict(info.meta))
                for f in findings:
                    where = dict(site.arg_pos).get(f.arg, site.pos) if f.arg else site.pos
                    diags.append(Diagnostic(where, f.severity, f.message, _hint(SpecError(""), site.trace)))
                shape = tuple(info.out_shape)
        g.add_node(i, **node)
        g.add_edge(prev, i, port="main")
        if complete and "factored" in node["meta"]:
            latent = ("latent", i)
            g.add_node(latent, op="latent", pos=site.pos, trace=site.trace, out_shape=node["meta"]["factored"])
            g.add_edge(i, latent, port="factored")
        prev = i
        previous = previous + (site.key,)
    sink = "base" if header.kind == "flow" else "output"
    spec = header.base if header.kind == "flow" else header.output
    sink_params = spec.param_count(inp.shape) if inp is not None and hasattr(spec, "param_count") else 0
    g.add_node(sink, op=sink, pos=header.pos, trace=(), in_shape=shape if complete else None, spec=spec,
               params=sink_params)
    if complete and header.kind in SINK_RULES:
        try:
            g.nodes[sink].update(SINK_RULES[header.kind](header, shape, g.nodes[prev] if prev else None))
        except SpecError as err:
            diags.append(Diagnostic(err.pos or header.pos, "error", err.message, err.hint))
            complete = False
    g.add_edge(prev, sink, port="main")
    return ModelIR(header=header, graph=g, complete=complete, diagnostics=diags)
