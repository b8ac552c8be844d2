"""Autoregressive flow layers: a MADE conditioner and a scalar monotone transformer.

``direction=forward`` (MAF, NAF, UMNN, SOS, autoregressive NSF): ``y_i = h(x_i; net(x)_i)``,
one pass for the density; the inverse solves dimension groups in the order of the
dependency DAG's topological generations (computed by the checker from the MADE's
connectivity and handed over in ``meta["generations"]``): one pass per generation.
``direction=inverse`` (IAF): ``x_i = h(z_i; net(z)_i)`` on the sampling side, so sampling
is one pass and the density takes the sequential passes.

The transformer is a value: any module of :mod:`flowdsl.runtime.transformers`
(``forward(x, p) -> (y, log dy/dx)``, ``inverse(y, p) -> (x, log dx/dy)``, elementwise with
``p[..., k]``), the same modules coupling layers use.

Example:
    >>> import torch, flowdsl
    >>> from flowdsl.testing import perturb_parameters
    >>> flow = flowdsl.compile_source(
    ...     "flow f {\\n input x: vector[3]\\n autoregressive affine(net=made([8]), direction=inverse)\\n}\\n")
    >>> layer = flow.layers[0]
    >>> _ = perturb_parameters(layer, 0.5, seed=1)
    >>> len(layer.generations), layer.direction
    (3, 'inverse')
    >>> x = torch.randn(4, 3)
    >>> z, ld = layer(x)
    >>> x2, ld2 = layer.inverse(z)
    >>> (x2 - x).abs().max().item() < 1e-4, (ld + ld2).abs().max().item() < 1e-4
    (True, True)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowdsl.runtime.base import Bijection, BuildNode
from flowdsl.runtime.made import MADE
from flowdsl.runtime.optimize import logdets_discarded
from flowdsl.runtime.transformers import build_transformer

__all__ = ["AutoregressiveFlow", "build_autoregressive"]


class AutoregressiveFlow(Bijection):
    """MADE + transformer; ``generations`` are the groups of dims solved together by each sequential pass."""

    def __init__(self, made: MADE, transformer: nn.Module, generations, direction: str = "forward"):
        super().__init__()
        if direction not in ("forward", "inverse"):
            raise ValueError(f"direction must be 'forward' or 'inverse', not {direction!r}")
        self.made = made
        self.transformer = transformer
        self.zero_logdet = bool(transformer.zero_logdet)
        self.direction = direction
        self.absorbed = False  # a permutation folded in by flowdsl.runtime.optimize_permutations
        self.generations = tuple(tuple(int(i) for i in g) for g in generations)
        d, k = made.features, made.params_per_dim
        for g, dims in enumerate(self.generations):
            self.register_buffer(f"_gen{g}", torch.tensor(dims, dtype=torch.long), persistent=False)
            # the MADE output rows of this generation's parameters (output p * D + i: parameter p of dim i)
            rows = torch.tensor([p * d + i for p in range(k) for i in dims], dtype=torch.long)
            self.register_buffer(f"_rows{g}", rows, persistent=False)

    def _gen(self, g: int) -> torch.Tensor:
        return getattr(self, f"_gen{g}")

    def _pass_params(self):
        """``(u, context, g) -> [B, len(gen g), k]``: the MADE with its masks applied once per inverse
        (not once per pass), computing only the output rows of generation ``g``."""
        made = self.made
        hidden = [(layer.masked_weight(), layer.bias) for layer in made.layers[:-1]]
        last = made.layers[-1]
        w_last = last.masked_weight()
        k = made.params_per_dim

        def params(u, context, g, blocks: bool = False):
            h = u if context is None else torch.cat([u, context.to(u.dtype)], dim=1)
            for (w, b), act in zip(hidden, made.acts):
                h = act(F.linear(h, w, b))
            rows = getattr(self, f"_rows{g}")
            out = F.linear(h, w_last.index_select(0, rows), last.bias.index_select(0, rows))
            if made.direct is not None and context is not None:  # the condition straight to every output
                out = out + F.linear(context.to(out.dtype), made.direct.weight.index_select(0, rows))
            if blocks:  # the k parameter blocks of the generation, as views (rows are parameter-major)
                return out.split(len(rows) // k, dim=1)
            return out.reshape(u.shape[0], k, -1).transpose(1, 2)

        return params

    def _one_pass(self, u, context):
        parts = getattr(self.transformer, "forward_parts", None)
        if parts is not None:  # the parameters as k slices of the MADE's output: no reshape, no selects
            v, ld = parts(u, *self.made(u, context).split(self.made.features, dim=1))
        else:
            v, ld = self.transformer.forward(u, self.made.params(u, context))
        return v, (u.new_zeros(u.shape[0]) if self.zero_logdet else ld.sum(dim=1))

    def _sequential(self, v, context):
        """Solve ``v = h(u; net(u))`` for u, one generation of the dependency DAG per pass."""
        u = torch.zeros_like(v)
        ld = v.new_zeros(v.shape[0])
        params = self._pass_params()
        discarded = logdets_discarded()  # sampling: the caller drops the log-det
        parts = getattr(self.transformer, "inverse_parts", None)
        for g in range(len(self.generations)):
            idx = self._gen(g)
            if parts is not None:
                sol, part = parts(v.index_select(1, idx), *params(u, context, g, blocks=True))
            else:
                sol, part = self.transformer.inverse(v.index_select(1, idx), params(u, context, g))
            u = u.index_copy(1, idx, sol)
            if not (self.zero_logdet or discarded):
                ld = ld + part.sum(dim=1)
        return u, ld

    def absorb_permutation(self, perm) -> None:
        """Become ``self o permute(perm)``: the layer gathers its own input (forward) and scatters its
        output back (inverse), so the separate permutation layer is an identity (compile-time pass)."""
        perm = torch.as_tensor(perm, dtype=torch.long, device=self._gen0.device)
        self.register_buffer("_in_perm", perm, persistent=False)
        self.register_buffer("_in_inv", torch.argsort(perm), persistent=False)
        self.absorbed = True

    @property
    def can_absorb_permutation(self) -> bool:
        return not self.absorbed

    def forward(self, x, context=None):
        if self.absorbed:
            x = x.index_select(1, self._in_perm)
        return self._one_pass(x, context) if self.direction == "forward" else self._sequential(x, context)

    def inverse(self, y, context=None):
        x, ld = self._sequential(y, context) if self.direction == "forward" else self._one_pass(y, context)
        return (x.index_select(1, self._in_inv) if self.absorbed else x), ld


def build_autoregressive(layer, node: BuildNode) -> AutoregressiveFlow:
    """Runtime of every ``autoregressive X`` flow layer (masks and passes from the checked IR node)."""
    meta = node.meta
    transformer = build_transformer(layer.transformer)  # first: a umnn integrand is initialised before the made
    assert transformer.params_per_dim == meta["params_per_dim"], "transformer and spec disagree on parameters"
    made = MADE(meta["perm"], meta["hidden"], meta["params_per_dim"], node.context_features, layer.net.activation)
    return AutoregressiveFlow(made, transformer, meta["generations"], meta["direction"])
