"""FFJORD: the ODE ``dz/dt = f(z, t)`` and its log-det ``integral tr(df/dz) dt``, solved by torchdiffeq.

The state is ``(z, accumulated log-det)``. The trace is exact (D backward passes, batched)
under ``trace=exact`` or :func:`flowdsl.exact_logdet`, else Hutchinson's ``eps^T (df/dz) eps``
with one Rademacher ``eps`` per example, fixed over the whole integration (FFJORD). With
gradients enabled, the solver is differentiated through (no adjoint).

Example:
    >>> import torch, flowdsl
    >>> flow = flowdsl.compile_source("flow f {\\n input x: vector[2]\\n"
    ...                               " continuous(net=mlp([8]), solver=rk4, steps=4)\\n}\\n")
    >>> z, logdet = flow(torch.randn(3, 2))
    >>> z.shape, logdet.shape
    (torch.Size([3, 2]), torch.Size([3]))
"""

from __future__ import annotations

import torch
from torchdiffeq import odeint

from flowdsl.runtime.base import Bijection, BuildNode
from flowdsl.runtime.estimators import exact_logdet_enabled
from flowdsl.runtime.nets import build_net
from flowdsl.runtime.residual import rademacher

__all__ = ["Continuous", "exact_trace"]


def exact_trace(f: torch.Tensor, z: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """tr(df/dz) per example, [B], from D batched backward passes."""
    b, d = f.shape
    eye = torch.eye(d, dtype=f.dtype, device=f.device)
    rows = torch.autograd.grad(f, z, eye[:, None, :].expand(d, b, d), create_graph=create_graph,
                               is_grads_batched=True)[0]  # [D, B, D]: d f_i / d z
    return torch.diagonal(rows, dim1=0, dim2=2).sum(1)


class Continuous(Bijection):
    """The continuous flow of one dynamics net over [0, time]."""

    def __init__(self, net, solver: str, trace: str, time: float, tolerances: dict, steps: int | None):
        super().__init__()
        self.net = net
        self.solver = solver
        self.trace = trace
        self.time = float(time)
        self.tolerances = dict(tolerances)
        self.steps = steps

    @classmethod
    def build(cls, layer, node: BuildNode):
        meta = node.meta
        net = build_net(meta["net"], meta["net_in"], meta["net_out"], node.context_features)
        return cls(net, layer.solver, layer.trace, layer.time, meta["tolerances"], meta["steps"])

    def _options(self, dtype):
        if self.steps is not None:
            return {"method": self.solver, "options": {"step_size": self.time / self.steps}}
        rtol, atol = self.tolerances["float64" if dtype == torch.float64 else "float32"]
        # a tolerance below what the dtype resolves cannot be met: dopri5 would shrink its step until it underflows
        floor = 16 * torch.finfo(dtype).eps
        return {"method": self.solver, "rtol": max(rtol, floor), "atol": max(atol, floor)}

    def _integrate(self, flat: torch.Tensor, context, t0: float, t1: float):
        grad = torch.is_grad_enabled()
        eps = None if self.trace == "exact" or exact_logdet_enabled() else rademacher(flat.shape, flat)

        def dynamics(t, state):
            z = state[0]
            with torch.enable_grad():
                z = z if z.requires_grad else z.detach().requires_grad_(True)
                tz = t.to(z.dtype).expand(z.shape[0], 1)
                f = self.net(torch.cat([z, tz], dim=1), context).reshape(z.shape)
                if eps is None:
                    tr = exact_trace(f, z, create_graph=grad)
                else:
                    tr = (torch.autograd.grad(f, z, eps, create_graph=grad)[0] * eps).sum(1)
            return (f, tr) if grad else (f.detach(), tr.detach())

        ts = torch.tensor([t0, t1], dtype=flat.dtype, device=flat.device)
        z, logdet = odeint(dynamics, (flat, flat.new_zeros(flat.shape[0])), ts, **self._options(flat.dtype))
        return z[-1], logdet[-1]

    def forward(self, x, context=None):
        z, logdet = self._integrate(x.reshape(x.shape[0], -1), context, 0.0, self.time)
        return z.reshape(x.shape), logdet

    def inverse(self, z, context=None):
        x, logdet = self._integrate(z.reshape(z.shape[0], -1), context, self.time, 0.0)
        return x.reshape(z.shape), logdet
