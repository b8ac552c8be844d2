"""Torch modules of the vector AR layers (fvbn, nade, made) and the glue (relu, conv1x1, the output head).

Every autoregressive layer maps features ``[B, F, *grid]`` to ``[B, F', *grid]``; fvbn, nade
and made emit the output parameters ``[B, P, D]`` directly. Masks are buffers built once; the made
layer is the one MADE module (:mod:`flowdsl.runtime.made`) over K mask sets.

Example:
    >>> import torch
    >>> nade = NADE(positions=4, in_features=2, hidden=8, params_per_position=1)
    >>> nade(torch.randn(3, 2, 4)).shape
    torch.Size([3, 1, 4])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers.ar_basic import made_layer_masks
from flowdsl.layers.ar_conv import kernel_mask
from flowdsl.runtime.ar_module import ARModule, Plan, Pointwise, Stepper
from flowdsl.runtime.ar_vector_steppers import FVBNStepper, MadeStepper, NADEStepper
from flowdsl.runtime.base import BuildNode, ContextLinear
from flowdsl.runtime.made import MADE

__all__ = ["ENCODINGS", "encode_levels", "FVBN", "NADE", "MadeLayer", "ReLU", "GroupedLinear", "build_fvbn",
           "build_nade", "build_made",
           "build_relu", "build_conv1x1"]


#: how integer inputs become the first layer's features, ``levels`` per value: ``reference`` (level 0 is
#: the baseline, all zeros; level k > 0 sets feature k; on 2 levels exactly ``(0, x)``) or ``one-hot``
#: (every level sets its feature). One-hot gives the features of the commonest level (MNIST's black
#: background) the value 1 in almost every example: in a layer with weights per position (fvbn, nade,
#: made) their ~700 weights per unit move ~lr each per Adam step in the same direction, a per-unit bias
#: moving ~700x faster than a real one, which killed half of a MADE's ReLU units in 200 steps. Those
#: layers declare ``input_encoding = "reference"`` (the papers feed them x). Convolutions share their
#: weights over positions (at most a kernel's taps add up) and one-hot tells them the zero padding from
#: black pixels; measured (benchmarks/paper_encoding.py) without dead channels, they keep one-hot.
ENCODINGS = ("reference", "one-hot")


def encode_levels(x: torch.Tensor, levels: int, encoding: str, dtype) -> torch.Tensor:
    """Integers ``[...]`` -> features ``[..., levels]`` under ``encoding`` (:data:`ENCODINGS`).

    >>> encode_levels(torch.tensor([0, 1, 2]), 3, "reference", torch.float32).tolist()
    [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> encode_levels(torch.tensor([0, 1]), 2, "one-hot", torch.float32).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown input encoding {encoding!r} (one of {', '.join(ENCODINGS)})")
    # one comparison and one cast (one_hot's fill, scatter, cast and level-0 zeroing were four passes);
    # reference coding compares level 0 with -1, which no (checked) input equals
    first = 0 if encoding == "one-hot" else -1
    codes = torch.arange(levels, device=x.device)
    codes[0] = first
    return (x.unsqueeze(-1) == codes).to(dtype)


def _flat(h: torch.Tensor) -> torch.Tensor:
    """``[B, F, D] -> [B, D * F]`` (position-major: unit ``j * F + f``)."""
    return h.transpose(1, 2).reshape(h.shape[0], -1)


def _unflat(y: torch.Tensor, d: int) -> torch.Tensor:
    """``[B, D * P] -> [B, P, D]``."""
    return y.reshape(y.shape[0], d, -1).transpose(1, 2)


class FVBN(ARModule):
    """params_i = b_i + sum_{j < i} W_ij x_j (+ U_i c): a strictly lower-triangular (block) linear map.

    With ``context_features`` F > 0 each conditional also gets a context term ``U_i c`` of the flattened
    condition ``c [B, F]`` (a dense ``[D * P, F]`` map: the context is not a position, any output may read it).
    """

    input_encoding = "reference"  # as the first layer: fed x, as the paper (see ENCODINGS)

    def __init__(self, positions: int, in_features: int, params_per_position: int, context_features: int = 0):
        super().__init__()
        d, f, p = positions, in_features, params_per_position
        self.positions = d
        self.linear = nn.Linear(d * f, d * p)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)
        self.context = ContextLinear(context_features, d * p, bias=False) if context_features else None
        if self.context is not None:
            nn.init.normal_(self.context.weight, std=0.01)
        pos_out = torch.arange(d).repeat_interleave(p)
        pos_in = torch.arange(d).repeat_interleave(f)
        self.register_buffer("mask", (pos_in[None, :] < pos_out[:, None]).to(torch.get_default_dtype()),
                             persistent=False)

    #: set by the model: this is the first layer and its input is reference-coded (level 0 all zeros)
    reference_input = False

    def forward(self, h, context=None):
        f = h.shape[1]
        if self.reference_input and f > 1:  # level 0's features are zero: its weight columns do no work
            d = self.positions
            w = self.linear.weight.view(-1, d, f)[:, :, 1:] * self.mask.to(h.dtype).view(-1, d, f)[:, :, 1:]
            y = F.linear(_flat(h[:, 1:]), w.reshape(w.shape[0], -1), self.linear.bias)
        else:
            y = F.linear(_flat(h), self.linear.weight * self.mask.to(h.dtype), self.linear.bias)
        if self.context is not None and context is not None:
            y = y + self.context(context.to(y.dtype))
        return _unflat(y, self.positions)

    def stepper(self, plan: Plan) -> Stepper:
        return FVBNStepper(self, plan)


def _nade_blocks(d: int, batch: int, hidden: int) -> list[tuple[int, int]]:
    """Blocks of positions whose ``[n, B, H]`` intermediates hold about 2**19 numbers (cache-sized)."""
    n = max(1, min(d, (1 << 19) // max(batch * hidden, 1)))
    return [(lo, min(lo + n, d)) for lo in range(0, d, n)]


def _before(n: int, like: torch.Tensor) -> torch.Tensor:
    """``[n, n]``, entry (i, j) = 1 for j < i: the sums over earlier positions of a block as one product
    (2-3x faster than ``cumsum`` along the block's outer dimension, measured)."""
    return torch.ones(n, n, dtype=like.dtype, device=like.device).tril_(-1)


def _hidden_block(x, W, run):
    """``(a, u)`` of one block: ``a[i] = run + sum_{j < i} u[j]`` (positions before i only), ``u = x W``."""
    u = torch.bmm(x, W)  # [n, B, H]: what each position adds for the later ones
    n = len(u)
    a = torch.addmm(run.reshape(1, -1), _before(n, u), u.reshape(n, -1)).reshape(u.shape)
    return a, u


class _NADEPass(torch.autograd.Function):
    """NADE's density pass in blocks of positions, its backward recomputing each block (no [B, D, H] kept).

    Layout position-major: ``x [D, B, F]``, ``W [D, F, H]``, ``V [D, P, H]``, ``b [D, P]`` -> ``[D, B, P]``;
    the hidden bias ``c`` is ``[H]``, or ``[B, H]`` per example (a conditional NADE: ``c + U y``).
    Only the hidden pre-activation at each block's start is saved; every other intermediate lives for
    one cache-sized block (:func:`_nade_blocks`), so memory is O(B H) per block and each block is a few
    batched matrix products and fused elementwise passes.
    """

    @staticmethod
    def forward(ctx, x, W, c, V, b, keep=True):
        ctx.c_shared = c.dim() == 1
        d, batch, _ = x.shape
        out = x.new_empty(d, batch, V.shape[1])
        blocks = _nade_blocks(d, batch, W.shape[2])
        prefix = x.new_empty(len(blocks) if keep else 0, batch, W.shape[2])
        run = c.expand(batch, -1)
        for k, (lo, hi) in enumerate(blocks):
            if keep:
                prefix[k] = run
            a, u = _hidden_block(x[lo:hi], W[lo:hi], run)
            run = a[-1] + u[-1]
            torch.baddbmm(b[lo:hi, None, :], torch.sigmoid_(a), V[lo:hi].transpose(1, 2), out=out[lo:hi])
        ctx.save_for_backward(x, W, V, prefix)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, W, V, prefix = ctx.saved_tensors
        gx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        gW, gV, gb = torch.empty_like(W), torch.empty_like(V), grad_out.sum(1)
        carry = torch.zeros_like(prefix[0])  # sum of dL/da over the positions after the block
        blocks = _nade_blocks(x.shape[0], x.shape[1], W.shape[2])
        for k in reversed(range(len(blocks))):
            lo, hi = blocks[k]
            s = torch.sigmoid_(_hidden_block(x[lo:hi], W[lo:hi], prefix[k])[0])
            g = grad_out[lo:hi]
            torch.bmm(g.transpose(1, 2), s, out=gV[lo:hi])
            ga = torch.ops.aten.sigmoid_backward(torch.bmm(g, V[lo:hi]), s)  # dL/da, [n, B, H]
            # a_i reads u_j for j < i: dL/du_j = carry + sum_{i > j, in the block} dL/da_i; the last row: the total
            n = hi - lo
            after = torch.cat([_before(n, ga).t(), ga.new_ones(1, n)])
            sums = torch.mm(after, ga.reshape(n, -1)).reshape(n + 1, *ga.shape[1:])
            gu = sums[:n].add_(carry)
            carry = carry + sums[n]
            torch.bmm(x[lo:hi].transpose(1, 2), gu, out=gW[lo:hi])
            if gx is not None:
                torch.bmm(gu, W[lo:hi].transpose(1, 2), out=gx[lo:hi])
        gc = carry.sum(0) if ctx.c_shared else carry  # dL/dc: every position's dL/da (per example)
        return gx, gW, gc, gV, gb, None


@torch.compiler.disable
def _nade_pass(chunks, biases, w, rest, grad: bool) -> torch.Tensor:
    """The blocked pass over each chunk, ``[D, B, P]``; eager under torch.compile (a graph break, on purpose):
    compiled, its block loop unrolls into a graph that took 646 s to build for 784 x 500 and ran 2.6x slower
    (517 vs 199 ms a training step); the cumulative-sum form compiles quickly but runs 615 ms (docs/benchmarks.md)."""
    return torch.cat([_NADEPass.apply(part.permute(2, 0, 1).contiguous(), w, bias, *rest, grad)
                      for part, bias in zip(chunks, biases)], 1)


class NADE(ARModule):
    """h_i = sigmoid(c + U y + sum_{j<i} W_j x_j) with weights shared by all i; params_i = V_i h_i + b_i.

    ``U y``: the flattened condition ``y [B, F]`` projected onto the hidden pre-activation (with
    ``context_features`` F > 0), one per-example hidden bias shared by every conditional.

    As the first layer it is fed ``x`` (reference coding, :data:`ENCODINGS`), as in the paper.
    One pass costs O(B D H (F + P)) time and O(B H) memory per block of positions (:class:`_NADEPass`: the
    sums over j < i are a running sum carried through cache-sized blocks; the backward recomputes a block).
    """

    input_encoding = "reference"

    def __init__(self, positions: int, in_features: int, hidden: int, params_per_position: int,
                 input_levels: int = 1, context_features: int = 0):
        super().__init__()
        d, f, h, p = positions, in_features, hidden, params_per_position
        self.W = nn.Parameter(torch.randn(h, d, f) * (1.0 / (d * f / input_levels) ** 0.5))
        self.c = nn.Parameter(torch.zeros(h))
        self.V = nn.Parameter(torch.randn(d, p, h) * (1.0 / h ** 0.5))
        self.b = nn.Parameter(torch.zeros(d, p))
        self.U = ContextLinear(context_features, h, bias=False) if context_features else None

    def _hidden_bias(self, context, dt) -> torch.Tensor:
        """``c`` ``[H]``, or ``c + U y`` ``[B, H]`` when the layer reads a condition."""
        c = self.c.to(dt)
        if self.U is None or context is None:
            return c
        return c + F.linear(context.to(dt), self.U.weight.to(dt))

    def forward(self, x, context=None):
        dt = x.dtype
        w = self.W.to(dt).permute(1, 2, 0).contiguous()  # [D, F, H]
        c = self._hidden_bias(context, dt)
        rest = (self.V.to(dt).contiguous(), self.b.to(dt))
        grad = torch.is_grad_enabled()  # evaluation keeps no block prefixes
        # evaluation runs 128 examples at a time: blocks of several positions stay cache-sized
        chunks = [x] if grad else torch.split(x, 128)
        biases = [c] * len(chunks) if c.dim() == 1 or grad else list(torch.split(c, 128))
        out = _nade_pass(chunks, biases, w, rest, grad)
        return out.permute(1, 2, 0)  # [B, P, D]

    def stepper(self, plan: Plan) -> Stepper:
        return NADEStepper(self, plan)

    def reference_forward(self, x, context=None):
        """The same map, written out with a cumulative sum over ``[B, D, H]`` (slow; for tests)."""
        u = torch.einsum("hdf,bfd->bdh", self.W.to(x.dtype), x)
        c = self._hidden_bias(context, x.dtype)
        a = (c if c.dim() == 1 else c[:, None]) + F.pad(torch.cumsum(u, dim=1)[:, :-1], (0, 0, 1, 0))
        out = torch.einsum("dph,bdh->bdp", self.V.to(x.dtype), torch.sigmoid(a)) + self.b.to(x.dtype)
        return out.transpose(1, 2)


class MadeLayer(MADE, ARModule):
    """The ``made(...)`` model layer: the one MADE module over K mask sets, on features ``[B, F, D]``.

    Input unit ``j * F + f`` is feature f of position j, output ``i * P + q`` parameter q of position i
    (position-major); a condition (``context_features`` C > 0) is the first layer's last C columns, of
    degree 0 (every hidden unit reads it, no path between positions), plus a direct linear term in every
    conditional (``direct``: the first position's conditional reads no hidden unit, yet must read the
    condition). ``select(k)`` makes mask set k the active one. As the first layer (``input_levels`` = L
    features per position, at most one of them non-zero), the first weights are drawn for a fan-in of
    ``D (+ C)``, not ``D * L (+ C)``: on binary input exactly the initialisation of a plain MADE fed ``x``
    (and the condition), and it is fed ``x`` (reference coding, :data:`ENCODINGS`).
    """

    input_encoding = "reference"

    def __init__(self, per_mask, positions: int, input_levels: int = 1, context_features: int = 0):
        super().__init__(mask_sets=[masks for masks, _ in per_mask])
        self.positions = positions
        self.context_features = int(context_features)
        #: the condition straight to every conditional (the first position's only way to read it)
        self.direct = nn.Linear(context_features, self.layers[-1].out_features, bias=False) if context_features \
            else None
        fan_in = self.layers[0].in_features  # D * L + C
        scale = (fan_in / (fan_in - (positions * (input_levels - 1)))) ** 0.5  # as if fed D (+ C) numbers
        with torch.no_grad():  # the nn.Linear default as if fed one feature per position (see _encoded_fan_in)
            self.layers[0].weight.mul_(scale)
            self.layers[0].bias.mul_(scale)

    def select(self, config: int) -> None:
        self.active = config % self.sets

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint written before the layer read the condition has no context columns: they load as zeros
        # (with the direct term at zero too, in MADE's loader), the map the old model computed
        key = prefix + "layers.0.weight"
        w = state_dict.get(key)
        if w is not None and self.context_features and w.shape[1] + self.context_features == self.layers[0].in_features:
            state_dict[key] = torch.cat([w, w.new_zeros(w.shape[0], self.context_features)], dim=1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    #: set by the model: this is the first layer and its input is reference-coded (level 0 all zeros)
    reference_input = False

    def forward(self, h, context=None):
        if not self.context_features:
            context = None
        elif context is None:  # a conditional layer built without a condition at hand: the zero context
            context = h.new_zeros(h.shape[0], self.context_features)
        if self.reference_input and h.shape[1] > 1:
            return _unflat(self._forward_without_level0(h, context), self.positions)
        y = MADE.forward(self, _flat(h), context)  # adds the direct term (self.direct) once
        return _unflat(y, self.positions)

    def _forward_without_level0(self, h, context):
        """MADE.forward with the first layer's level-0 columns left out: reference-coded level 0 is all zeros,
        so those columns add nothing (on binary input the first product halves)."""
        first, (d, f) = self.layers[0], (self.positions, h.shape[1])
        weight, mask = first.weight, first.mask.to(first.weight.dtype)
        w = weight[:, :d * f].view(-1, d, f)[:, :, 1:] * mask[:, :d * f].view(-1, d, f)[:, :, 1:]
        a = F.linear(_flat(h[:, 1:]), w.reshape(w.shape[0], -1), first.bias)
        if context is not None:
            a = a + F.linear(context.to(a.dtype), weight[:, d * f:] * mask[:, d * f:])
        h1 = self.acts[0](a)
        for layer, act in zip(self.layers[1:-1], self.acts[1:]):
            h1 = act(layer(h1))
        out = self.layers[-1](h1)
        if self.direct is not None and context is not None:
            out = out + self.direct(context.to(out.dtype))
        return out

    def stepper(self, plan: Plan) -> Stepper:
        return MadeStepper(self, plan)


class ReLU(ARModule):
    def forward(self, h, context=None):
        return F.relu(h)

    def stepper(self, plan: Plan) -> Stepper:
        return Pointwise(self, plan)


class GroupedLinear(ARModule):
    """A per-position linear map ``[B, F, *grid] -> [B, F', *grid]``; mask B over colour groups if groups > 1."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        if groups > 1:
            m = kernel_mask(out_features, in_features, (1, 1), (0, 0), "B", groups)[:, :, 0, 0]
            self.register_buffer("mask", torch.as_tensor(m).to(torch.get_default_dtype()), persistent=False)
        else:
            self.mask = None

    def forward(self, h, context=None):
        w = self.weight if self.mask is None else self.weight * self.mask.to(self.weight.dtype)
        y = torch.einsum("oi,bi...->bo...", w.to(h.dtype), h)
        return y + self.bias.to(h.dtype).reshape(1, -1, *([1] * (h.dim() - 2)))

    def stepper(self, plan: Plan) -> Stepper:
        return Pointwise(self, plan)


def _encoded_levels(node: BuildNode) -> int:
    """Features per position that are the encoded input's levels (at most one non-zero): L for the first
    layer over a vector input, else 1. Weights drawn for a fan-in of ``D * L`` would start sqrt(L) too small."""
    return int(node.meta["in_features"]) if node.position == 0 else 1


def build_fvbn(layer, node: BuildNode):
    m = node.meta
    return FVBN(m["positions"], m["in_features"], m["params_per_position"], node.context_features)


def build_nade(layer, node: BuildNode):
    m = node.meta
    return NADE(m["positions"], m["in_features"], layer.hidden, m["params_per_position"], _encoded_levels(node),
                node.context_features)


def build_made(layer, node: BuildNode):
    m = node.meta
    context = node.context_features
    _, per_mask = made_layer_masks(layer, m["positions"], m["in_features"], m["params_per_position"], context)
    return MadeLayer(per_mask, m["positions"], _encoded_levels(node), context)


def build_relu(layer, node: BuildNode):
    return ReLU()


def build_conv1x1(layer, node: BuildNode):
    return GroupedLinear(node.meta["in_features"], layer.channels, node.meta["groups"])
