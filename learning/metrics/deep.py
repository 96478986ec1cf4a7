"""Deep metrics: ``lpips-alex|vgg|squeeze`` (LPIPS v0.1 lin weights on the ImageNet backbone, computed by
our ``DPL``, equal to ``lpips.LPIPS`` to 1e-5) and ``dpl:FILE`` (a fitted DPL weight file).

Variants for machines without the ImageNet weights: ``lpips-alex:random:SEED`` or ``lpips-alex:PATH``
(a torchvision state dict) choose the backbone; ``dpl:FILE`` uses the backbone recorded in the file
(``random:SEED`` or ImageNet) unless given as ``dpl:FILE@BACKBONE``; the backbone's sha256 must then match
the one the weights were fitted on.

The network runs on the metric's device (``get_metric(name, device)``; one model per device, built once);
results come back to the device of the inputs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from learning.dpl.backbones import parse_backbone_spec
from learning.dpl.model import DPL
from learning.dpl.weightfile import load_weights
from learning.errors import LearningError
from learning.metrics.registry import Metric, register_factory, register_metric

NETS = ("alex", "vgg", "squeeze")


@lru_cache(maxsize=8)
def _model(net: str, weights: str | None, backbone: str, device: torch.device) -> DPL:
    bb, seed = parse_backbone_spec(backbone)
    return DPL(net, weights=weights, backbone=bb, seed=seed).to(device)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _wrap(name: str, get_model, implementation: str) -> Metric:
    """``get_model(device)`` → the DPL on that device; the metric runs it on the metric's device."""

    def fn(ref: torch.Tensor, dist: torch.Tensor, device: torch.device) -> torch.Tensor:
        model = get_model(device)
        with torch.inference_mode():
            return model(_rgb(ref).to(device), _rgb(dist).to(device)).to(ref.device)

    return Metric(name, fn, higher_is_better=False, implementation=implementation)


def _lpips_metric(net: str, backbone: str = "imagenet") -> Metric:
    name = f"lpips-{net}" + ("" if backbone == "imagenet" else f":{backbone}")
    return _wrap(name, lambda device: _model(net, "lpips", backbone, device),
                 f"DPL with lpips v0.1 {net} lin weights, backbone {backbone} (= lpips.LPIPS to 1e-5)")


for _net in NETS:
    register_metric(_lpips_metric(_net))
    register_factory(f"lpips-{_net}", lambda name, net=_net: _lpips_metric(net, name.split(":", 1)[1]))


def _dpl_metric(name: str) -> Metric:
    spec = name.split(":", 1)[1] if ":" in name else ""
    if not spec:
        raise LearningError("dpl metric needs a weight file: dpl:FILE or dpl:FILE@BACKBONE")
    path, _, backbone = spec.partition("@")
    data = load_weights(path)  # a missing or broken file is refused before any image is scored
    meta = data.get("metadata") or {}
    source = str(meta.get("backbone_source", "imagenet"))
    if not backbone and "backbone_state" not in data and source.startswith("file:"):  # say so before scoring
        raise LearningError(f"{path} was fitted on backbone {source}, a local file; name it: dpl:{path}@PATH")
    described = ("tuned from " if "backbone_state" in data else "") + (
        backbone or source)

    @lru_cache(maxsize=1)
    def get_model(device: torch.device) -> DPL:
        how = f"name it: dpl:{path}@PATH"
        return DPL.from_file(path, backbone or None, how_to_override=how, strict=True).to(device)

    return _wrap(name, get_model, f"DPL weight file {Path(path).name} ({data['net']}, backbone {described})")


register_factory("dpl", _dpl_metric)
