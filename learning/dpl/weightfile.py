"""DPL weight files (format ``dpl-weights/1``) and conversion to/from the LPIPS state-dict layout.

A file is ``torch.save`` of a dict::

    {"format": "dpl-weights/1", "net": "alex", "weights": [tensor(C_1), ..., tensor(C_L)],
     "head": {...} (optional, the fitted preference head), "metadata": {...},
     "backbone_state": {"slice1.0.weight": tensor, ...} (optional, tuned files only)}

``weights[l][c]`` is W_lc >= 0, the LPIPS ``lin`` 1×1 conv weight (see ``learning.dpl.model``).

``backbone_state`` (optional): the backbone's own weights, as ``Backbone.state_dict()`` (keys
``sliceK.I.weight`` / ``sliceK.I.bias``, the lpips ``net.*`` keys without ``net.``). Written for
backbones fine-tuned with the channel weights (``python -m learning fit --tune``), whose metadata then
has ``"tuned": true``, ``tune_epochs``, ``tune_lr``, ``base_backbone_source`` and ``base_backbone_sha256``
(the backbone before tuning; ``backbone_sha256`` is the tuned one's). ``DPL(net, weights=FILE)`` uses
this backbone whatever its ``backbone=`` argument. Files without the key load as before. A tuned file has
no LPIPS lin-layout equivalent: ``to_lpips_state_dict`` refuses it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from learning.dpl.backbones import CHANNELS, check_backbone_state, check_net
from learning.errors import LearningError

FORMAT = "dpl-weights/1"


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "torchvision", "lpips", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model: Any, path: str | Path, metadata: dict | None = None,
                 head: dict | None = None) -> None:
    """Write ``model``'s channel weights (a ``DPL``) with metadata (backbone source and sha256, versions,
    date, plus whatever the caller adds: dataset manifest sha256, train/val 2AFC ...). A tuned backbone
    (``model.backbone.tuned``) is written too, as ``backbone_state`` (see the module docstring)."""
    meta = {
        "backbone_source": model.backbone.source,
        "backbone_sha256": model.backbone.sha256(),
        "weights_source": getattr(model, "weights_source", ""),
        "versions": library_versions(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    backbone = model.backbone
    if getattr(backbone, "tuned", False):  # the weights belong to this very backbone: carry it
        meta.update({"tuned": True, "base_backbone_source": backbone.source,
                     "base_backbone_sha256": backbone.base_sha256})
    meta.update(metadata or {})
    data = {"format": FORMAT, "net": model.net,
            "weights": [w.detach().cpu().clone().float() for w in model.weights],
            "metadata": meta}
    if getattr(backbone, "tuned", False):
        data["backbone_state"] = {k: v.detach().cpu().float().contiguous().clone()
                                  for k, v in backbone.state_dict().items()}
    if head is not None:
        data["head"] = head
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def load_weights(path: str | Path) -> dict:
    """Read and validate a weight file; returns the dict described in the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise LearningError(f"weight file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LearningError(f"cannot read weight file {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        lpips_like = isinstance(data, dict) and any(str(k).startswith("lin") for k in data)
        hint = " (an LPIPS state dict? convert it with from_lpips_state_dict)" if lpips_like else ""
        raise LearningError(f"{path} is not a DPL weight file ({FORMAT}){hint}")
    net = check_net(str(data.get("net")))
    weights = data.get("weights")
    if not isinstance(weights, list) or [int(torch.as_tensor(w).numel()) for w in weights] != CHANNELS[net]:
        raise LearningError(f"{path}: weights do not match the {net} layer sizes {CHANNELS[net]}")
    if "backbone_state" in data:
        data["backbone_state"] = check_backbone_state(net, data["backbone_state"], f"{path}: backbone_state")
    return data


def to_lpips_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """``lin{l}.model.1.weight`` tensors (1×C×1×1) as in ``lpips.LPIPS(net=...).state_dict()``.

    Refuses a tuned model (LearningError): its weights only hold with its own backbone, which the lin
    layout does not carry."""
    if getattr(model.backbone, "tuned", False):
        raise LearningError("this DPL has a tuned backbone; the LPIPS lin layout holds only channel "
                            "weights, which are meaningless without it: use the DPL weight file")
    return {f"lin{i}.model.1.weight": w.detach().cpu().float().reshape(1, -1, 1, 1).clone()
            for i, w in enumerate(model.weights)}


def from_lpips_state_dict(sd: dict[str, torch.Tensor], net: str) -> list[torch.Tensor]:
    """Per-layer weight vectors from an LPIPS state dict (full model or lin layers only)."""
    check_net(net)
    out = []
    for i, c in enumerate(CHANNELS[net]):
        key = f"lin{i}.model.1.weight"
        if key not in sd:
            raise LearningError(f"LPIPS state dict lacks {key} (is it for net {net!r}?)")
        w = sd[key].detach().float().reshape(-1)
        if w.numel() != c:
            raise LearningError(f"{key} has {w.numel()} channels, {net} layer {i} has {c}")
        out.append(w.clone())
    if f"lin{len(CHANNELS[net])}.model.1.weight" in sd:
        raise LearningError(f"LPIPS state dict has more layers than net {net!r}")
    return out


def lpips_shipped_weights(net: str) -> list[torch.Tensor]:
    """The v0.1 lin weights shipped inside the ``lpips`` PyPI package (read without importing it)."""
    check_net(net)
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise LearningError("weights='lpips' needs the lpips package (pip install lpips)")
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        raise LearningError(f"lpips package has no shipped weights at {path}")
    return from_lpips_state_dict(torch.load(path, map_location="cpu", weights_only=True), net)


__all__ = ["save_weights", "load_weights", "to_lpips_state_dict", "from_lpips_state_dict",
           "lpips_shipped_weights", "file_sha256", "library_versions"]
