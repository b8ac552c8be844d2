"""The coupling layer: any transformer (affine, additive, splines, dsf, umnn, sos) over any mask.

Index masks (``half``, ``channel(p)``, explicit lists) select kept and transformed parts with
index tensors built once at compile time (two contiguous blocks are read as views and joined
by one cat); spatial masks (``checkerboard(p)``, and image lists that do not keep whole
channels: ``meta["spatial"]``) multiply by a fixed 0/1 buffer and keep the kept positions with
one ``where``. The conditioner only ever sees kept positions; its output
is parameter-major (``k`` blocks the shape of the transformed part), handed to the transformer
as ``[..., k]`` views. A coupling whose net reads the condition map as channels (``meta["context_map"]``)
sets ``context_layout = "map"``: the compiled model hands it the map ``[B, C, H, W]``, not the vector.

Example:
    >>> import torch
    >>> from flowdsl import compile_source
    >>> flow = compile_source("flow f {\\n input x: vector[4]\\n coupling affine(mask=half)\\n}\\n")
    >>> x = torch.randn(3, 4)
    >>> z, ld = flow(x)
    >>> torch.allclose(flow.inverse(z), x, atol=1e-6)
    True
    >>> type(flow.layers[0].transformer).__name__
    'Affine'
"""

from __future__ import annotations

import torch
from torch import nn

from flowdsl.runtime.base import Bijection, BuildNode, sum_except_batch
from flowdsl.runtime.nets import build_net
from flowdsl.runtime.optimize import logdets_discarded
from flowdsl.runtime.optimize_index_maps import IndexParts
from flowdsl.runtime.transformers import build_transformer

__all__ = ["Coupling", "build_coupling"]


class Coupling(Bijection):
    """``y_t = h(x_t; net(x_k))``, ``y_k = x_k``, for a transformer module ``h`` (a value)."""

    def __init__(self, kept, spatial: bool, net: nn.Module, transformer: nn.Module, shape, context_map: bool = False):
        super().__init__()
        #: what flowdsl.runtime.conditions.context_for hands the layer: the map itself, or flattened
        self.context_layout = "map" if context_map else "flat"
        kept = torch.as_tensor(kept, dtype=torch.bool)
        self.spatial = spatial
        self.net = net
        self.transformer = transformer
        self.k = transformer.params_per_dim
        self.zero_logdet = bool(transformer.zero_logdet)
        self.shape = tuple(shape)
        #: (forward, inverse) taking the parameter blocks separately, when the transformer has them
        self.parts_fn = ((transformer.forward_parts, transformer.inverse_parts)
                         if hasattr(transformer, "forward_parts") else None)
        if spatial:
            self.register_buffer("kept_mask", kept.to(torch.get_default_dtype()), persistent=False)
            self.register_buffer("kept_bool", kept, persistent=False)
        else:
            axis = kept.reshape(kept.shape[0], -1)[:, 0] if kept.dim() > 1 else kept
            self.register_buffer("kept_idx", torch.nonzero(axis).flatten(), persistent=False)
            self.register_buffer("trans_idx", torch.nonzero(~axis).flatten(), persistent=False)
        # kept and transformed parts that are two contiguous blocks (half, channel(p)) are read as views
        # and joined by one cat: no gathers, no scatter (decided once, here)
        self.blocks = None
        self.folded: nn.ModuleList | None = None  # index maps of an absorbed permutation (compile-time pass)
        if not spatial:
            n_kept = int(axis.sum())
            if bool(axis[:n_kept].all()):
                self.blocks = (True, n_kept)  # kept first
            elif bool(axis[len(axis) - n_kept:].all()):
                self.blocks = (False, len(axis) - n_kept)  # transformed first

    def _parts(self, x):
        """(kept part, transformed part) along axis 1."""
        if self.blocks is None:
            return x.index_select(1, self.kept_idx), x.index_select(1, self.trans_idx)
        kept_first, n = self.blocks
        a, b = x[:, :n], x[:, n:]
        return (a, b) if kept_first else (b, a)

    def _join(self, x, x_k, y_t):
        """x with its transformed part replaced by y_t."""
        if self.blocks is None:
            return x.index_copy(1, self.trans_idx, y_t)
        return torch.cat([x_k, y_t] if self.blocks[0] else [y_t, x_k], dim=1)

    def _params(self, net_in, like, context):
        """Net output ``[B, k * C, ...]`` or ``[B, k * n]`` as a ``[*like.shape, k]`` view."""
        out = self.net(net_in, context)
        if self.k == 1:
            return out.unsqueeze(-1)
        return out.reshape(out.shape[0], self.k, *like.shape[1:]).movedim(1, -1)

    def part(self, x_k, x_t, context, inverse: bool = False, logdet: bool = True):
        """``(y_t, log-det of each transformed element or None)`` from the two parts: None when the
        log-det is zero or ``logdet`` is False. A transformer with ``forward_parts`` gets the parameter
        blocks as slices of the net's output (parameter-major: block j is ``out[:, j n:(j + 1) n]``)."""
        if self.parts_fn is not None:
            out = self.net(x_k, context)
            n = x_t.shape[1]
            blocks = (out,) if self.k == 1 else out.split(n, dim=1)
            y_t, ld = self.parts_fn[inverse](x_t, *blocks)
        else:
            fn = self.transformer.inverse if inverse else self.transformer.forward  # not __call__: fewer hooks
            y_t, ld = fn(x_t, self._params(x_k, x_t, context))
        return y_t, (ld if logdet and not self.zero_logdet else None)

    def _transform(self, x, context, inverse: bool, maps=None):
        skip = self.zero_logdet or logdets_discarded()  # zero by the IR, or dropped by the caller (sampling)
        if self.spatial:
            fn = self.transformer.inverse if inverse else self.transformer.forward
            y, ld = fn(x, self._params(x * self.kept_mask.to(x.dtype), x, context))
            keep = self.kept_bool.expand_as(x)
            y = torch.where(keep, x, y)
            if skip:
                return y, x.new_zeros(x.shape[0])
            return y, sum_except_batch(torch.where(keep, torch.zeros_like(ld), ld))
        if maps is not None:  # a folded permutation: read and write through the compile-time index maps
            x_k, x_t = maps[0].read(x)
            y_t, ld = self.part(x_k, x_t, context, inverse, not skip)
            y = maps[1].write(x_k, y_t)
        else:
            x_k, x_t = self._parts(x)
            y_t, ld = self.part(x_k, x_t, context, inverse, not skip)
            y = self._join(x, x_k, y_t)
        return y, x.new_zeros(x.shape[0]) if ld is None else sum_except_batch(ld)

    def read_write_maps(self, inverse: bool = False):
        """``(read, write)``: where this layer's kept and transformed parts are read in its input and written
        in its output, as ``(kept positions, transformed positions)`` of axis 1 (index tensors; forward
        direction: an absorbed permutation is in ``read``)."""
        if self.folded is not None:
            read, write = self.folded[0], self.folded[1]
            return (read.first, read.second), (write.first, write.second)
        own = (self.kept_idx, self.trans_idx)
        return own, own

    @property
    def can_absorb_permutation(self) -> bool:
        """An index mask (not spatial) that has not absorbed a permutation yet."""
        return not self.spatial and self.folded is None

    def absorb_permutation(self, perm) -> None:
        """Become ``self o permute(perm)``: read ``x[:, perm[kept]]``, ``x[:, perm[transformed]]`` directly.

        The inverse writes its result through the same maps, so neither direction gathers ``x[:, perm]``.
        """
        perm = torch.as_tensor(perm, dtype=torch.long, device=self.kept_idx.device)
        own = IndexParts(self.kept_idx, self.trans_idx)
        through = IndexParts(perm[self.kept_idx], perm[self.trans_idx])
        self.folded = nn.ModuleList([through, own, own, through])  # forward read, write; inverse read, write

    def forward(self, x, context=None):
        maps = None if self.folded is None else (self.folded[0], self.folded[1])
        return self._transform(x, context, False, maps)

    def inverse(self, y, context=None):
        maps = None if self.folded is None else (self.folded[2], self.folded[3])
        return self._transform(y, context, True, maps)


def build_coupling(layer, node: BuildNode) -> Coupling:
    """Runtime of every ``coupling T`` layer: the transformer module, then the conditioner net."""
    transformer = build_transformer(layer.transformer)
    assert transformer.params_per_dim == node.meta["params_per_dim"], "transformer and spec disagree on parameters"
    channels = node.meta.get("context_map", 0) if node.context_features else 0
    net = build_net(layer.net, node.meta["net_in"], node.meta["net_out"], channels or node.context_features)
    return Coupling(layer.mask.kept(node.in_shape), node.meta["spatial"], net, transformer, node.in_shape,
                    context_map=bool(channels))
