"""CompressAI architectures by their zoo names, built directly from ``compressai.models`` (random init)."""

from __future__ import annotations

import torch

from learning.errors import LearningError

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")
# Spatial size a model's input must be a multiple of (downsampling of analysis + hyper-analysis).
PAD_MULTIPLE = {
    "bmshj2018-factorized": 16,
    "bmshj2018-hyperprior": 64,
    "mbt2018-mean": 64,
    "cheng2020-anchor": 64,
}


def build_model(arch: str, N: int, M: int) -> torch.nn.Module:
    """A fresh CompressAI model; ``cheng2020-anchor`` takes only N (its latent has N channels)."""
    from learning import compat

    compat.ensure_torchvision()  # compressai imports torchvision
    from compressai import models as cm

    if arch == "bmshj2018-factorized":
        return cm.FactorizedPrior(N, M)
    if arch == "bmshj2018-hyperprior":
        return cm.ScaleHyperprior(N, M)
    if arch == "mbt2018-mean":
        return cm.MeanScaleHyperprior(N, M)
    if arch == "cheng2020-anchor":
        return cm.Cheng2020Anchor(N)
    raise LearningError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
