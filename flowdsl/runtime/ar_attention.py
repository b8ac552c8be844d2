"""Torch modules of ``attention`` and ``mlp``, with the KV-cache stepper for cached generation.

The pattern's per-head boolean masks (:func:`flowdsl.layers.ar_attention.head_masks`, the
same index sets the checker propagated) are a buffer built once. On CUDA, where
``torch.nn.attention.flex_attention`` exists, they also become a FlexAttention block mask
(built once per device and length, so empty blocks are skipped); elsewhere attention is
``scaled_dot_product_attention`` with the boolean mask. A query with no key (a position before
the first summary of a ``fixed`` head) gets a zero output.

With ``context_features`` F > 0 the flattened condition ``c [B, F]`` is added to the residual stream
as a projection (every position the same), and with ``context_keys`` K > 0 it also becomes K tokens
whose keys and values (the layer's own key and value maps) every query attends to, before the
pattern's keys (so no query is left without a key). The KV cache computes those once per batch.

Example:
    >>> import torch
    >>> from flowdsl.layers.ar_attention import StridedPattern, head_masks
    >>> att = Attention(length=8, dim=4, heads=2, masks=head_masks(StridedPattern(stride=2), 2, 8), positions=True)
    >>> att(torch.randn(3, 4, 8)).shape
    torch.Size([3, 4, 8])
    >>> cond = Attention(8, 4, 2, head_masks(StridedPattern(stride=2), 2, 8), True, context_features=5,
    ...                  context_keys=2)
    >>> cond(torch.randn(3, 4, 8), torch.randn(3, 5)).shape
    torch.Size([3, 4, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.layers.ar_attention import head_masks
from flowdsl.runtime.ar_module import ARModule, Plan, Pointwise, Stepper
from flowdsl.runtime.base import BuildNode

__all__ = ["Attention", "PositionMLP", "build_attention", "build_mlp", "flex_available"]


def flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


class Attention(ARModule):
    """``x + W_o attn(LN(x))`` over ``[B, dim, L]`` (plus learned positions in the model's first attention layer).

    ``use_flex``: None (FlexAttention on CUDA when available), True or False (force a path)."""

    def __init__(self, length: int, dim: int, heads: int, masks, positions: bool, context_features: int = 0,
                 context_keys: int = 0):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02) if positions else None
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        #: the condition added to the residual stream; its ``context_keys`` tokens (None: not read)
        self.cond = nn.Linear(context_features, dim, bias=False) if context_features else None
        self.memory = nn.Linear(context_features, context_keys * dim) if context_features and context_keys else None
        self.context_keys = int(context_keys) if self.memory is not None else 0
        mask = torch.as_tensor(masks, dtype=torch.bool)
        self.register_buffer("mask", mask, persistent=False)
        empty = ~mask.any(dim=-1) & (self.context_keys == 0)  # [H, L]: queries with no key
        self.register_buffer("empty", empty, persistent=False)
        # the keys a query may read: the context's tokens first, then the pattern's
        full = torch.cat([mask.new_ones(heads, length, self.context_keys), mask], dim=-1)
        self.register_buffer("full_mask", full, persistent=False)
        self.use_flex: bool | None = None
        self._block_masks: dict = {}

    def _split(self, y):
        b, n, _ = y.shape
        q, k, v = y.reshape(b, n, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # [B, H, L, hd] each

    def _flex(self, q, k, v):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        n, nk = q.shape[2], k.shape[2]
        key = (q.device, n, nk)
        if key not in self._block_masks:
            mask = self.full_mask if nk != n else self.mask

            def mask_mod(b, h, qi, ki):
                return mask[h, qi, ki]

            self._block_masks[key] = create_block_mask(mask_mod, B=None, H=self.heads, Q_LEN=n, KV_LEN=nk,
                                                       device=q.device)
        return flex_attention(q, k, v, block_mask=self._block_masks[key])

    def attend(self, q, k, v):
        """Masked attention ``[B, H, L, hd]``; zero for queries with no key. ``k``, ``v`` may hold the context's
        ``context_keys`` tokens first (``[B, H, K + L, hd]``)."""
        flex = self.use_flex if self.use_flex is not None else (q.is_cuda and flex_available())
        if flex:
            out = self._flex(q, k, v)
        elif k.shape[2] != q.shape[2]:  # the context's keys: every query has one
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.full_mask)
        else:
            eye = torch.eye(q.shape[2], dtype=torch.bool, device=q.device)
            safe = self.mask | (self.empty[:, :, None] & eye)  # a key for every query; its output is zeroed
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe)
        return out.masked_fill(self.empty[None, :, :, None], 0.0)

    def context_terms(self, context, dtype):
        """``(added [B, dim] or None, (keys, values) [B, H, K, hd] each, or None)`` of a condition ``[B, F]``."""
        if self.cond is None or context is None:
            return None, None
        context = context.to(dtype)
        added = self.cond(context)
        if self.memory is None:
            return added, None
        tokens = self.norm(self.memory(context).reshape(context.shape[0], self.context_keys, self.dim))
        w, b = self.qkv.weight[self.dim:], self.qkv.bias[self.dim:]  # the key and value maps
        kv = F.linear(tokens, w, b).reshape(context.shape[0], self.context_keys, 2, self.heads, -1)
        mk, mv = kv.permute(2, 0, 3, 1, 4)
        return added, (mk, mv)

    def forward(self, x, context=None):
        h = x.transpose(1, 2)
        if self.pos is not None:
            h = h + self.pos.to(h.dtype)
        added, memory = self.context_terms(context, h.dtype)
        if added is not None:
            h = h + added[:, None, :]
        q, k, v = self._split(self.qkv(self.norm(h)))
        if memory is not None:
            k, v = torch.cat([memory[0], k], dim=2), torch.cat([memory[1], v], dim=2)
        out = self.attend(q, k, v).transpose(1, 2).reshape(h.shape)
        return (h + self.proj(out)).transpose(1, 2)

    def stepper(self, plan: Plan):
        return _KVCache(self, plan)


class _KVCache(Stepper):
    """Keys and values of every position so far; query t attends to the pattern's keys of row t only."""

    def __init__(self, m: Attention, plan: Plan):
        self.m, n, hd = m, plan.grid[0], m.dim // m.heads
        self.k = plan.zeros(plan.batch, m.heads, n, hd)
        self.v = plan.zeros(plan.batch, m.heads, n, hd)
        # the condition's terms, once for the whole generation: the added projection and the context's keys
        self.added, memory = m.context_terms(plan.context, plan.dtype)
        self.mk, self.mv = memory if memory is not None else (None, None)
        tril = torch.ones(n, n, dtype=torch.bool, device=m.mask.device).tril()
        self.dense = bool((m.mask == tril).all())  # dense: slice the first t + 1 keys
        self.scale = 1.0 / math.sqrt(hd)
        if self.dense:
            return
        rows = m.mask.sum(dim=-1)  # [H, L]
        width = max(int(rows.max()), 1)
        order = torch.sort(m.mask.to(torch.int8), dim=-1, descending=True, stable=True).indices[..., :width]
        self.idx = order  # [H, L, width]: the allowed keys first
        self.valid = torch.arange(width, device=plan.device)[None, None, :] < rows[..., None]
        self.heads = torch.arange(m.heads, device=plan.device)[:, None]

    def step(self, h, v, t):
        m = self.m
        x = h if m.pos is None else h + m.pos[t]
        if self.added is not None:
            x = x + self.added
        y = m.qkv(m.norm(x)).reshape(x.shape[0], 3, m.heads, -1)
        q, k, val = y[:, 0], y[:, 1], y[:, 2]  # [B, H, hd]
        self.k[:, :, t], self.v[:, :, t] = k, val
        if self.dense:
            keys, values = self.k[:, :, : t + 1], self.v[:, :, : t + 1]
            valid = None
        else:
            idx, valid = self.idx[:, t], self.valid[:, t]  # [H, W]
            keys, values = self.k[:, self.heads, idx], self.v[:, self.heads, idx]  # [B, H, W, hd]
        if self.mk is not None:  # the context's keys, readable by every query
            keys, values = torch.cat([self.mk, keys], dim=2), torch.cat([self.mv, values], dim=2)
            if valid is not None:
                valid = torch.cat([valid.new_ones(valid.shape[0], self.mk.shape[2]), valid], dim=1)
        scores = torch.einsum("bhd,bhwd->bhw", q, keys) * self.scale
        if valid is None:
            w = torch.softmax(scores, dim=-1)
        else:
            w = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1).nan_to_num(0.0)
        out = torch.einsum("bhw,bhwd->bhd", w, values).reshape(x.shape)
        return x + m.proj(out), None


class PositionMLP(ARModule):
    """``x + W2 relu(W1 LN(x))`` at every position of ``[B, F, *grid]``."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.up = nn.Linear(features, hidden)
        self.down = nn.Linear(hidden, features)

    def forward(self, x, context=None):
        h = x.movedim(1, -1)
        return (h + self.down(F.relu(self.up(self.norm(h))))).movedim(-1, 1)

    def stepper(self, plan: Plan):
        return Pointwise(self, plan)


def build_attention(layer, node: BuildNode):
    n = node.meta["length"]
    return Attention(n, layer.dim, layer.heads, head_masks(layer.pattern, layer.heads, n), node.meta["positions"],
                     node.context_features, layer.context_keys)


def build_mlp(layer, node: BuildNode):
    return PositionMLP(node.meta["in_features"], layer.hidden)
