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

from learning.dpl import weightfile
from learning.dpl.backbones import CHANNELS, Backbone, check_net, parse_backbone_spec
from learning.errors import LearningError

# LPIPS ScalingLayer constants (input in [-1, 1])
_SHIFT = torch.tensor([-0.030, -0.088, -0.188])
_SCALE = torch.tensor([0.458, 0.448, 0.450])
EPS = 1e-10  # as lpips.normalize_tensor


def _unit(f: torch.Tensor) -> torch.Tensor:
    """N×C×H×W features -> N×(H·W)×C, unit-normalised over channels (a free view of channels_last
    features: the channel reduction and everything after it run over contiguous memory). Without
    autograd the features are normalised in place (they are this module's own intermediates)."""
    n, c, h, w = f.shape
    g = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
    norm = torch.linalg.vector_norm(g, dim=2, keepdim=True)
    if torch.is_grad_enabled():
        return g / (norm + EPS)
    return g.div_(norm.add_(EPS))


def _sq_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a − b)², overwriting ``a`` when no graph is kept (callers pass as ``a`` rows used only here)."""
    if torch.is_grad_enabled():
        return (a - b).square()
    return a.sub_(b).square_()


class DPL(nn.Module):
    """Deep perceptual loss; ``dpl(x, y)`` maps two N×3×H×W batches in [0, 1] to N distances.

    net: "alex" | "vgg" | "squeeze".  weights: None (uniform, 1 per channel: LPIPS "baseline"),
    "lpips" (the lin weights shipped in the lpips package) or a path to a DPL weight file.
    backbone: "imagenet" (torchvision pretrained), a path to a torchvision classifier state dict, or None
    (random init after ``torch.manual_seed(seed)``). The backbone is frozen; weights are a parameter.

    A weight file with a tuned backbone (``backbone_state``, written by ``fit --tune``) brings its own:
    ``backbone`` and ``seed`` are then ignored (nothing is fetched or drawn), ``backbone.tuned`` is True and
    ``backbone.sha256()`` is the tuned weights' hash, so feature caches keyed on it never mix tuned and
    untuned features.

    Every tensor it uses is a parameter or buffer of its own (or made from its input), so ``.to(device)``
    and ``.double()`` move all of it like any ``nn.Module``; feed inputs on :attr:`device`.
    """

    def __init__(self, net: str = "alex", weights: str | Path | None = None,
                 backbone: str | Path | None = "imagenet", seed: int = 0) -> None:
        super().__init__()
        self.net = check_net(net)
        data = None if weights is None or str(weights) == "lpips" else self._read_weight_file(weights)
        if data is not None and "backbone_state" in data:
            self._set_tuned_backbone(data)
        else:
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
            self._apply_weight_source(weights, data)

    @classmethod
    def from_file(cls, path: str | Path, backbone: str | None = None,
                  how_to_override: str = "name the backbone", strict: bool = False) -> DPL:
        """The DPL a weight file was fitted as: net from the file, backbone from its metadata
        (``random:SEED`` or ImageNet), or the file's own tuned backbone (``fit --tune``).

        ``backbone`` (``imagenet | PATH | random:SEED``) overrides the recorded one (ignored for a tuned
        file). A backbone the metadata cannot name (a local file) without an override, or one whose sha256
        differs from the recorded one, is a LearningError whose message ends with ``how_to_override``;
        an override skips the sha256 check unless ``strict``."""
        data = weightfile.load_weights(path)
        meta = dict(data.get("metadata") or {})
        if "backbone_state" in data:
            return cls(data["net"], weights=path, backbone=None)
        source = backbone or str(meta.get("backbone_source", "imagenet"))
        if source.startswith("imagenet"):
            source = "imagenet"
        elif not source.startswith("random:") and backbone is None:
            raise LearningError(f"{path} was fitted on backbone {source}, a local file; {how_to_override}")
        bb, seed = parse_backbone_spec(source)
        model = cls(data["net"], weights=path, backbone=bb, seed=seed)
        recorded = meta.get("backbone_sha256")
        if (backbone is None or strict) and recorded and model.backbone.sha256() != recorded:
            raise LearningError(f"the {source} backbone differs from the one {path} was fitted on "
                                f"(sha256 mismatch); {how_to_override}")
        return model

    # ----- weights -----
    def _read_weight_file(self, weights: str | Path) -> dict:
        data = weightfile.load_weights(weights)
        if data["net"] != self.net:
            raise LearningError(f"weight file {weights} is for net {data['net']!r}, not {self.net!r}")
        return data

    def _set_tuned_backbone(self, data: dict) -> None:
        meta = data.get("metadata") or {}
        base = meta.get("base_backbone_source") or meta.get("backbone_source") or "unknown"
        self.backbone = Backbone(self.net, base, state=data["backbone_state"])
        self.backbone.base_sha256 = meta.get("base_backbone_sha256")
        self.backbone.to(memory_format=torch.channels_last)
        if hasattr(self, "in_mul"):  # replacing the backbone of a model already moved: follow it
            self.backbone.to(self.in_mul.device, self.in_mul.dtype)

    def load_weight_source(self, weights: str | Path) -> None:
        """Load channel weights: "lpips" (the shipped lin weights) or a weight file; a file with a tuned
        backbone (``backbone_state``) replaces the backbone too."""
        data = None if str(weights) == "lpips" else self._read_weight_file(weights)
        if data is not None and "backbone_state" in data:
            self._set_tuned_backbone(data)
        self._apply_weight_source(weights, data)

    def _apply_weight_source(self, weights: str | Path, data: dict | None) -> None:
        if data is None:
            per_layer = weightfile.lpips_shipped_weights(self.net)
            self.weights_source = "lpips"
        else:
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

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (inputs must be there too)."""
        return self.in_mul.device

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([w.detach() for w in self.weights])

    # ----- forward -----
    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise LearningError(f"DPL expects N×3×H×W images, got shape {tuple(x.shape)}")
        try:
            x = torch.addcmul(self.in_add, x, self.in_mul).contiguous(memory_format=torch.channels_last)
            return self.backbone(x)
        except RuntimeError as exc:
            if "too small" not in str(exc):
                raise
            raise LearningError(f"images of {x.shape[2]}×{x.shape[3]} pixels are too small for the "
                                f"{self.net} "
                                "backbone; use larger images or patches") from None

    def _unit_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the N×(H·W)×C unit-normalised features of ``x``."""
        return [_unit(f) for f in self._features(x)]

    def _pair_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise LearningError(f"DPL inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        return torch.cat([x, y], 0)  # one backbone pass for both inputs

    def forward(self, x: torch.Tensor, y: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        """N distances (or N×1×H×W maps with ``spatial=True``, each layer upsampled as lpips does)."""
        n = x.shape[0]
        feats = self._features(self._pair_input(x, y))
        total: torch.Tensor | int = 0
        for f, w in zip(feats, self.weights):
            h, wd = f.shape[2:]
            g = _unit(f)
            d = _sq_diff(g[:n], g[n:])
            if spatial:
                m = (d @ w).view(n, 1, h, wd)
                total = total + F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False)
            else:
                total = total + d.mean(1) @ w
        return total

    def channel_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N×C_total per-channel spatial means m_lc (concatenated over layers).

        The distance is ``channel_distances(x, y) @ flat_weights()``."""
        n = x.shape[0]
        return torch.cat([_sq_diff(g[:n], g[n:]).mean(1)
                          for g in self._unit_features(self._pair_input(x, y))], 1)

    def triplet_channel_distances(self, ref: torch.Tensor, p0: torch.Tensor,
                                  p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """m(ref, p0) and m(ref, p1) with one backbone pass over ref, p0, p1 (ref features reused)."""
        n = ref.shape[0]
        m0, m1 = [], []
        for g in self._unit_features(torch.cat([ref, p0, p1], 0)):
            m0.append(_sq_diff(g[n:2 * n], g[:n]).mean(1))  # ref rows are read twice: never overwritten
            m1.append(_sq_diff(g[2 * n:], g[:n]).mean(1))
        return torch.cat(m0, 1), torch.cat(m1, 1)

    def grouped_channel_distances(self, images: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """One backbone pass over ``images``, laid out as groups one after another: a reference followed by
        the ``sizes[g] − 1`` images compared with it. Returns the Σ(sizes − 1)×C_total vectors
        m(reference, image), group by group (each image computed once, however many pairs share it)."""
        if sum(sizes) != images.shape[0] or min(sizes, default=2) < 2:
            raise LearningError("group sizes must be >= 2 and add up to the number of images")
        starts = [0]
        for k in sizes[:-1]:
            starts.append(starts[-1] + k)
        out = []
        for g in self._unit_features(images):
            # slices of the reference-major layout: views, no gathered copies
            out.append(torch.cat([_sq_diff(g[s + 1:s + k], g[s:s + 1]).mean(1)
                                  for s, k in zip(starts, sizes)]))
        return torch.cat(out, 1)

    def train(self, mode: bool = True) -> DPL:
        super().train(mode)
        self.backbone.train(False)
        return self
