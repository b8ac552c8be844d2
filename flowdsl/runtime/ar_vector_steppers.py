"""Incremental forms of the per-position-weight AR layers (fvbn, nade, made): O(D H) sampling, not O(D^2 H).

Naive ancestral sampling runs the whole layer once per position. Each of these layers is a sum over
earlier positions followed by a map of that sum, so its stepper keeps the running sum and adds one
position's contribution when that position is final, and computes only the output rows of the
position being drawn (the rows of its parameters), with the masks applied once per sampling call:

- ``fvbn``: ``params_g = b_g + sum_{j<g} W_gj x_j (+ U_g y)``: a running ``[B, D * P]`` accumulator, one
  rank-F update per position;
- ``nade``: the shared hidden pre-activation ``a = c (+ U y) + sum_{j<g} W_j x_j``: one rank-F update
  per position, then ``V_g sigmoid(a) + b_g``;
- ``made``: the first layer's pre-activation the same way (the condition's degree-0 columns added
  once at the start), the deeper hidden layers in full, and the output layer's rows of position g only.

They are cacheable as the model's first layer only (their rules declare so): the model's input at g is
final at ``commit``, where the running sums take it in (see :mod:`flowdsl.runtime.ar_cache` for the
protocol). After a layer that reads the current position (``embed``), the input at g is only known
after the later layers have run again, so such a model samples by the naive loop.

Example:
    >>> import torch, flowdsl
    >>> from flowdsl.runtime.ar_cache import step_conditionals
    >>> src = "autoregressive m {\\n input x: vector[6] levels 3\\n nade(hidden=5)\\n output categorical\\n}\\n"
    >>> model = flowdsl.compile_source(src, filename="m.ar").double()
    >>> x = model.sample(4)
    >>> bool((step_conditionals(model, x) - model.conditionals(x)).abs().max() < 1e-12)
    True
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from flowdsl.runtime.ar_module import Plan, Stepper

__all__ = ["FVBNStepper", "NADEStepper", "MadeStepper"]


class _PrefixStepper(Stepper):
    """A layer whose output at g reads the positions before g through a running sum: ``add(h_j, j)`` folds
    a final input in, ``emit(g)`` gives the output at g ``[B, P * F_out]``."""

    def __init__(self, plan: Plan):
        if not plan.first:
            raise ValueError("fvbn, nade and made step only as the model's first layer (see the rules' cacheable)")

    def add(self, h: torch.Tensor, j: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def emit(self, g: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, h, v, g):
        return self.emit(g), None  # reads the positions before g only: h (the placeholder at g) is not needed

    def commit(self, h, v, g):
        self.add(h, g)  # the model's input at g, final
        return None


class FVBNStepper(_PrefixStepper):
    def __init__(self, module, plan: Plan):
        super().__init__(plan)
        dt = plan.dtype
        self.p = module.linear.out_features // module.positions
        self.f = module.linear.in_features // module.positions
        self.w = (module.linear.weight * module.mask.to(module.linear.weight.dtype)).to(dt)  # [D P, D F]
        acc = module.linear.bias.to(dt).expand(plan.batch, -1).clone()
        if module.context is not None and plan.context is not None:
            acc = acc + module.context(plan.context.to(dt))
        self.acc = acc  # [B, D * P]: every output's sum over the positions folded in so far

    def add(self, h, j):
        cols = self.w[:, j * self.f:(j + 1) * self.f]  # [D P, F]
        self.acc.addmm_(h.to(self.acc.dtype), cols.t())

    def emit(self, g):
        return self.acc[:, g * self.p:(g + 1) * self.p]


class NADEStepper(_PrefixStepper):
    def __init__(self, module, plan: Plan):
        super().__init__(plan)
        dt = plan.dtype
        self.w = module.W.to(dt)  # [H, D, F]
        self.v, self.b = module.V.to(dt), module.b.to(dt)  # [D, P, H], [D, P]
        c = module._hidden_bias(plan.context, dt)
        self.a = c.expand(plan.batch, -1).clone()  # [B, H]: the shared pre-activation

    def add(self, h, j):
        self.a.addmm_(h.to(self.a.dtype), self.w[:, j, :].t())

    def emit(self, g):
        return torch.addmm(self.b[g], torch.sigmoid(self.a), self.v[g].t())


class MadeStepper(_PrefixStepper):
    def __init__(self, module, plan: Plan):
        super().__init__(plan)
        dt = plan.dtype
        layers = module.layers
        self.f = (layers[0].in_features - module.context_features) // module.positions
        self.p = layers[-1].out_features // module.positions
        self.w0 = layers[0].masked_weight().to(dt)  # [H1, D F (+ C)]
        self.hidden = [(layer.masked_weight().to(dt), layer.bias.to(dt)) for layer in layers[1:-1]]
        self.acts = list(module.acts)
        self.w_out, self.b_out = layers[-1].masked_weight().to(dt), layers[-1].bias.to(dt)
        a = layers[0].bias.to(dt).expand(plan.batch, -1).clone()
        context = plan.context
        if module.context_features and context is None:  # as the forward: a conditional layer without one
            context = torch.zeros(plan.batch, module.context_features, dtype=dt, device=plan.device)
        self.direct = None
        if module.context_features:
            assert context is not None and module.direct is not None
            d_f = layers[0].in_features - module.context_features
            a = a + F.linear(context.to(dt), self.w0[:, d_f:])
            self.direct = F.linear(context.to(dt), module.direct.weight.to(dt))  # [B, D P]
        self.a = a  # [B, H1]

    def add(self, h, j):
        self.a.addmm_(h.to(self.a.dtype), self.w0[:, j * self.f:(j + 1) * self.f].t())

    def emit(self, g):
        h = self.acts[0](self.a)
        for (w, b), act in zip(self.hidden, self.acts[1:]):
            h = act(F.linear(h, w, b))
        rows = slice(g * self.p, (g + 1) * self.p)
        out = F.linear(h, self.w_out[rows], self.b_out[rows])
        return out if self.direct is None else out + self.direct[:, rows]
