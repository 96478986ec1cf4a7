"""Distortion terms for ``loss = bpp + λ·D``.

- ``mse``: D = 255²·MSE (the CompressAI convention, so the usual λ table 0.0018 … 0.0483 applies);
- ``ms-ssim``: D = 1 − MS-SSIM (pytorch-msssim; needs crops larger than 160 px, no saliency weighting);
- ``dpl:FILE``: D = DPL distance with the weights in FILE (a spatial map when saliency-weighted);
- a weighted sum of those, terms joined by ``+``, each optionally ``WEIGHT*TERM``: ``dpl:fit.pt+0.002*mse``.
  A DPL alone does not pin colours and low frequencies, and a codec trained on it alone finds the artefacts
  its weights do not see; an MSE term beside it is how practical perceptual codecs keep them in check.

With saliency weights ``w`` (N×1×H×W, mean 1) the per-pixel distortion map is multiplied by ``w``
before averaging, so salient regions cost more.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from learning.dpl import DPL
from learning.errors import LearningError


class Distortion(torch.nn.Module):
    name = ""
    spatial = True

    def forward(
        self, x_hat: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class MSE(Distortion):
    name = "mse"

    def forward(self, x_hat, x, weights=None):
        err = (x_hat - x) ** 2
        if weights is not None:
            err = err * weights
        return 255.0**2 * err.mean()


class MSSSIM(Distortion):
    name = "ms-ssim"
    spatial = False

    def forward(self, x_hat, x, weights=None):
        if min(x.shape[-2:]) <= 160:
            raise LearningError("ms-ssim distortion needs crops larger than 160 px (use --crop 256)")
        return 1.0 - ms_ssim(x_hat, x, data_range=1.0, size_average=True)


class DPLDistortion(Distortion):
    name = "dpl"

    def __init__(self, path: str, backbone: str | None = None):
        super().__init__()
        self.dpl = load_dpl(path, backbone)
        self.dpl.eval()
        for p in self.dpl.parameters():
            p.requires_grad_(False)

    def forward(self, x_hat, x, weights=None):
        if weights is None:
            return self.dpl(x, x_hat).mean()
        dmap = self.dpl(x, x_hat, spatial=True)
        if dmap.shape[-2:] != weights.shape[-2:]:
            weights = F.interpolate(weights, size=dmap.shape[-2:], mode="bilinear", align_corners=False)
            weights = weights / weights.mean(dim=(-2, -1), keepdim=True)
        return (dmap * weights).mean(dim=(1, 2, 3)).mean()


def load_dpl(path: str, backbone: str | None = None) -> torch.nn.Module:
    """A DPL from a weight file, as it was fitted (``DPL.from_file``); ``backbone`` (``--dpl-backbone``:
    a local torchvision state-dict PATH or ``random:SEED``) overrides the recorded backbone."""
    if not Path(path).is_file():
        raise LearningError(f"DPL weight file {path!r} does not exist")
    return DPL.from_file(path, backbone, how_to_override="pass the backbone with --dpl-backbone PATH")


class WeightedSum(Distortion):
    """Σ weight·term; spatial when every term is."""

    def __init__(self, terms: list[tuple[float, Distortion]], name: str):
        super().__init__()
        self.weights = [w for w, _ in terms]
        self.terms = torch.nn.ModuleList(t for _, t in terms)
        self.name = name
        self.spatial = all(t.spatial for t in self.terms)

    def forward(self, x_hat, x, weights=None):
        return sum(w * t(x_hat, x, weights) for w, t in zip(self.weights, self.terms))


def build_distortion(spec: str, backbone: str | None = None) -> Distortion:
    """The distortion for a ``--loss`` spec (see the module docstring); LearningError for a bad one."""
    parts = spec.split("+")
    if len(parts) == 1:
        return _term(spec, backbone)
    terms = []
    for part in parts:
        weight, _, term = part.partition("*") if "*" in part.split(":", 1)[0] else ("1", "", part)
        try:
            w = float(weight)
        except ValueError:
            raise LearningError(f"loss term {part!r}: the weight before '*' must be a number") from None
        if not (w > 0 and w < float("inf")):
            raise LearningError(f"loss term {part!r}: the weight must be a positive finite number")
        terms.append((w, _term(term, backbone)))
    return WeightedSum(terms, spec)


def _term(spec: str, backbone: str | None) -> Distortion:
    if spec == "mse":
        return MSE()
    if spec == "ms-ssim":
        return MSSSIM()
    if spec.startswith("dpl:"):
        return DPLDistortion(spec[4:], backbone)
    raise LearningError(f"unknown loss {spec!r}; use mse, ms-ssim, dpl:FILE or a sum such as "
                        "dpl:FILE+0.002*mse")
