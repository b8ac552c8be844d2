"""IR -> torch modules: each layer node's ``runtime`` builder, in the IR's order.

The model kind's compiler (named in :mod:`flowdsl.analysis.kinds`) is imported here, on demand:
the analysis never imports torch. The optimisation passes (docs/optimisations.md) run here, at
build time: ``compile_flow(..., optimize=False)`` or the environment variable
``FLOWDSL_NO_OPTIMIZE=1`` turns them off (for debugging; outputs are equal either way).

Example:
    >>> import flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[4]\\n permute(reverse)\\n}\\n")
    >>> type(flow).__name__, flow.input_shape
    ('CompiledFlow', (4,))
"""

from __future__ import annotations

import inspect
from pathlib import Path

from flowdsl.analysis.ir import LayerNode, ModelIR
from flowdsl.analysis.kinds import model_kind
from flowdsl.errors import Diagnostic, FlowDSLError
from flowdsl.runtime.base import BuildNode
from flowdsl.runtime.conditions import build_context_encoder
from flowdsl.runtime.nets import resolve
from flowdsl.runtime.optimize import optimizations_enabled, set_runtime_switches

__all__ = ["compile_model", "compile_flow", "build_node"]


def build_node(ir: ModelIR, node: LayerNode, spec_dir: str = "."):
    """Build the module of one layer node."""
    header = ir.header
    layer = node.layer
    context = header.condition.encoded if header.condition is not None and node.reads else None
    info = BuildNode(
        in_shape=tuple(node.in_shape), out_shape=tuple(node.out_shape), meta=node.meta,
        dependency=node.dependency, context_features=context.features if context else 0, context=context,
        levels=header.input.levels, model_kind=header.kind, spec_dir=spec_dir, position=node.position,
        causal=node.causal,
    )
    if not type(layer).runtime:
        raise FlowDSLError([Diagnostic(node.pos, "error", f"layer '{layer.name}' has no runtime yet")])
    module = resolve(type(layer).runtime)(layer, info)
    module.reads_context = bool(node.reads_condition)  # what flowdsl.runtime.conditions.context_for reads
    return module


def compile_flow(ir: ModelIR, unit, optimize: bool | None = None):
    """The flow kind's compiler: the layers in order, the base density, the spec for checkpoints."""
    from flowdsl.runtime.flow import CompiledFlow

    spec_dir = str(Path(unit.main).parent)
    layers = [build_node(ir, node, spec_dir) for node in ir.layers]
    optimized = optimizations_enabled(optimize)
    if optimized:
        from flowdsl.runtime.optimize_fusion import fuse_actnorm_invconv
        from flowdsl.runtime.optimize_permutations import fold_permutations

        fold_permutations(layers)
        fuse_actnorm_invconv(layers)
    set_runtime_switches(layers, optimized)
    for node, layer in zip(ir.layers, layers):  # the IR's proof, for the flow to skip adding a zero
        layer.logdet_zero = node.logdet == "zero"
    header = ir.header
    build_base = resolve(type(header.base).runtime)
    if getattr(header.base, "conditional", False) and header.condition is not None:
        # a conditional base: its builder takes the encoded condition; the module reads it flattened
        base = build_base(header.base, header.input.shape, header.condition.encoded)
    else:
        base = build_base(header.base, header.input.shape)
    return CompiledFlow(
        header.name, layers, base, header.input.shape, levels=header.input.levels,
        condition=build_context_encoder(header.condition, f"flow '{header.name}'"),
        spec={"file": unit.main, "model": header.name, "hash": unit.source_hash, "sources": dict(unit.sources)},
        optimized=optimized,
    )


def compile_model(ir: ModelIR, unit, optimize: bool | None = None):
    """Build the torch module of a checked model with its kind's compiler (``optimize``: where it takes one;
    the modules' runtime switches follow it in every kind)."""
    compiler = resolve(model_kind(ir.kind).compiler)
    takes_flag = "optimize" in inspect.signature(compiler).parameters
    module = compiler(ir, unit, optimize=optimize) if optimize is not None and takes_flag else compiler(ir, unit)
    if optimize is not None and not takes_flag:
        set_runtime_switches([module], optimizations_enabled(optimize))
    module.ir = ir
    return module
