"""Frozen feature backbones, sliced exactly as the ``lpips`` package slices them.

Each backbone is a module with attributes ``slice1..sliceK`` (``nn.Sequential`` whose children are named by
their index in torchvision's ``features``), so its state dict matches ``lpips.LPIPS(...).net`` key for key.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from torch import nn

from learning.compat import models
from learning.errors import LearningError

# features index ranges per slice, copied from lpips/pretrained_networks.py
SLICES: dict[str, list[tuple[int, int]]] = {
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
    "squeeze": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)],
}
CHANNELS: dict[str, list[int]] = {
    "alex": [64, 192, 384, 256, 256],
    "vgg": [64, 128, 256, 512, 512],
    "squeeze": [64, 128, 256, 384, 384, 512, 512],
}
_CONSTRUCTORS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
_WEIGHT_ENUMS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def check_net(net: str) -> str:
    if net not in SLICES:
        raise LearningError(f"unknown net {net!r}; choose one of {', '.join(SLICES)}")
    return net


def _classifier(net: str, backbone: str | Path | None, seed: int) -> tuple[nn.Module, str]:
    """Build the torchvision classifier; return it and a description of where its weights came from."""
    tv = models()
    ctor = getattr(tv, _CONSTRUCTORS[net])
    if backbone is None:
        torch.manual_seed(seed)
        return ctor(weights=None), f"random:{seed}"
    if backbone == "imagenet":
        enum = getattr(tv, _WEIGHT_ENUMS[net]).DEFAULT
        try:
            return ctor(weights=enum), f"imagenet:{enum}"
        except Exception as exc:  # no internet, proxy, corrupt download ...
            raise LearningError(
                f"could not load torchvision's ImageNet weights for {net} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local state dict file as the "
                "backbone instead") from None
    path = Path(backbone)
    if not path.is_file():
        raise LearningError(f"backbone file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LearningError(f"cannot read backbone state dict {path}: {type(exc).__name__}") from None
    model = ctor(weights=None)
    try:
        model.load_state_dict(state)
    except Exception:
        raise LearningError(f"{path} is not a torchvision {_CONSTRUCTORS[net]} state dict") from None
    return model, f"file:{path.name}"


class Backbone(nn.Module):
    """Frozen, eval-mode feature extractor returning the LPIPS layer activations as a list."""

    def __init__(self, net: str = "alex", backbone: str | Path | None = "imagenet", seed: int = 0) -> None:
        super().__init__()
        self.net = check_net(net)
        classifier, self.source = _classifier(net, backbone, seed)
        features = classifier.features
        self.n_slices = len(SLICES[net])
        for k, (a, b) in enumerate(SLICES[net], start=1):
            seq = nn.Sequential()
            for i in range(a, b):
                seq.add_module(str(i), features[i])
            setattr(self, f"slice{k}", seq)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:  # always frozen: dropout-free, but keep eval semantics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, self.n_slices + 1):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs

    def sha256(self) -> str:
        """Hash of the backbone parameters (identifies the feature space for caches and weight files)."""
        h = hashlib.sha256(self.net.encode())
        for key, value in sorted(self.state_dict().items()):
            h.update(key.encode())
            buf = io.BytesIO()
            buf.write(value.detach().cpu().contiguous().numpy().tobytes())
            h.update(buf.getvalue())
        return h.hexdigest()
