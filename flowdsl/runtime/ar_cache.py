"""Fast cached generation: one generic driver over per-layer incremental steppers.

Naive ancestral sampling recomputes the whole network for every position. The cached
driver walks the grid once in generation order (raster order: time, row, column, then the
colour channels of a position) and asks each layer only for its output at the new position.
A layer whose rules declare it ``cacheable`` (:class:`~flowdsl.layers.registry.CausalFacts`) has
an incremental form, a :class:`Stepper`, from its module's ``stepper(plan)`` method
(:class:`~flowdsl.runtime.ar_module.ARModule`, where :class:`Plan`, :class:`Stepper` and
:class:`Pointwise` are defined). A stepper keeps what its layer has read so far:

- dilated causal convolutions keep their input history and read it at ``t - j d`` (the
  Fast WaveNet queues, one per layer);
- masked convolutions and gated blocks keep their input rows (Fast PixelCNN++'s row caches); a
  gated block computes its vertical stack one row at a time, when the row above is complete,
  and passes that row on to the next block;
- attention keeps its keys and values (the KV cache) and attends only to the indices of its
  pattern;
- per-position layers (relu, conv1x1, mlp, the head) need no memory.

Protocol, at grid position ``g`` (flattened): ``step(h, v, g) -> (out, v_out)`` stores the
layer's input ``h`` ``[B, F]`` at g and returns its output at g; ``v`` is the message of the
previous layer's second stream (a gated block's vertical row, WaveNet's residual stream, the
video encoder's frames), ``None`` when there is none. The first layer reads the model's input
at g before it is sampled (a placeholder: causality, proved by the checker, makes the output
independent of it); once every channel at g is drawn, ``commit(h, v, g)`` stores the final
input in the layers that keep raw input. Which layer is first, and whether a second stream
arrives, is read off the layers' declared ``streams`` / ``passes_stream`` / ``takes_indices``:
nothing here is written for a particular spec.

``CompiledAR.sample(n)`` uses this driver when every layer is cacheable (``cached=False``
runs the naive reference); with the same random stream both draw the same samples.

Example:
    >>> import torch, flowdsl
    >>> src = ("autoregressive m {\\n input x: sequence[6] levels 3\\n causal_conv(kernel=2, channels=4)\\n"
    ...        " gated_residual(kernel=2, dilation=2, residual=4, skip=5)\\n output categorical\\n}\\n")
    >>> model = flowdsl.compile_source(src, filename="m.ar").double()
    >>> x = model.sample(2)
    >>> bool((step_conditionals(model, x) - model.conditionals(x)).abs().max() < 1e-9)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import numpy as np
import torch

from flowdsl.layers.dependency_sets import layout_of
from flowdsl.runtime.ar_basic import GroupedLinear, encode_levels
from flowdsl.runtime.ar_conv import GatedBlockStepper, MaskedConvStepper
from flowdsl.runtime.ar_module import ARModule, Plan, Pointwise, Stepper, gate
from flowdsl.runtime.conditions import context_for

__all__ = ["Plan", "Stepper", "Pointwise", "MaskedConvStepper", "GatedBlockStepper", "register_stepper",
           "stepper_for", "supports", "fill", "step_conditionals", "gate"]


def register_stepper(module_type: type, factory: Callable[[Any, Plan], Stepper]) -> None:
    """Give an :class:`~flowdsl.runtime.ar_module.ARModule` class its incremental form (its ``stepper`` method)."""
    module_type.stepper = lambda self, plan: factory(self, plan)


def stepper_for(module: ARModule, plan: Plan) -> Stepper:
    """The incremental form of a layer declared ``cacheable``."""
    return module.stepper(plan)


def _raster(model) -> np.ndarray:
    return layout_of("x", model.input_shape).raster_order()


def supports(model, config: int = 0) -> bool:
    """Whether the cached driver can run ``model``: one configuration, raster order, every layer cacheable."""
    if model.configurations != 1 or not len(model.layers):
        return False
    order = model.orders[min(config, len(model.orders) - 1)].cpu().numpy()
    if not np.array_equal(order, _raster(model)):
        return False
    if model.head is not None and not isinstance(model.head, GroupedLinear):
        return False
    return all(m.cacheable for m in model.layers)


def _plans(model, batch: int, ctx, dtype, device, grid):
    plans, prev = [], None
    for i, m in enumerate(model.layers):
        after = prev is not None and prev.streams and prev.passes_stream
        plans.append(Plan(batch, grid, dtype, device, context_for(m, ctx), first=i == 0, after_stream=bool(after)))
        prev = m
    return plans


@torch.no_grad()
def fill(model, x, known, ctx, bar=None, record: bool = False, steps: int | None = None):
    """Ancestral sampling of the unknown positions of ``x`` (known ones are kept), one step per position.

    Draws exactly as the naive reference does (same rows, same order, same random stream).
    With ``record``, also returns the parameters of every position's conditional ``[B, N, P]``;
    ``steps`` stops after that many grid positions (the rest of ``x`` is left as it is). On the CPU the
    steps run on one intra-op thread: each is a handful of tiny operations, which threads only slow down.
    """
    threads = torch.get_num_threads()
    if x.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _fill(model, x, known, ctx, bar, record, steps)
    finally:
        torch.set_num_threads(threads)


def _fill(model, x, known, ctx, bar, record, steps):
    layout = layout_of("x", model.input_shape)
    grid, channels = layout.grid, layout.channels
    b, levels = x.shape[0], model.levels
    dtype, device = model._dtype(), x.device
    flat, known = x.reshape(b, -1).clone(), known.reshape(b, -1)
    index = torch.as_tensor(layout.index.reshape(channels, -1), device=device)
    steppers = [stepper_for(m, plan) for m, plan in zip(model.layers, _plans(model, b, ctx, dtype, device, grid))]
    takes = model.layers[0].takes_indices
    p = model.dist.params_per_position
    out_params = torch.zeros(b, flat.shape[1], p, dtype=dtype, device=device) if record else None
    head = Pointwise(model.head, Plan(b, grid, dtype, device)) if model.head is not None else None

    def first_input(g):
        ids = flat[:, index[:, g]]
        if takes:
            return ids[:, 0] if channels == 1 else ids
        return encode_levels(ids, levels, model.encoding, dtype).reshape(b, channels * levels)

    for g in range(int(prod(grid)) if steps is None else min(int(steps), int(prod(grid)))):
        for c in range(channels):
            pos = int(index[c, g])
            h, v = first_input(g), None
            for s in steppers:
                h, v = s.step(h, v, g)
            if head is not None:
                h = head.step(h, None, g)[0]
            params = h.reshape(b, channels, p)[:, c]
            if record:
                out_params[:, pos] = params
            todo = ~known[:, pos]
            if todo.any():
                rows = todo.nonzero().flatten()
                flat[rows, pos] = model.dist.sample(params[rows])
            if bar is not None:
                bar.update(1)
        h, v = first_input(g), None
        for i, s in enumerate(steppers):
            v = s.commit(h if i == 0 else None, v, g)
            if v is None and i > 0:
                break
    out = flat.reshape(x.shape)
    return (out, out_params) if record else out


@torch.no_grad()
def step_conditionals(model, x, context=None, steps: int | None = None) -> torch.Tensor:
    """``[B, N, P]``: every position's conditional computed by the cached driver, teacher-forced on ``x``.

    Equals ``model.conditionals(x)`` (up to rounding) when the caches are right. ``steps``: only the
    first that many grid positions (the rest stay zero).
    """
    x = model._check(x)
    ctx = model._context(context, x.shape[0])
    return fill(model, x, torch.ones_like(x, dtype=torch.bool), ctx, record=True, steps=steps)[1]
