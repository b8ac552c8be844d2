"""The compiled autoregressive model and its compiler (named by the autoregressive model kind).

Public API (fixed): ``input_shape``, ``levels``, ``context_shape`` (None, or ``()`` for
``condition y: label[K]``: the context is a LongTensor ``[B]`` of labels), ``order`` (flattened
input positions in generation order), ``conditionals(x, context) -> [B, N, P]`` (parameters
of each position's distribution, positions in flattened order), ``log_prob(x, context) -> [B]``
(exact, nats), ``sample(n, context)`` and ``complete(x, known_mask, context)``.

The input (integers in ``0..levels-1``) enters the first layer as ``C * levels`` features per grid
position, grouped by colour channel, in the model's ``encoding``
(:data:`~flowdsl.runtime.ar_basic.ENCODINGS`): the first layer's ``input_encoding`` (``reference``,
level 0 all zeros, so binary input is ``x`` itself, for fvbn, nade and made; ``one-hot`` for the
others); ``one-hot`` for a model loaded from a checkpoint written before the fix (the encoding
travels in the state dict's extra state), unless the first layer declares
``takes_indices`` (an embedding), which then receives the integers. Every layer module is an
:class:`~flowdsl.runtime.ar_module.ARModule` whose protocol attributes the compiler sets from the
layer's declared :class:`~flowdsl.layers.registry.CausalFacts` (nothing is probed). Layer modules map
``h [B, F, *grid]`` to ``h'``; a layer declaring ``streams`` is called ``layer(h, context, extra) ->
(h', extra')`` with a dict of further streams (the vertical stack; ``"skip"``: summed skip
connections, which the next stream-unaware layer and the head read instead of ``h``), as in
:mod:`flowdsl.analysis.causality`. The head (a 1x1 projection, mask B over colour groups) maps the
last features to the output parameters.

With a MADE of K masks, ``mask_index`` picks the mask whose ``order`` and ``conditionals``
are reported; in training mode each ``log_prob`` call uses the next mask in turn
(connectivity-agnostic training); in evaluation mode ``log_prob`` is the exact log of the
average of the K masks' probabilities, and ``sample`` draws from that mixture.

Example:
    >>> import torch, flowdsl
    >>> model = flowdsl.compile_source("autoregressive m {\\n input x: vector[3] levels 2\\n fvbn\\n"
    ...                                " output bernoulli\\n}\\n", filename="m.ar")
    >>> x = torch.tensor([[0, 1, 1]])
    >>> model.conditionals(x).shape, model.log_prob(x).shape, model.order.tolist()
    (torch.Size([1, 3, 1]), torch.Size([1]), [0, 1, 2])
"""

from __future__ import annotations

import math
import numbers
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flowdsl.analysis.causality import generation_orders
from flowdsl.errors import Diagnostic, FlowDSLError
from flowdsl.layers.registry import CausalFacts
from flowdsl.runtime.ar_basic import GroupedLinear, encode_levels
from flowdsl.runtime.ar_module import ARModule
from flowdsl.runtime.compiler import build_node
from flowdsl.runtime.conditions import ContextEncoder, build_context_encoder, context_for
from flowdsl.runtime.input_checks import (
    InputError,
    InputTypeError,
    as_tensor,
    check_shape,
    discrete_values,
    sample_count,
)
from flowdsl.runtime.outputs import build_output

__all__ = ["CompiledAR", "compile_autoregressive", "level_features"]


def level_features(hot: torch.Tensor, input_shape) -> torch.Tensor:
    """An encoded input ``[B, *input_shape, L]`` in the first layer's layout ``[B, C * L, *grid]``."""
    if len(input_shape) == 1:
        return hot.transpose(1, 2)
    if len(input_shape) == 3:
        b, c, h, w, lv = hot.shape
        return hot.permute(0, 1, 4, 2, 3).reshape(b, c * lv, h, w)
    b, t, c, h, w, lv = hot.shape  # video
    return hot.permute(0, 2, 5, 1, 3, 4).reshape(b, c * lv, t, h, w)


class CompiledAR(nn.Module):
    """An autoregressive model compiled from a spec."""

    def __init__(self, name: str, layers: list[ARModule], head, dist, input_shape, levels: int,
                 condition: ContextEncoder | None, orders, channels: int = 1, spec=None):
        super().__init__()
        self.name = name
        self.layers = nn.ModuleList(layers)  # each declared (ARModule.declare) by the compiler
        self.head = head
        self.dist = dist
        self.input_shape = tuple(input_shape)
        self.levels = int(levels)
        #: checks and encodes the context (None: unconditional); holds the condition's embed net
        self.condition = condition
        self.classes = condition.levels if condition is not None and condition.type_name == "label" else 0
        #: the condition's per-example shape (``()`` for a label), None when the model is unconditional
        self.context_shape = condition.shape if condition is not None else None
        self.channels = channels
        self.spec = spec or {}
        self.ir = None  # the checked IR, set by the compiler (flowdsl.runtime.compiler.compile_model)
        self.register_buffer("orders", torch.as_tensor(np.asarray(orders), dtype=torch.long), persistent=False)
        self.configurations = max([m.configurations for m in self.layers] + [1])
        self.no_likelihood = next((m.no_likelihood for m in self.layers if m.no_likelihood), None)
        self._mask_index = 0
        self._cycle = 0
        # of the input: what the first layer asks for; "one-hot" for checkpoints written before the fix
        self.encoding = getattr(layers[0], "input_encoding", "one-hot") if layers else "one-hot"

    @property
    def encoding(self) -> str:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        """The input encoding; the first layer learns whether its level-0 features are always zero (reference
        coding: fvbn and made then skip those columns of their weights, half the work on binary input)."""
        self._encoding = value
        if len(self.layers) and hasattr(self.layers[0], "reference_input"):
            self.layers[0].reference_input = value == "reference"

    # -- configuration (MADE masks)
    def get_extra_state(self):
        """The mask in turn travels in the state dict, so a resumed connectivity-agnostic run is exact;
        so does the input encoding (a state without one predates the fix: one-hot)."""
        return {"cycle": self._cycle, "mask_index": self._mask_index, "encoding": self.encoding}

    def set_extra_state(self, state):
        self._cycle = int(state["cycle"])
        self._mask_index = int(state["mask_index"])
        self.encoding = str(state.get("encoding", "one-hot"))

    @property
    def mask_index(self) -> int:
        return self._mask_index

    @mask_index.setter
    def mask_index(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise InputTypeError(f"mask_index must be an integer, got {k!r}", self._where)
        if not 0 <= int(k) < self.configurations:
            raise InputError(f"mask_index must be in 0..{self.configurations - 1}, got {k}", self._where)
        self._mask_index = int(k)

    def _select(self, k: int) -> None:
        for m in self.layers:
            m.select(k)

    @property
    def order(self) -> torch.Tensor:
        """Flattened input positions in generation order (of the mask ``mask_index``)."""
        return self.orders[min(self._mask_index, len(self.orders) - 1)]

    @property
    def size(self) -> int:
        return math.prod(self.input_shape)

    # -- helpers
    def _dtype(self):
        ref = next(self.parameters(), None)
        return ref.dtype if ref is not None else torch.get_default_dtype()

    def _device(self):
        ref = next(self.parameters(), None)
        return ref.device if ref is not None else self.orders.device

    @property
    def _where(self) -> str:
        return f"autoregressive model '{self.name}'"

    def _context(self, context, batch: int):
        """The encoded condition ``[B, *encoded]`` (None for an unconditional model; InputError when wrong)."""
        if self.condition is None:
            if context is not None:
                raise InputError("the model declares no condition, but a context was given", self._where)
            return None
        return self.condition(context, batch, self._dtype(), self._device())

    def _check(self, x):
        """``x`` as a LongTensor ``[B, *input_shape]`` of whole numbers in ``0..levels-1`` (InputError otherwise;
        the checks of compiled flows, :mod:`flowdsl.runtime.input_checks`)."""
        x = as_tensor(x, self._where, self._device())
        check_shape(x, self.input_shape, self._where)
        return discrete_values(x, self.levels, self._where)

    def _encode(self, x):
        """Features ``[B, C * L, *grid]`` (colour channel c owns features c*L .. c*L+L-1), in ``encoding``."""
        return level_features(encode_levels(x, self.levels, self.encoding, self._dtype()), self.input_shape)

    def _params(self, x, ctx, config: int):
        """``[B, N, P]`` under configuration ``config`` (x checked, ctx one-hot)."""
        self._select(config)
        first = self.layers[0] if len(self.layers) else None
        h = x if first is not None and first.takes_indices else self._encode(x)
        extra: dict = {}  # streams besides the main one (a gated PixelCNN's vertical stack, summed skips)
        for layer in self.layers:
            if layer.streams:
                h, extra = layer(h, context_for(layer, ctx), extra)
            else:
                h, extra = layer(extra.get("skip", h), context_for(layer, ctx)), {}
        h = extra.get("skip", h)
        if self.head is not None:
            h = self.head(h)
        b, p = h.shape[0], self.dist.params_per_position
        h = h.reshape(b, self.channels, p, *h.shape[2:]).movedim(2, -1)  # [B, C, *grid, P]
        if len(self.input_shape) == 4:
            h = h.transpose(1, 2)  # video: [B, T, C, H, W, P]
        return h.reshape(b, self.size, p)

    # -- the API
    def conditionals(self, x, context=None) -> torch.Tensor:
        """``[B, N, P]``: the parameters of p(x_i | x_<i) for each flattened position i (mask ``mask_index``)."""
        x = self._check(x)
        return self._params(x, self._context(context, x.shape[0]), self._mask_index)

    def log_prob(self, x, context=None) -> torch.Tensor:
        """Exact log p(x) in nats, ``[B]``."""
        if self.no_likelihood:  # a sampler that defines no likelihood (e.g. non-parametric texture synthesis)
            raise NotImplementedError(f"model '{self.name}': {self.no_likelihood}")
        x = self._check(x)
        ctx = self._context(context, x.shape[0])
        if not len(x):  # an empty batch: an empty result
            return torch.zeros(0, dtype=self._dtype(), device=x.device)
        flat = x.reshape(x.shape[0], -1)
        if self.configurations == 1 or self.training:
            k = self._mask_index
            if self.configurations > 1:  # connectivity-agnostic training: the next mask in turn
                k, self._cycle = self._cycle % self.configurations, self._cycle + 1
            return self.dist.log_prob(self._params(x, ctx, k), flat).sum(dim=1)
        each = torch.stack([self.dist.log_prob(self._params(x, ctx, k), flat).sum(dim=1)
                            for k in range(self.configurations)])
        self._select(self._mask_index)
        return torch.logsumexp(each, dim=0) - math.log(self.configurations)

    def forward(self, x, context=None):
        return self.log_prob(x, context)

    def bits_per_dim(self, x, context=None) -> torch.Tensor:
        return -self.log_prob(x, context) / (self.size * math.log(2))

    def _progress(self, total: int, progress):
        from tqdm.auto import tqdm

        show = (sys.stderr.isatty() and total >= 256) if progress is None else bool(progress)
        return tqdm(total=total, disable=not show, desc=f"sampling {self.name}", leave=False)

    @torch.no_grad()
    def _fill(self, x, known, ctx, config: int, bar, cached: bool = False):
        """Ancestral sampling of the unknown positions in the order of ``config``; known ones are kept.

        ``cached``: one incremental step per position through the layers' caches
        (:mod:`flowdsl.runtime.ar_cache`) when every layer has one; the naive loop otherwise."""
        if cached:
            from flowdsl.runtime.ar_cache import fill, supports

            if supports(self, config):
                return fill(self, x, known, ctx, bar)
        flat, known = x.reshape(x.shape[0], -1).clone(), known.reshape(x.shape[0], -1)
        for pos in self.orders[min(config, len(self.orders) - 1)].tolist():
            todo = ~known[:, pos]
            if todo.any():
                rows = todo.nonzero().flatten()
                sub_ctx = None if ctx is None else ctx[rows]
                params = self._params(flat[rows].reshape(-1, *self.input_shape), sub_ctx, config)[:, pos]
                flat[rows, pos] = self.dist.sample(params)
            bar.update(1)
        return flat.reshape(x.shape)

    @torch.no_grad()
    def sample(self, n: int, context=None, progress: bool | None = None, cached: bool = True) -> torch.Tensor:
        """``n`` exact ancestral samples, integers ``[n, *input_shape]`` (from the mixture of masks, if several).

        ``progress``: a tqdm bar (None: only on a terminal, for long runs). ``cached``: generate with the
        layers' caches (one step per position) where the model has them; False: the naive reference,
        the whole network per position (both draw the same samples from the same random stream)."""
        n = sample_count(n, self._where)
        ctx = self._context(context, n)
        x = torch.zeros((n, *self.input_shape), dtype=torch.long, device=self._device())
        known = torch.zeros_like(x, dtype=torch.bool)
        configs = (torch.randint(self.configurations, (n,), device=x.device) if self.configurations > 1
                   else torch.zeros(n, dtype=torch.long, device=x.device))
        with self._progress(self.size * len(configs.unique()), progress) as bar:
            for k in configs.unique().tolist():
                rows = (configs == k).nonzero().flatten()
                x[rows] = self._fill(x[rows], known[rows], None if ctx is None else ctx[rows], k, bar, cached)
        self._select(self._mask_index)
        return x

    @torch.no_grad()
    def complete(self, x, known_mask, context=None, progress: bool | None = None,
                 cached: bool = True) -> torch.Tensor:
        """Fill the positions where ``known_mask`` is False by sampling, in generation order, from the
        model's conditionals given everything before them; known positions are kept exactly. (Known
        positions later in the order do not influence earlier draws: exact when they form a prefix.)"""
        x = self._check(x)
        known = torch.as_tensor(known_mask, dtype=torch.bool, device=x.device).expand_as(x)
        ctx = self._context(context, x.shape[0])
        with self._progress(self.size, progress) as bar:
            out = self._fill(x, known, ctx, self._mask_index, bar, cached)
        self._select(self._mask_index)
        return out


def _declared(ir, node, spec_dir: str) -> ARModule:
    """The layer's module, its protocol attributes set from the layer's declared facts."""
    module = build_node(ir, node, spec_dir)
    if not isinstance(module, ARModule):
        raise FlowDSLError([Diagnostic(node.pos, "error", f"layer '{node.layer.name}' builds a "
                                       f"{type(module).__name__}, not an ARModule: it cannot run in an "
                                       f"autoregressive model")])
    return module.declare(node.causal or CausalFacts())


def compile_autoregressive(ir, unit) -> CompiledAR:
    """The autoregressive kind's compiler: build the layers, the head and the output distribution."""
    header = ir.header
    spec_dir = str(Path(unit.main).parent)
    layers = [_declared(ir, node, spec_dir) for node in ir.layers]
    sink = ir.sink.info
    head = None
    if sink.head is not None:
        head = GroupedLinear(sink.head.in_features, sink.head.out_features, sink.head.channels)
    dist = build_output(header.output, header.input.levels)
    return CompiledAR(
        header.name, layers, head, dist, header.input.shape, header.input.levels,
        build_context_encoder(header.condition, f"autoregressive model '{header.name}'"), generation_orders(ir),
        sink.channels,
        spec={"file": unit.main, "model": header.name, "hash": unit.source_hash, "sources": dict(unit.sources)},
    )

