"""What a run needs from its processes: torchrun's rank and world, random states, a shared CPU clock.

Example:
    >>> rank, world, device, mine = distributed("cpu")
    >>> (rank, world, device.type, mine)
    (0, 1, 'cpu', False)
"""

from __future__ import annotations

import os
import time

import torch

from flowdsl.training.devices import resolve_device

__all__ = ["distributed", "rng_state", "set_rng_state", "CPUClock", "share", "tear_down"]


def distributed(device):
    """(rank, world, device, initialised-here) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device), False
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    mine = not dist.is_initialized()
    if mine:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev, mine


def tear_down(mine: bool) -> None:
    if mine:
        import torch.distributed as dist

        dist.destroy_process_group()


def share(value: float, world: int, device, mean: bool = False) -> float:
    """Rank 0's ``value`` on every rank (``mean``: the ranks' mean instead); the value itself alone."""
    if world <= 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    if mean:
        dist.all_reduce(t)
        t /= world
    else:
        dist.broadcast(t, src=0)
    return float(t.item())


def rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class CPUClock:
    """Process CPU seconds since the start; under DDP the ranks agree to stop together."""

    def __init__(self, budget: float | None, world: int, device):
        self.budget, self.world, self.device = budget, world, device
        self._now = time.process_time
        self.start = self._now()

    def spent(self) -> bool:
        if self.budget is None:
            return False
        over = torch.tensor([float(self._now() - self.start >= self.budget)], device=self.device)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(over, op=dist.ReduceOp.MAX)
        return bool(over.item())
