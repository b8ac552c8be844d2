"""IR -> torch modules: each layer node's ``runtime`` builder, in the graph's order.

Example:
    >>> import flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[4]\\n permute(reverse)\\n}\\n")
    >>> type(flow).__name__, flow.input_shape
    ('CompiledFlow', (4,))
"""

from __future__ import annotations

from pathlib import Path

from flowdsl.errors import Diagnostic, FlowDSLError
from flowdsl.analysis.ir import ModelIR, layer_nodes
from flowdsl.runtime.base import BuildNode
from flowdsl.runtime.nets import resolve

__all__ = ["compile_model", "build_node", "COMPILERS"]


def build_node(ir: ModelIR, n, spec_dir: str = "."):
    """Build the module of one layer node."""
    node = ir.graph.nodes[n]
    header = ir.header
    layer = node["layer"]
    info = BuildNode(
        in_shape=tuple(node["in_shape"]), out_shape=tuple(node["out_shape"]), meta=node["meta"],
        dependency=node["dependency"], context_features=header.condition.classes if header.condition else 0,
        levels=header.input.levels, model_kind=header.kind, spec_dir=spec_dir, index=n,
    )
    if not type(layer).runtime:
        raise FlowDSLError([Diagnostic(node["pos"], "error", f"layer '{layer.name}' has no runtime yet")])
    return resolve(type(layer).runtime)(layer, info)


def _compile_flow(ir: ModelIR, unit):
    from flowdsl.runtime.flow import CompiledFlow

    spec_dir = str(Path(unit.main).parent)
    layers = [build_node(ir, n, spec_dir) for n in layer_nodes(ir.graph)]
    header = ir.header
    base = resolve(type(header.base).runtime)(header.base, header.input.shape)
    return CompiledFlow(
        header.name, layers, base, header.input.shape, levels=header.input.levels,
        classes=header.condition.classes if header.condition else 0,
        spec={"file": unit.main, "model": header.name, "hash": unit.source_hash, "sources": dict(unit.sources)},
    )


#: model kind -> compiler; the autoregressive compiler registers itself here
COMPILERS = {"flow": _compile_flow}


def compile_model(ir: ModelIR, unit):
    """Build the torch module of a checked model."""
    kind = ir.header.kind
    if kind not in COMPILERS:
        try:
            import flowdsl.runtime.autoregressive  # noqa: F401  (registers COMPILERS["autoregressive"])
        except ImportError:
            pass
    if kind not in COMPILERS:
        raise FlowDSLError([Diagnostic(ir.header.pos, "error", f"{kind} models cannot be compiled yet")])
    module = COMPILERS[kind](ir, unit)
    module.ir = ir
    return module
