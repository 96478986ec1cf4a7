"""torch.distributed glue: ``torchrun`` sets the environment; NCCL on CUDA (one GPU per process: the
``LOCAL_RANK`` device that ``learning.device.resolve_device`` gives each process), gloo on the CPU.

Rank 0 checkpoints and logs. The entropy bottleneck's ``quantiles`` (trained only by the auxiliary loss,
which does not depend on the data) are left out of DDP's gradient reduction; they stay equal on every
rank because every rank applies the same aux update.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def init(device: torch.device) -> tuple[int, int]:
    """(rank, world size); under torchrun starts NCCL for a CUDA ``device`` (this process's GPU, made
    torch's current device for NCCL), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap(model: torch.nn.Module, world: int, device: torch.device | None = None) -> torch.nn.Module:
    if world <= 1:
        return model
    ignore = [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
    DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
    ids = [device.index] if device is not None and device.type == "cuda" else None
    return DDP(model, broadcast_buffers=False, device_ids=ids)


def _backend_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_float(value: float, world: int) -> float:
    """Rank 0's ``value`` on every rank (e.g. the validation loss a schedule follows)."""
    if world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_backend_device())
    dist.broadcast(t, 0)
    return float(t.item())


def mean_across(values: list[float], world: int) -> list[float]:
    """Average a few numbers over ranks (for logging)."""
    if world <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_backend_device())
    dist.all_reduce(t)
    return (t / world).tolist()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def finish(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
