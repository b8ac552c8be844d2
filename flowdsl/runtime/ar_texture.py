"""Torch module of ``nonparametric`` (Efros-Leung texture synthesis) and its stepper.

The example's candidate neighbourhoods are integer buffers built once: for every centre
whose causal window lies inside the example, the values at the window's causal offsets and
at the centre. Distances are integer weighted sums of squared differences (exact, so the
whole-image and the one-pixel paths agree bit for bit); the conditional of a pixel is the
histogram of the centre values of the candidates within ``(1 + eps)`` of the best distance,
returned as logits (log counts; -1e4 for levels no candidate has).

Example:
    >>> import torch
    >>> src = torch.arange(36).reshape(1, 6, 6) % 4
    >>> m = NonParametric(src.numpy(), window=3, eps=0.0, levels=4)
    >>> m(torch.zeros(2, 1, 3, 3, dtype=torch.long)).shape
    torch.Size([2, 4, 3, 3])
"""

from __future__ import annotations

import numpy as np
import torch

from flowdsl.layers.ar_texture import gaussian_weights
from flowdsl.runtime.ar_module import ARModule, Plan, Stepper
from flowdsl.runtime.base import BuildNode

__all__ = ["NonParametric", "build_nonparametric"]


class NonParametric(ARModule):
    """Efros-Leung conditionals ``[B, C * levels, H, W]`` of integer images ``[B, C, H, W]``."""

    def __init__(self, pixels, window: int, eps: float, levels: int, chunk: int = 64):
        super().__init__()
        src = torch.as_tensor(np.asarray(pixels), dtype=torch.long)  # [C, Hs, Ws]
        taps = gaussian_weights(window)
        half, (channels, hs, ws) = window // 2, src.shape
        ii, jj = torch.meshgrid(torch.arange(half, hs), torch.arange(half, ws - half), indexing="ij")
        ii, jj = ii.reshape(-1), jj.reshape(-1)
        nb = torch.stack([src[:, ii + dy, jj + dx].T for (dy, dx), _ in taps], dim=1)  # [Q, O, C]
        self.register_buffer("nb", nb, persistent=False)
        self.register_buffer("centre", src[:, ii, jj].T.contiguous(), persistent=False)  # [Q, C]
        self.register_buffer("weights", torch.tensor([w for _, w in taps], dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor([o for o, _ in taps], dtype=torch.long), persistent=False)
        self.channels, self.levels, self.eps, self.chunk = channels, levels, float(eps), chunk
        self.register_buffer("_ref", torch.zeros(()), persistent=False)  # follows the model's dtype

    def _neighbours(self, x, r, c):
        """Values ``[B, N, O, C]`` and in-image flags ``[N, O]`` of the causal offsets of pixels (r, c)."""
        h, w = x.shape[-2:]
        rr, cc = r[:, None] + self.offsets[:, 0], c[:, None] + self.offsets[:, 1]
        valid = (rr >= 0) & (cc >= 0) & (cc < w)
        vals = x[:, :, rr.clamp(0, h - 1), cc.clamp(0, w - 1)]  # [B, C, N, O]
        return vals.permute(0, 2, 3, 1), valid

    def _logits(self, vals, valid, cur):
        """``[B, N, C, L]``: per channel, the histogram logits given the window and the pixel's earlier channels."""
        diff = vals[:, :, None] - self.nb[None, None]  # [B, N, Q, O, C]
        per_offset = (diff * diff).sum(-1) * (self.weights * valid)[None, :, None, :]  # [B, N, Q, O]
        base = per_offset.sum(-1)  # [B, N, Q]
        out = []
        for ch in range(self.channels):
            d = base
            if ch:
                dc = cur[:, :, None, :ch] - self.centre[None, None, :, :ch]
                d = d + 1024 * (dc * dc).sum(-1)
            best = d.min(dim=-1, keepdim=True).values
            match = d.double() <= best.double() * (1.0 + self.eps)
            counts = torch.zeros(d.shape[:2] + (self.levels,), dtype=torch.double, device=d.device)
            counts.scatter_add_(2, self.centre[:, ch].expand(d.shape[:2] + (-1,)), match.double())
            out.append(torch.where(counts > 0, counts.log(), torch.full_like(counts, -1e4)))
        return torch.stack(out, dim=2).to(self._ref.dtype)

    def forward(self, x, context=None):
        x = x.long()
        b, ch, h, w = x.shape
        pos = torch.arange(h * w, device=x.device)
        out = []
        for rows in pos.split(self.chunk):
            r, c = rows // w, rows % w
            vals, valid = self._neighbours(x, r, c)
            out.append(self._logits(vals, valid, x[:, :, r, c].transpose(1, 2)))
        logits = torch.cat(out, dim=1)  # [B, HW, C, L]
        return logits.permute(0, 2, 3, 1).reshape(b, ch * self.levels, h, w)

    def stepper(self, plan: Plan):
        return _TextureStepper(self, plan)


class _TextureStepper(Stepper):
    def __init__(self, m: NonParametric, plan: Plan):
        self.m, (self.h, self.w) = m, plan.grid
        self.x = torch.zeros(plan.batch, m.channels, self.h, self.w, dtype=torch.long, device=plan.device)

    def _write(self, ids, g):
        r, c = divmod(g, self.w)
        self.x[:, :, r, c] = ids.reshape(ids.shape[0], -1)
        return r, c

    def step(self, ids, v, g):
        r, c = self._write(ids, g)
        rt, ct = torch.tensor([r], device=self.x.device), torch.tensor([c], device=self.x.device)
        vals, valid = self.m._neighbours(self.x, rt, ct)
        logits = self.m._logits(vals, valid, self.x[:, :, r, c][:, None, :])  # [B, 1, C, L]
        return logits.reshape(logits.shape[0], -1), None

    def commit(self, ids, v, g):
        self._write(ids, g)
        return None


def build_nonparametric(layer, node: BuildNode):
    return NonParametric(node.meta["pixels"], layer.window, layer.eps, node.levels)
