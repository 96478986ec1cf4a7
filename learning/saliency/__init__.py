"""Saliency maps: a registry of models behind one interface, plus map I/O.

A saliency model has ``.name`` and ``.map(image) -> np.float32 H×W in [0, 1]`` for a PIL RGB image.
Models: ``spectral`` (weight-free, the default here) and ``msroi`` (CAMs of an ImageNet classifier;
needs pretrained weights: torchvision download or a local state-dict file).

Maps are stored as 16-bit grayscale PNG (0..65535 ↔ 0..1), same stem as the image (``maps``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from learning.errors import LearningError
from learning.saliency.maps import (
    IMAGE_SUFFIXES,
    MIN_SIDE,
    check_rgb,
    list_images,
    load_map,
    load_rgb,
    normalise,
    resize_map,
    save_map,
)
from learning.saliency.msroi import MsroiSaliency
from learning.saliency.spectral import SpectralSaliency

__all__ = ["DEFAULT_MODEL", "IMAGE_SUFFIXES", "MIN_SIDE", "SaliencyModel", "check_rgb", "get_saliency_model",
           "list_images", "load_map", "load_rgb", "model_names", "normalise", "resize_map", "save_map"]

DEFAULT_MODEL = "spectral"


class SaliencyModel(Protocol):
    name: str

    def map(self, image: Image.Image) -> np.ndarray: ...


def model_names() -> list[str]:
    return ["msroi", "spectral"]


def get_saliency_model(name: str = DEFAULT_MODEL, *, msroi_weights: str | None = None,
                       **kwargs) -> SaliencyModel:
    """Build a saliency model by name (``spectral`` or ``msroi``)."""
    if name == "spectral":
        return SpectralSaliency(**kwargs)
    if name == "msroi":
        return MsroiSaliency(weights=msroi_weights, **kwargs)
    raise LearningError(f"unknown saliency model {name!r}; known: {', '.join(model_names())}")
