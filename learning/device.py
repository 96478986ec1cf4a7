"""The one place a torch device and a mixed-precision mode are chosen from a command-line word.

The device policy of the whole package:

* a command resolves its ``--device`` word once, with :func:`resolve_device`, and passes the resulting
  ``torch.device`` down; library functions take a ``torch.device`` (or None, which means the CPU:
  :func:`device_or_cpu`) and never read a word themselves;
* ``auto`` is CUDA when available, else Apple's MPS, else the CPU, for every command and every part of it
  (metrics, DPL fits, codec training, the transforms of learned codecs);
* under ``torchrun`` (``WORLD_SIZE`` > 1) a CUDA device is this process's own GPU, ``cuda:LOCAL_RANK``.

Every command that runs a network takes ``--device`` through :func:`add_device_argument`, so the words and
errors are the same everywhere.
"""

from __future__ import annotations

import argparse
import os
import re
from contextlib import AbstractContextManager, nullcontext

import torch

from learning.errors import LearningError

AMP_MODES = ("off", "bf16", "fp16", "auto")
CPU = torch.device("cpu")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto | cpu | cuda | cuda:N | mps`` → a usable ``torch.device``; a one-line LearningError for an
    unknown word or a device this machine does not have. None is ``auto``; a torch.device is returned
    as it is."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if not _DEVICE_RE.match(spec):
        raise LearningError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if torch.cuda.is_available():
            return _process_gpu(torch.device("cuda"))
        if _mps_available():
            return torch.device("mps")
        return CPU
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LearningError(f"--device {spec}: CUDA is not available on this machine (torch "
                                f"{torch.__version__}); use --device cpu or auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise LearningError(f"--device {spec}: this machine has {count} CUDA device(s)")
        return _process_gpu(torch.device(spec))
    if spec == "mps" and not _mps_available():
        raise LearningError("--device mps: Apple MPS is not available on this machine; use cpu or auto")
    return torch.device(spec)


def _process_gpu(device: torch.device) -> torch.device:
    """Under torchrun each process drives the GPU of its ``LOCAL_RANK`` (NCCL needs one GPU per process),
    whatever index the command line named; a single process keeps ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise LearningError(f"LOCAL_RANK {index}: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def device_or_cpu(device: torch.device | None) -> torch.device:
    """A library function's ``device`` argument: None means the CPU; a word (``"auto"``, ``"cuda"``) is a
    TypeError, since only :func:`resolve_device` reads words."""
    if device is None:
        return CPU
    if not isinstance(device, torch.device):
        raise TypeError(f"device {device!r}: pass a torch.device (learning.device.resolve_device) or None")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a CUDA GPU that supports it, or a CPU with AMX tiles
    (oneDNN runs bf16 convolutions there about twice as fast as fp32; without AMX it is emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so guarded
        return bool(amx and amx())
    return False


def check_amp(mode: str, device: torch.device) -> str:
    """Validate ``--amp`` and resolve ``auto`` (bf16 where :func:`native_bf16`, else off): fp16 needs CUDA
    (a gradient scaler); bf16 runs on CUDA and CPU."""
    if mode not in AMP_MODES:
        raise LearningError(f"unknown --amp {mode!r}: use {', '.join(AMP_MODES)}")
    if mode == "auto":
        return "bf16" if native_bf16(device) else "off"
    if mode == "fp16" and device.type != "cuda":
        raise LearningError(f"--amp fp16 needs a CUDA device, not {device}; use bf16 or off")
    if mode == "bf16" and device.type == "mps":
        raise LearningError("--amp bf16 is not supported on mps; use off")
    return mode


def autocast(device: torch.device, mode: str) -> AbstractContextManager:
    """A context that runs the enclosed forward in ``mode`` precision (``off``: full precision)."""
    if mode == "off":
        return nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def add_device_argument(parser: argparse.ArgumentParser, amp: bool = False, default: str = "auto") -> None:
    """``--device`` (and ``--amp`` when the command trains) with the shared help text; ``default`` is the
    word used when the option is left out."""
    parser.add_argument("--device", default=default,
                        help=f"auto | cpu | cuda | cuda:N | mps (auto = CUDA when available, else MPS, "
                             f"else CPU; default {default})")
    if amp:
        parser.add_argument("--amp", default="off", choices=AMP_MODES,
                            help="mixed precision for the forward pass (bf16, or fp16 on CUDA; auto = bf16 "
                                 "where the device multiplies bf16 in hardware: CUDA, or a CPU with AMX; "
                                 "entropy models stay fp32)")
