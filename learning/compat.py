"""The one place torchvision is imported.

PyPI's torchvision wheel cannot load its compiled operators beside the CPU torch wheel and fails at
import with ``operator torchvision::nms does not exist``. Registering the two missing operator schemas
before the import makes the pure-Python parts (models, transforms) work. Done only when the normal
import fails, so a working install is left untouched.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

_torchvision: ModuleType | None = None
_shim_lib = None  # keep the Library object alive: its registrations die with it


def _register_missing_ops() -> None:
    global _shim_lib
    _shim_lib = torch.library.Library("torchvision", "DEF")
    _shim_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _shim_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def torchvision() -> ModuleType:
    """Return the imported ``torchvision`` module, applying the CPU shim if needed."""
    global _torchvision
    if _torchvision is not None:
        return _torchvision
    try:
        _torchvision = importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _register_missing_ops()
        _torchvision = importlib.import_module("torchvision")
    return _torchvision


def models() -> ModuleType:
    """``torchvision.models``, imported through the shim."""
    return torchvision().models


def ensure_torchvision() -> None:
    """Import torchvision through the shim so that later plain imports (e.g. by lpips) work."""
    torchvision()
