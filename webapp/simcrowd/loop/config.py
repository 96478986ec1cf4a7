"""The closed loop's sizes (``LoopConfig``), the shared data it needs (backbones, Kodak, the base codec), its
observers, and its printed log and stage timer."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from django.core.management.base import CommandError

from learning.data.shared import KODAK_DIR as KODAK
from learning.data.shared import backbone_file, data_dir

ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"
# The learned base codec the fine-tunes start from (../shared/data/codecs/SOURCE.md: hyperprior N=96 M=128,
# MSE, λ 0.013, 14,000 steps with the project's recipe), as researchers fine-tune CompressAI's zoo.
BASE_CODEC = data_dir() / "codecs/hyperprior-n96-m128-mse-base.pt"
# The default hidden observer, outside the family the loop fits (a DPL on AlexNet with per-channel linear
# weights): LPIPS on VGG16, a colour-difference term and a multi-scale structure term, each scaled by its
# spread over the study's trials. The fit never sees these weights nor this backbone.
OUT_OF_FAMILY = "0.5*lpips-vgg:{vgg}+0.3*ciede2000+0.2*ms-ssim"
OBSERVERS = ("out-of-family", "alex-lin")
__all__ = ["ALEX", "BASE_CODEC", "KODAK", "OBSERVERS", "LoopConfig", "Stages", "log"]


@dataclass
class LoopConfig:
    """The sizes of one run; ``small()`` is the CI version."""

    crop: int = 192
    crops_per_image: int = 3
    # qualities over a range, and codecs at one matched rate: the pairs that separate metrics (the base
    # codec's own decodes join them when the loop starts from it)
    study1_codecs: tuple[str, ...] = ("jpeg:10,30", "jpeg@0.5", "webp@0.5", "avif@0.5")
    study1_judgments: int = 4
    observer: str = "out-of-family"  # out-of-family | alex-lin (LPIPS-alex lin × exp(σ·N(0,1))) | a spec
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
    base: str = "shared"  # shared: fine-tune BASE_CODEC; a checkpoint path: fine-tune it; train: train a
    # small base from random weights first
    amp: str = "auto"  # train-codec --amp: bf16 where the device multiplies it in hardware (CPU with AMX)
    study2_judgments: int = 24
    seed: int = 0
    device: str = "cpu"  # fit, score, observers and training (entropy coding stays on the CPU)

    @property
    def torch_device(self) -> torch.device:
        """``device`` for the library calls (the command has resolved the word already)."""
        return torch.device(self.device)

    @property
    def base_codec(self) -> Path | None:
        """The checkpoint the fine-tunes start from (None: the loop trains its own base)."""
        if self.base == "train":
            return None
        return BASE_CODEC if self.base == "shared" else Path(self.base)

    def check_base(self) -> None:
        """CommandError when the checkpoint ``base`` names is not there (before any work is done)."""
        path = self.base_codec
        if path is None or path.is_file():
            return
        if self.base == "shared":
            raise CommandError(f"no base codec at {path} (../shared/data/codecs): use --base train or a "
                               "checkpoint path")
        raise CommandError(f"--base {self.base}: no such checkpoint (or use shared | train)")

    @classmethod
    def small(cls) -> LoopConfig:
        # judgments as many as the full size: fewer made μ's choice and study 2's interval too loose for the
        # slow test's verdict to repeat from run to run (a CI run with 3 and 16 found the codecs level)
        return cls(crop=176, crops_per_image=2, study1_judgments=4, base_steps=1200, finetune_steps=250,
                   N=48, M=64, batch=4, study2_judgments=24)

    def observer_spec(self, observer_file) -> str:
        """The hidden observer as ``simulate_crowd --observer`` takes it; CommandError when what it needs
        is missing. ``alex-lin`` needs ``make_observer`` to have written ``observer_file``."""
        if self.observer == "out-of-family":
            vgg = backbone_file("vgg16")
            if vgg is None:
                raise CommandError("the out-of-family observer needs the real VGG16 weights: run "
                                   "`make backbones` (or use --observer alex-lin)")
            return OUT_OF_FAMILY.format(vgg=vgg)
        if self.observer == "alex-lin":
            return f"observer:{observer_file}@{ALEX}"
        return self.observer


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

