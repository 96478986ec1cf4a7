"""torch.distributed glue: ``torchrun`` sets the environment, we use gloo (CPU) and DDP.

Rank 0 checkpoints and logs. The entropy bottleneck's ``quantiles`` (trained only by the auxiliary loss,
which does not depend on the data) are left out of DDP's gradient reduction; they stay equal on every
rank because every rank applies the same aux update.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int]:
    """(rank, world size); starts a gloo process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap(model: torch.nn.Module, world: int) -> torch.nn.Module:
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ignore = [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
    DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
    return DDP(model, broadcast_buffers=False)


def mean_across(values: list[float], world: int) -> list[float]:
    """Average a few numbers over ranks (for logging)."""
    if world <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / world).tolist()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def finish(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
