"""The learned-codec architectures we use, by CompressAI's zoo names, and how each is built.

The model classes come from CompressAI's own registry (``compressai.zoo.image.model_architectures``);
what is ours is which of them we train, the stride an input is padded to, and the default sizes. N is the
transforms' channel count, M the latent's; cheng2020-anchor has no M (its latent has N channels), so for
it M is N. Both ``learning.codecs`` (a ``ckpt:`` codec rebuilds its model) and ``learning.training`` build
models here; this module imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learning import compat
from learning.errors import LearningError

DEFAULT_N, DEFAULT_M = 128, 192


@dataclass(frozen=True)
class Architecture:
    name: str  # CompressAI's zoo name
    pad_multiple: int  # an input's size must be a multiple of this (analysis + hyper-analysis downsampling)
    latent_is_n: bool = False  # no M: the latent has N channels

    def sizes(self, N: int, M: int) -> tuple[int, int]:
        """(N, M) as the model has them: M is N where the latent has N channels."""
        return (N, N) if self.latent_is_n else (N, M)

    def build(self, N: int, M: int) -> torch.nn.Module:
        """A fresh model (random init)."""
        cls = _compressai_architectures()[self.name]
        return cls(N) if self.latent_is_n else cls(N, M)


_ARCHITECTURES = (
    Architecture("bmshj2018-factorized", 16),
    Architecture("bmshj2018-hyperprior", 64),
    Architecture("mbt2018-mean", 64),
    Architecture("cheng2020-anchor", 64, latent_is_n=True),
)
ARCHITECTURES = {a.name: a for a in _ARCHITECTURES}
ARCHS = tuple(ARCHITECTURES)
PAD_MULTIPLE = {a.name: a.pad_multiple for a in _ARCHITECTURES}


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; LearningError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise LearningError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def build_model(arch: str, N: int, M: int) -> torch.nn.Module:
    """A fresh CompressAI model of ``arch``; ``cheng2020-anchor`` takes only N (its latent has N channels)."""
    return get_architecture(arch).build(N, M)


def _compressai_architectures() -> dict[str, type[torch.nn.Module]]:
    compat.ensure_torchvision()  # compressai imports torchvision, which needs the CPU shim first
    # imported on first use: compressai (and torchvision with it) takes seconds to import, and every user of
    # the codec registry reaches this module through the learned codec, classical codecs included
    from compressai.zoo.image import model_architectures

    return model_architectures


def compressai_available() -> bool:
    """True when CompressAI (and the torchvision it needs) imports here."""
    try:
        _compressai_architectures()
    except ImportError:
        return False
    return True
