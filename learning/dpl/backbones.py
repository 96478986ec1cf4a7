"""Frozen feature backbones, sliced exactly as the ``lpips`` package slices them.

Each backbone is a module with attributes ``slice1..sliceK`` (``nn.Sequential`` whose children are named by
their index in torchvision's ``features``), so its state dict matches ``lpips.LPIPS(...).net`` key for key.
The architectures are written out here (equal to torchvision's, checked by the tests) so that random and
file backbones need no torchvision import (seconds of start-up); torchvision is imported only to fetch its
ImageNet weights.
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


def parse_backbone_spec(spec: str, label: str = "backbone") -> tuple[str | Path | None, int]:
    """Parse a backbone spec ``imagenet | PATH | random:SEED`` into ``(backbone, seed)`` for
    :class:`Backbone`: ``("imagenet", 0)``, ``(Path(PATH), 0)`` or ``(None, SEED)``.

    ``label`` names the spec in errors (``"--backbone"`` for a CLI option). Raises LearningError for a
    non-integer seed or a PATH that is not an existing file.
    """
    if spec == "imagenet":
        return "imagenet", 0
    if spec.startswith("random:"):
        try:
            return None, int(spec.split(":", 1)[1])
        except ValueError:
            raise LearningError(f"{label} {spec!r}: random:SEED needs an integer seed") from None
    if not Path(spec).is_file():
        raise LearningError(f"{label} {spec!r}: not 'imagenet', 'random:SEED' or an existing file")
    return Path(spec), 0


def _conv_relu(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding), nn.ReLU(inplace=True)]


class Fire(nn.Module):
    """torchvision's SqueezeNet Fire block (same submodule names, so state dicts match)."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


def _features(net: str) -> nn.Sequential:
    """``features`` of torchvision's alexnet / vgg16 / squeezenet1_1, built module for module in the same
    order (so a seeded default init draws the same numbers)."""
    if net == "alex":
        return nn.Sequential(
            *_conv_relu(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2),
            *_conv_relu(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
            *_conv_relu(192, 384, 3, 1, 1), *_conv_relu(384, 256, 3, 1, 1), *_conv_relu(256, 256, 3, 1, 1),
            nn.MaxPool2d(3, 2))
    if net == "vgg":
        layers: list[nn.Module] = []
        cin = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += _conv_relu(cin, int(v), 3, 1, 1)
                cin = int(v)
        return nn.Sequential(*layers)
    pool = nn.MaxPool2d  # squeezenet 1.1
    return nn.Sequential(
        *_conv_relu(3, 64, 3, 2), pool(3, 2, ceil_mode=True), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
        pool(3, 2, ceil_mode=True), Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
        pool(3, 2, ceil_mode=True), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))


def _head(net: str) -> nn.Module:
    """The classifier part of the torchvision model (1000 classes), for RNG replay and key checks."""
    if net == "alex":
        return nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                             nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))
    if net == "vgg":
        return nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096),
                             nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))
    return nn.Sequential(nn.Dropout(), nn.Conv2d(512, 1000, kernel_size=1), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d((1, 1)))


def _random_features(net: str, seed: int) -> nn.Sequential:
    """The features of ``torchvision.models.<ctor>(weights=None)`` after ``torch.manual_seed(seed)``,
    bit for bit, without importing torchvision (its import costs seconds of start-up)."""
    torch.manual_seed(seed)
    features = _features(net)
    if net == "alex":  # no re-init; the classifier is drawn after the features, so skip it
        return features
    _head(net)  # drawn before the re-init below: replay it to keep the generator in step
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            if net == "vgg":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(m.weight)
            nn.init.constant_(m.bias, 0)
    return features


def _file_features(net: str, path: Path) -> nn.Sequential:
    """Features loaded from a torchvision state dict: the whole classifier, or its ``features.*`` keys
    only (as ``../shared/data/backbones/alexnet-imagenet-features.pth``); keys and shapes must match."""
    if not path.is_file():
        raise LearningError(f"backbone file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LearningError(f"cannot read backbone state dict {path}: {type(exc).__name__}") from None
    with torch.device("meta"):
        skeleton = nn.Module()
        skeleton.features, skeleton.classifier = _features(net), _head(net)
    whole = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    features_only = {k: v for k, v in whole.items() if k.startswith("features.")}
    got = ({k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
           if isinstance(state, dict) else {})
    if not isinstance(state, dict) or len(got) != len(state) or got not in (whole, features_only):
        raise LearningError(f"{path} is not a torchvision {_CONSTRUCTORS[net]} state dict (the whole "
                            f"classifier or its features.* keys){_guess_net(got)}")
    with torch.device("meta"):
        features = _features(net)
    features.to_empty(device="cpu")
    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return features


def _guess_net(got: dict) -> str:
    """``: it holds NET's weights`` when the shapes are another known net's, else nothing."""
    for other in _CONSTRUCTORS:
        with torch.device("meta"):
            shapes = {f"features.{k}": tuple(v.shape) for k, v in _features(other).state_dict().items()}
        if shapes and all(got.get(k) == v for k, v in shapes.items()):
            return f": it holds {other} weights"
    return ""


def _load_features(net: str, backbone: str | Path | None, seed: int) -> tuple[nn.Sequential, str]:
    """The backbone's ``features``; return it and a description of where its weights came from."""
    if backbone is None:
        return _random_features(net, seed), f"random:{seed}"
    if backbone == "imagenet":
        tv = models()
        enum = getattr(tv, _WEIGHT_ENUMS[net]).DEFAULT
        try:
            return getattr(tv, _CONSTRUCTORS[net])(weights=enum).features, f"imagenet:{enum}"
        except Exception as exc:  # no internet, proxy, corrupt download ...
            raise LearningError(
                f"could not load torchvision's ImageNet weights for {net} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local state dict file as the "
                "backbone instead") from None
    path = Path(backbone)
    return _file_features(net, path), f"file:{path.name}"


def _slice_key(net: str, key: str) -> str:
    """``features`` key ``I.param`` -> Backbone key ``sliceK.I.param``."""
    i = int(key.split(".", 1)[0])
    k = next(k for k, (a, b) in enumerate(SLICES[net], start=1) if a <= i < b)
    return f"slice{k}.{key}"


def check_backbone_state(net: str, state: object, label: str = "backbone state") -> dict[str, torch.Tensor]:
    """Validate a tuned backbone's state dict (the keys and shapes of ``Backbone(net).state_dict()``,
    e.g. ``slice1.0.weight``); return it as a plain dict of float32 tensors. Raises LearningError."""
    check_net(net)
    with torch.device("meta"):
        want = {_slice_key(net, k): tuple(v.shape) for k, v in _features(net).state_dict().items()
                if int(k.split(".", 1)[0]) < SLICES[net][-1][1]}
    ok = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not ok or {k: tuple(v.shape) for k, v in state.items()} != want:
        raise LearningError(f"{label} is not a {net} backbone state dict (keys sliceK.I.weight/bias)")
    if not all(v.is_floating_point() and bool(torch.isfinite(v).all()) for v in state.values()):
        raise LearningError(f"{label} holds non-finite or non-float values")
    return {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}


class Backbone(nn.Module):
    """Frozen, eval-mode feature extractor returning the LPIPS layer activations as a list.

    ``state`` (optional): a tuned backbone's state dict (keys of ``Backbone.state_dict()``), loaded instead
    of fetching or drawing weights; ``backbone`` is then not read, only kept as ``source`` (the base the
    state was tuned from), and ``tuned`` is True. ``base_sha256``: the base's sha256 when known.
    """

    def __init__(self, net: str = "alex", backbone: str | Path | None = "imagenet", seed: int = 0,
                 state: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.net = check_net(net)
        self.tuned = state is not None
        self.base_sha256: str | None = None
        if state is None:
            features, self.source = _load_features(net, backbone, seed)
        else:
            state = check_backbone_state(net, state)
            with torch.device("meta"):
                features = _features(net)
            features.to_empty(device="cpu")
            features.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
            self.source = str(backbone) if backbone is not None else f"random:{seed}"
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
