"""Neural posterior estimation (NPE) with a conditional flowdsl flow.

Amortized NPE (Papamakarios & Murray 2016; Greenberg et al. 2019 for the single-round case that
sbibm calls "NPE"): draw ``N`` pairs ``theta ~ prior``, ``x ~ simulator(theta)``, fit a conditional
flow ``q(theta | x)`` by maximum likelihood on them, and read the posterior at any observation
``x_o`` off the one trained flow (no retraining per observation).

The recipe is sbi's default training loop (sbi 0.27 ``NPE.train``), so that a comparison with sbi
is about the density estimator and not the optimiser:

- ``theta`` and ``x`` z-scored per dimension with the mean and standard deviation of the training
  simulations (sbi's ``z_score_theta="independent"``, ``z_score_x="independent"``); the flow sees
  the z-scored values, :class:`NPEPosterior` maps back (``log_prob`` includes the Jacobian);
- 10% of the simulations held out for validation (a fixed seed), Adam with ``lr=5e-4``, batch 200,
  gradient norm clipped at 5, one validation loss per epoch, stop after 20 epochs without a
  better validation loss, and the best epoch's weights kept;
- bounded priors (two_moons' box): samples outside the prior's support are rejected and redrawn,
  as sbi's posterior does (``NPEPosterior.acceptance`` records the rate).

Example (a tiny flow and 300 simulations: training lowers the validation loss):
    >>> import torch, flowdsl
    >>> from flowdsl.sbi.tasks import get_task
    >>> spec = '''flow f {
    ...     input theta: vector[2]
    ...     condition x: vector[2]
    ...     coupling affine(mask=half, net=mlp([16]))
    ...     permute(reverse)
    ...     coupling affine(mask=half, net=mlp([16]))
    ... }'''
    >>> task = get_task("two_moons")
    >>> post = npe(flowdsl.compile_source(spec), task, 300, max_epochs=15, patience=15)
    >>> post.report.history[-1]["valid"] < post.report.history[0]["valid"]
    True
    >>> samples = post.sample(50, torch.tensor([0.0, 0.1]))
    >>> tuple(samples.shape), bool(task.in_support(samples).all())
    ((50, 2), True)
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from flowdsl.input_errors import InputError

__all__ = ["Standardizer", "TrainReport", "NPEPosterior", "train_npe", "npe"]


@dataclass
class Standardizer:
    """Per-dimension z-scoring ``(v - mean) / std`` (std floored at 1e-8, as no dimension is constant)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, v: torch.Tensor) -> Standardizer:
        v = torch.as_tensor(v, dtype=torch.float32)
        return cls(v.mean(0), v.std(0).clamp_min(1e-8))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(v, dtype=torch.float32) - self.mean) / self.std

    def undo(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.std + self.mean

    @property
    def log_scale(self) -> float:
        """``sum(log std)``: the log-Jacobian of :meth:`undo`."""
        return float(self.std.log().sum())


@dataclass
class TrainReport:
    """What a training run did: one ``{epoch, train, valid}`` per epoch (nats per example), the stop."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = math.inf
    stop_reason: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    train_size: int = 0
    valid_size: int = 0

    @property
    def epochs(self) -> int:
        return len(self.history)


class NPEPosterior:
    """``q(theta | x)`` in the task's own units: a trained flow between two standardizers."""

    def __init__(self, flow, theta_norm: Standardizer, x_norm: Standardizer, task=None,
                 report: TrainReport | None = None):
        self.flow, self.theta_norm, self.x_norm, self.task = flow, theta_norm, x_norm, task
        self.report = report or TrainReport()
        self.acceptance = 1.0  # the last sample()'s rate of draws inside the prior's support

    def log_prob(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log q(theta | x)`` ``[B]``; ``x`` is ``[B, K]`` or one ``[K]`` for all rows (no support cut)."""
        self.flow.eval()
        with torch.no_grad():
            lp = self.flow.log_prob(self.theta_norm(theta), context=self.x_norm(x))
        return lp - self.theta_norm.log_scale

    def sample(self, n: int, x: torch.Tensor, max_rounds: int = 100) -> torch.Tensor:
        """``n`` draws of ``q(theta | x)`` at one observation ``x`` ``[K]``, inside the prior's support."""
        self.flow.eval()
        context = self.x_norm(torch.as_tensor(x, dtype=torch.float32).reshape(-1))
        kept: list[torch.Tensor] = []
        have = drawn = 0
        with torch.no_grad():
            for _ in range(max_rounds):
                want = n - have
                if want <= 0:
                    break
                rate = have / drawn if drawn else 1.0
                m = min(max(int(want / max(rate, 1e-3) * 1.1) + 16, want), 50 * n + 16)
                theta = self.theta_norm.undo(self.flow.sample(m, context=context))
                ok = self.task.in_support(theta) if self.task is not None else torch.isfinite(theta).all(-1)
                kept.append(theta[ok])
                have += int(ok.sum())
                drawn += m
        if have < n:
            raise InputError(f"only {have} of {drawn} posterior draws fell inside the prior's support "
                             f"({max_rounds} rounds); the posterior has leaked out of the prior", "npe")
        self.acceptance = have / drawn
        return torch.cat(kept)[:n]


def _mean_nll(flow, theta: torch.Tensor, x: torch.Tensor, batch: int = 4096) -> float:
    with torch.no_grad():
        total = sum(float(-flow.log_prob(theta[i:i + batch], context=x[i:i + batch]).sum())
                    for i in range(0, len(theta), batch))
    return total / max(len(theta), 1)


def train_npe(flow, theta: torch.Tensor, x: torch.Tensor, *, task=None, batch: int = 200, lr: float = 5e-4,
              validation_fraction: float = 0.1, patience: int = 20, max_epochs: int = 10**6, clip: float = 5.0,
              seed: int = 0, cpu_budget: float | None = None, log=None) -> NPEPosterior:
    """Fit ``flow`` (a compiled conditional flowdsl flow) to the pairs ``(theta, x)``; the posterior."""
    theta = torch.as_tensor(theta, dtype=torch.float32)
    x = torch.as_tensor(x, dtype=torch.float32)
    if theta.ndim != 2 or x.ndim != 2 or len(theta) != len(x):
        raise InputError(f"NPE needs theta [N, D] and x [N, K] of one N, got {tuple(theta.shape)} and "
                         f"{tuple(x.shape)}", "npe")
    n = len(theta)
    n_valid = max(1, int(round(validation_fraction * n)))
    if n - n_valid < 1:
        raise InputError(f"NPE needs at least 2 simulations, got {n}", "npe")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # fixed, as the trainer's split
    train_idx, valid_idx = order[n_valid:], order[:n_valid]
    theta_norm, x_norm = Standardizer.fit(theta[train_idx]), Standardizer.fit(x[train_idx])
    t_tr, x_tr = theta_norm(theta[train_idx]), x_norm(x[train_idx])
    t_va, x_va = theta_norm(theta[valid_idx]), x_norm(x[valid_idx])
    report = TrainReport(train_size=len(train_idx), valid_size=n_valid)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    best_state = copy.deepcopy(flow.state_dict())
    since_best, cpu0, wall0 = 0, time.process_time(), time.time()
    report.stop_reason = "max_epochs"
    for epoch in range(1, max_epochs + 1):
        flow.train()
        perm = torch.randperm(len(t_tr), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = -flow.log_prob(t_tr[idx], context=x_tr[idx]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), clip)
            optimizer.step()
            total += loss.item() * len(idx)
        flow.eval()
        valid = _mean_nll(flow, t_va, x_va)
        report.history.append({"epoch": epoch, "train": total / len(perm), "valid": valid})
        if log is not None:
            log(f"epoch {epoch}: train {total / len(perm):.4f}, validation {valid:.4f}")
        if valid < report.best_valid:  # a NaN loss is never a new best
            report.best_valid, report.best_epoch, since_best = valid, epoch, 0
            best_state = copy.deepcopy(flow.state_dict())
        else:
            since_best += 1
        if since_best >= patience:
            report.stop_reason = "patience"
            break
        if cpu_budget is not None and time.process_time() - cpu0 >= cpu_budget:
            report.stop_reason = "budget"
            break
    flow.load_state_dict(best_state)
    flow.eval()
    report.cpu_s, report.wall_s = time.process_time() - cpu0, time.time() - wall0
    return NPEPosterior(flow, theta_norm, x_norm, task, report)


def npe(flow, task, num_simulations: int, seed: int = 0, **train_options) -> NPEPosterior:
    """Simulate ``num_simulations`` pairs of ``task`` (seeded) and train ``flow`` on them."""
    theta, x = task.simulate_pairs(int(num_simulations), seed=seed)
    torch.manual_seed(seed)
    return train_npe(flow, theta, x, task=task, seed=seed, **train_options)
