"""MSROI map: class activation maps (Zhou et al. 2016) of a torchvision GAP classifier, summed over
every class whose score passes a threshold (Prakash et al., DCC 2018: "multi-structure" regions).

For an image, the classifier's last convolutional features F (K×h×w) and its linear head W (classes×K)
give CAM_c = ReLU(W_c · F) (SqueezeNet: the ReLU'd class maps of its final 1×1 convolution). A class
is selected when its softmax probability ≥ ``threshold`` (the top class always is); the map is the sum
of the selected CAMs, each normalised to max 1, then min-max normalised to [0, 1] and bilinearly
upsampled to the image size.

Weights: ``weights=None`` downloads torchvision's ImageNet weights (``IMAGENET1K_V1``; needs internet),
a path loads a local state dict; ``random_seed`` builds seeded random weights (tests only: such maps
carry no semantics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from learning.compat import models
from learning.errors import LearningError
from learning.saliency.maps import check_rgb, normalise, resize_map

ARCHS = ("resnet18", "resnet50", "squeezenet1_1")
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class MsroiSaliency:
    name = "msroi"

    def __init__(self, arch: str = "resnet50", weights: str | None = None, threshold: float = 0.05,
                 input_short_side: int = 320, random_seed: int | None = None):
        if arch not in ARCHS:
            raise LearningError(f"msroi: unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
        if not 0.0 < threshold <= 1.0:
            raise LearningError("msroi: threshold must be in (0, 1]")
        self.arch, self.threshold, self.input_short_side = arch, threshold, input_short_side
        self.net = _build(arch, weights, random_seed)
        self.weights_source = (f"random (seed {random_seed})" if random_seed is not None
                               else weights or "torchvision IMAGENET1K_V1")
        self.description = f"MSROI: CAMs of {arch} ({self.weights_source}), classes with p ≥ {threshold}"
        self.last_classes: list[int] = []

    @torch.no_grad()
    def class_maps(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-class CAMs classes×h×w, class probabilities) for one image."""
        image = check_rgb(image)
        w, h = image.size
        scale = self.input_short_side / min(w, h)
        im = image.resize((max(32, round(w * scale)), max(32, round(h * scale))), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        x = (x - _MEAN) / _STD
        if self.arch.startswith("resnet"):
            n = self.net
            f = n.layer4(n.layer3(n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))))[0]
            logits = n.fc(f.mean(dim=(1, 2)))
            cams = torch.einsum("ck,khw->chw", n.fc.weight, f) + n.fc.bias[:, None, None]
        else:  # squeezenet: classifier = Dropout, Conv1x1, ReLU, AdaptiveAvgPool
            f = self.net.features(x)
            cams = self.net.classifier[2](self.net.classifier[1](f))[0]
            logits = cams.mean(dim=(1, 2))
        return torch.relu(cams), torch.softmax(logits, dim=0)

    def select(self, probs: torch.Tensor) -> list[int]:
        """Classes whose probability passes the threshold (the top class always)."""
        chosen = set(torch.nonzero(probs >= self.threshold).flatten().tolist())
        chosen.add(int(torch.argmax(probs)))
        return sorted(chosen)

    def map(self, image: Image.Image) -> np.ndarray:
        image = check_rgb(image)
        cams, probs = self.class_maps(image)
        self.last_classes = self.select(probs)
        total = torch.zeros_like(cams[0])
        for c in self.last_classes:
            peak = cams[c].max()
            if peak > 0:
                total += cams[c] / peak
        return resize_map(normalise(total.double().numpy()), image.size)


def _build(arch: str, weights: str | None, random_seed: int | None) -> torch.nn.Module:
    tv = models()
    if random_seed is not None:
        torch.manual_seed(random_seed)
        net = tv.get_model(arch, weights=None)
    elif weights:
        path = Path(weights)
        if not path.is_file():
            raise LearningError(f"msroi: weights file {path} not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            net = tv.get_model(arch, weights=None)
            net.load_state_dict(state)
        except Exception as exc:  # corrupt file, wrong architecture
            raise LearningError(f"msroi: cannot load {arch} weights from {path}: "
                                f"{str(exc).splitlines()[0][:200]}") from exc
    else:
        try:
            net = tv.get_model(arch, weights="IMAGENET1K_V1")
        except Exception as exc:  # no internet, no cache
            raise LearningError(
                f"msroi: cannot download torchvision {arch} ImageNet weights ({exc.__class__.__name__}); "
                f"pass a local state-dict file with --msroi-weights FILE (e.g. from "
                f"torchvision's {arch} IMAGENET1K_V1 download on a machine with internet)") from exc
    return net.eval()
