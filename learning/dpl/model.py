"""The deep perceptual loss (DPL) module.

Convention: for each layer l we store ``weights[l]``, a vector of per-channel weights ``W_lc >= 0`` that
multiply the squared difference of unit-normalised features. In the notation of DESIGN.md
(``|| w_l ⊙ Δẑ ||²``) this is ``W_lc = w_lc²``; it is also exactly the (flattened) weight of the LPIPS
``lin`` 1×1 convolution, so conversion to and from LPIPS is a reshape.

    d(x, y) = Σ_l Σ_c W_lc · mean_hw (ẑ^l_x − ẑ^l_y)²_c = channel_distances(x, y) @ W_flat
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from learning.dpl.backbones import CHANNELS, Backbone, check_net
from learning.errors import LearningError

# LPIPS ScalingLayer constants (input in [-1, 1])
_SHIFT = torch.tensor([-0.030, -0.088, -0.188])
_SCALE = torch.tensor([0.458, 0.448, 0.450])
EPS = 1e-10  # as lpips.normalize_tensor


def _normalize(f: torch.Tensor) -> torch.Tensor:
    return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + EPS)


class DPL(nn.Module):
    """Deep perceptual loss; ``dpl(x, y)`` maps two N×3×H×W batches in [0, 1] to N distances.

    net: "alex" | "vgg" | "squeeze".  weights: None (uniform, 1 per channel: LPIPS "baseline"),
    "lpips" (the lin weights shipped in the lpips package) or a path to a DPL weight file.
    backbone: "imagenet" (torchvision pretrained), a path to a torchvision classifier state dict, or None
    (random init after ``torch.manual_seed(seed)``). The backbone is frozen; weights are a parameter.
    """

    def __init__(self, net: str = "alex", weights: str | Path | None = None,
                 backbone: str | Path | None = "imagenet", seed: int = 0) -> None:
        super().__init__()
        self.net = check_net(net)
        self.backbone = Backbone(net, backbone, seed)
        # channels_last convolutions are markedly faster on CPU (≈1.8× for AlexNet at 256×256)
        self.backbone.to(memory_format=torch.channels_last)
        self.channels = list(CHANNELS[net])
        # x in [0,1] -> 2x-1 -> (x - shift)/scale, fused into one affine map
        self.register_buffer("in_mul", (2.0 / _SCALE).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_add", ((-1.0 - _SHIFT) / _SCALE).view(1, 3, 1, 1), persistent=False)
        self.weights = nn.ParameterList([nn.Parameter(torch.ones(c)) for c in self.channels])
        self.weights_source = "uniform"
        self.metadata: dict = {}
        if weights is not None:
            self.load_weight_source(weights)

    # ----- weights -----
    def load_weight_source(self, weights: str | Path) -> None:
        from learning.dpl import weightfile

        if str(weights) == "lpips":
            per_layer = weightfile.lpips_shipped_weights(self.net)
            self.weights_source = "lpips"
        else:
            data = weightfile.load_weights(weights)
            if data["net"] != self.net:
                raise LearningError(f"weight file {weights} is for net {data['net']!r}, not {self.net!r}")
            per_layer = data["weights"]
            self.metadata = dict(data.get("metadata") or {})
            self.weights_source = f"file:{Path(weights).name}"
        self.set_weights(per_layer)

    def set_weights(self, per_layer: list[torch.Tensor]) -> None:
        """Replace the per-layer channel weights (must be nonnegative, one vector per layer)."""
        if len(per_layer) != len(self.channels):
            raise LearningError(f"{self.net} has {len(self.channels)} layers, got {len(per_layer)} "
                                "weight vectors")
        with torch.no_grad():
            for p, w, c in zip(self.weights, per_layer, self.channels):
                w = torch.as_tensor(w, dtype=torch.float32).reshape(-1)
                if w.numel() != c:
                    raise LearningError(f"weight vector of {w.numel()} channels where {self.net} has {c}")
                if (w < 0).any() or not torch.isfinite(w).all():
                    raise LearningError("DPL weights must be finite and nonnegative")
                p.copy_(w)

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([w.detach() for w in self.weights])

    # ----- forward -----
    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise LearningError(f"DPL expects N×3×H×W images, got shape {tuple(x.shape)}")
        try:
            x = (x * self.in_mul + self.in_add).contiguous(memory_format=torch.channels_last)
            return self.backbone(x)
        except RuntimeError as exc:
            if "too small" not in str(exc):
                raise
            raise LearningError(f"images of {x.shape[2]}×{x.shape[3]} pixels are too small for the "
                                f"{self.net} "
                                "backbone; use larger images or patches") from None

    def _diffs(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        if x.shape != y.shape:
            raise LearningError(f"DPL inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        n = x.shape[0]
        feats = self._features(torch.cat([x, y], 0))  # one backbone pass for both inputs
        out = []
        for f in feats:
            f = _normalize(f)
            out.append((f[:n] - f[n:]).square())
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        """N distances (or N×1×H×W maps with ``spatial=True``, each layer upsampled as lpips does)."""
        diffs = self._diffs(x, y)
        if spatial:
            total = 0
            for d, w in zip(diffs, self.weights):
                m = torch.einsum("nchw,c->nhw", d, w).unsqueeze(1)
                total = total + F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False)
            return total
        return torch.cat([d.mean((2, 3)) for d in diffs], 1) @ torch.cat(list(self.weights))

    def channel_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N×C_total per-channel spatial means m_lc (concatenated over layers).

        The distance is ``channel_distances(x, y) @ flat_weights()``."""
        return torch.cat([d.mean((2, 3)) for d in self._diffs(x, y)], 1)

    def triplet_channel_distances(self, ref: torch.Tensor, p0: torch.Tensor,
                                  p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """m(ref, p0) and m(ref, p1) with one backbone pass over ref, p0, p1 (ref features reused)."""
        n = ref.shape[0]
        feats = self._features(torch.cat([ref, p0, p1], 0))
        m0, m1 = [], []
        for f in feats:
            f = _normalize(f)
            r, a, b = f[:n], f[n:2 * n], f[2 * n:]
            m0.append((r - a).square().mean((2, 3)))
            m1.append((r - b).square().mean((2, 3)))
        return torch.cat(m0, 1), torch.cat(m1, 1)

    def train(self, mode: bool = True) -> DPL:
        super().train(mode)
        self.backbone.train(False)
        return self
