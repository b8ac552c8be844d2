"""Fast cached generation: one generic driver over per-layer incremental steppers.

Naive ancestral sampling recomputes the whole network for every position. The cached
driver walks the grid once in generation order (raster order: time, row, column, then the
colour channels of a position) and asks each layer only for its output at the new position.
Every compiled layer module offers an incremental form, a :class:`Stepper`, either through a
``stepper(plan)`` method (the sequence, attention, video and texture modules) or through a
factory registered here for its type (masked convolutions, gated blocks, the per-position
glue). A stepper keeps what its layer has read so far:

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
arrives, is read off the compiled layer list: nothing here is written for a particular spec.

``CompiledAR.sample(n)`` uses this driver when every layer has a stepper (``cached=False``
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

from dataclasses import dataclass
from math import prod
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from flowdsl.analysis.causality import layout_of
from flowdsl.runtime.ar_basic import GroupedLinear, ReLU
from flowdsl.runtime.ar_conv import GatedBlock, MaskedConv2d

__all__ = ["Plan", "Stepper", "Pointwise", "STEPPERS", "register_stepper", "stepper_for", "supports", "fill",
           "step_conditionals", "gate"]


@dataclass
class Plan:
    """What a stepper is built for: the batch, the grid, the model's condition and its place in the model."""

    batch: int
    grid: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    context: torch.Tensor | None = None  # one-hot condition [B, K]
    first: bool = False  # reads the model's input
    after_stream: bool = False  # the previous layer passes a second stream

    def zeros(self, *shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)


class Stepper:
    """The incremental form of one layer (see the module docstring for the protocol)."""

    def step(self, h: torch.Tensor, v: Any, g: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def commit(self, h: torch.Tensor | None, v: Any, g: int) -> Any:
        """The input at g is final: store it if this layer keeps raw input; return the stream message on."""
        return None


def gate(t: torch.Tensor) -> torch.Tensor:
    """tanh(first half) * sigmoid(second half) along dimension 1."""
    f, g = t.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class Pointwise(Stepper):
    """A per-position layer: its forward applied to the single new position."""

    def __init__(self, module, plan: Plan):
        self.module, self.ones = module, (1,) * len(plan.grid)

    def step(self, h, v, g):
        return self.module(h.reshape(h.shape + self.ones)).reshape(h.shape[0], -1), None


class MaskedConvStepper(Stepper):
    """A masked k x k convolution at one pixel: the rows r-k//2..r of its input, kept in a padded buffer."""

    def __init__(self, module: MaskedConv2d, plan: Plan):
        kh, kw = module.kernel_size
        self.ph, self.pw, self.kw = kh // 2, kw // 2, kw
        self.h, self.w = plan.grid
        w = (module.weight * module.mask.to(module.weight.dtype))[:, :, : self.ph + 1]
        self.weight, self.bias = w.reshape(w.shape[0], -1).T.contiguous(), module.bias
        self.buf = plan.zeros(plan.batch, module.in_channels, self.h + self.ph, self.w + 2 * self.pw)
        self.first = plan.first

    def _write(self, h, g):
        r, c = divmod(g, self.w)
        self.buf[:, :, r + self.ph, c + self.pw] = h
        return r, c

    def step(self, h, v, g):
        r, c = self._write(h, g)
        patch = self.buf[:, :, r: r + self.ph + 1, c: c + self.kw]
        return torch.addmm(self.bias, patch.reshape(patch.shape[0], -1), self.weight), None

    def commit(self, h, v, g):
        if self.first:
            self._write(h, g)
        return None


class GatedBlockStepper(Stepper):
    """A Gated PixelCNN block: the vertical stack one row at a time (when the row above is complete), the
    horizontal stack at each pixel; the vertical row r-1 is passed on to the next block at the start of row r."""

    def __init__(self, module: GatedBlock, plan: Plan):
        self.m, k = module, module.k
        self.p, self.h, self.w = k // 2, *plan.grid
        self.first, self.v_from_h = plan.first, not plan.after_stream
        fh, fv = module.horizontal.in_channels, module.vertical.in_channels
        b = plan.batch
        self.hbuf = plan.zeros(b, fh, self.h, self.w + self.p)
        self.vbuf = plan.zeros(b, fv, self.h + self.p, self.w + 2 * self.p)
        wh = module.horizontal.weight * module.h_mask.to(module.horizontal.weight.dtype)
        self.wh, self.bh = wh.reshape(wh.shape[0], -1).T.contiguous(), module.horizontal.bias
        self.link_w = module.link.weight[:, :, 0, 0]
        ctx = plan.context
        self.label_v = module.cond_v(ctx) if module.cond_v is not None and ctx is not None else None
        self.label_h = module.cond_h(ctx) if module.cond_h is not None and ctx is not None else None
        self.row, self.link_row = -1, None

    def cond_v(self, r: int):
        """What the condition adds to the vertical stack's row r (``[B, 2ch, W]``-broadcastable, or None)."""
        return None if self.label_v is None else self.label_v[:, :, None]

    def cond_h(self, r: int, c: int):
        """What the condition adds to the horizontal stack at (r, c) (``[B, 2ch]``, or None)."""
        return self.label_h

    def _write(self, h, g):
        r, c = divmod(g, self.w)
        self.hbuf[:, :, r, c + self.p] = h
        if self.v_from_h:
            self.vbuf[:, :, r + self.p, c + self.p] = h
        return r, c

    def _start_row(self, r, v):
        self.row = r
        m = self.m
        if r == 0:
            self.link_row = m.link.bias[None, :, None].expand(self.hbuf.shape[0], -1, self.w)
            return None
        if not self.v_from_h:
            self.vbuf[:, :, r - 1 + self.p, self.p: self.p + self.w] = v
        strip = self.vbuf[:, :, r - 1: r + self.p]  # rows r-1-p .. r-1
        v_pre = F.conv2d(strip, m.vertical.weight, m.vertical.bias)[:, :, 0]  # [B, 2ch, W]
        self.link_row = torch.einsum("oi,biw->bow", self.link_w, v_pre) + m.link.bias[None, :, None]
        extra = self.cond_v(r - 1)
        return gate(v_pre if extra is None else v_pre + extra)

    def step(self, h, v, g):
        r, c = self._write(h, g)
        out_v = self._start_row(r, v) if r != self.row else None
        patch = self.hbuf[:, :, r, c: c + self.p + 1]
        pre = torch.addmm(self.bh, patch.reshape(patch.shape[0], -1), self.wh) + self.link_row[:, :, c]
        extra = self.cond_h(r, c)
        if extra is not None:
            pre = pre + extra
        out = self.m.out(gate(pre)[:, :, None, None])[:, :, 0, 0]
        return (out + h if self.m.residual else out), out_v

    def commit(self, h, v, g):
        if self.first:
            self._write(h, g)
        return None


STEPPERS: dict[type, Callable[[Any, Plan], Stepper]] = {
    ReLU: Pointwise, GroupedLinear: Pointwise, MaskedConv2d: MaskedConvStepper, GatedBlock: GatedBlockStepper,
}


def register_stepper(module_type: type, factory: Callable[[Any, Plan], Stepper]) -> None:
    """Give a module type (whose class has no ``stepper`` method) its incremental form."""
    STEPPERS[module_type] = factory


def _factory(module):
    make = getattr(module, "stepper", None)
    if make is not None:
        return make
    for klass in type(module).__mro__:
        if klass in STEPPERS:
            return lambda plan, _k=klass: STEPPERS[_k](module, plan)
    return None


def stepper_for(module, plan: Plan) -> Stepper | None:
    make = _factory(module)
    return None if make is None else make(plan)


def _raster(model) -> np.ndarray:
    return layout_of("x", model.input_shape).raster_order()


def supports(model, config: int = 0) -> bool:
    """Whether the cached driver can run ``model``: one configuration, raster order, a stepper for every layer."""
    if getattr(model, "configurations", 1) != 1 or not len(model.layers):
        return False
    order = model.orders[min(config, len(model.orders) - 1)].cpu().numpy()
    if not np.array_equal(order, _raster(model)):
        return False
    if model.head is not None and not isinstance(model.head, GroupedLinear):
        return False
    return all(_factory(m) is not None and getattr(m, "cacheable", True) for m in model.layers)


def _plans(model, batch: int, ctx, dtype, device, grid):
    plans, prev = [], None
    for i, m in enumerate(model.layers):
        after = prev is not None and getattr(prev, "streams", False) and getattr(prev, "passes_stream", True)
        plans.append(Plan(batch, grid, dtype, device, ctx, first=i == 0, after_stream=bool(after)))
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
    takes = getattr(model.layers[0], "takes_indices", False)
    p = model.dist.params_per_position
    out_params = torch.zeros(b, flat.shape[1], p, dtype=dtype, device=device) if record else None
    head = Pointwise(model.head, Plan(b, grid, dtype, device)) if model.head is not None else None

    def first_input(g):
        ids = flat[:, index[:, g]]
        if takes:
            return ids[:, 0] if channels == 1 else ids
        return F.one_hot(ids, levels).to(dtype).reshape(b, channels * levels)

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
