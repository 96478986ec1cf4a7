"""The closed loop's sizes (``LoopConfig``), the shared data it needs, and its printed log and stage timer."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from learning.data.shared import KODAK_DIR as KODAK
from learning.data.shared import data_dir

ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"
__all__ = ["ALEX", "KODAK", "LoopConfig", "Stages", "log"]


@dataclass
class LoopConfig:
    """The sizes of one run; ``small()`` is the CI version."""

    crop: int = 192
    crops_per_image: int = 3
    study1_codecs: tuple[str, ...] = ("jpeg:8,20,45", "webp:10,40")
    study1_judgments: int = 4
    observer_sigma: float = 0.5
    noise: float = 0.5
    arch: str = "bmshj2018-factorized"
    N: int = 64
    M: int = 96
    train_crop: int = 128
    batch: int = 8
    base_steps: int = 1500
    base_lmbda: float = 0.0067
    finetune_steps: int = 400
    finetune_lr: float = 1e-4
    study2_judgments: int = 24
    seed: int = 0
    device: str = "cpu"  # fit, score, observers and training (entropy coding stays on the CPU)

    @property
    def torch_device(self) -> torch.device:
        """``device`` for the library calls (the command has resolved the word already)."""
        return torch.device(self.device)

    @classmethod
    def small(cls) -> LoopConfig:
        return cls(crop=176, crops_per_image=2, study1_judgments=3, base_steps=1200, finetune_steps=250,
                   N=48, M=64, batch=4, study2_judgments=16)


def log(msg: str) -> None:
    print(msg, flush=True)


class Stages:
    """Wall time per stage, printed as each ends."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        log(f"== {name}")
        t0 = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - t0, 1)
        log(f"   {name}: {self.times[name]:.1f} s")

