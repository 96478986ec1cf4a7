"""Training images as random crops whose position depends only on (seed, epoch, index).

Crops do not come from a global RNG, so the data a step sees is the same in one process, in any number
of DDP ranks, and after a resume. Saliency maps (same stem, 16-bit or 8-bit PNG in ``saliency_dir``)
are cropped with their image and turned into per-pixel weights ``1 + α·s`` normalised to mean 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from learning.errors import LearningError
from learning.saliency import load_map

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(directory: str | Path) -> list[Path]:
    path = Path(directory)
    if not path.is_dir():
        raise LearningError(f"image directory {str(path)!r} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LearningError(f"no images in {str(path)!r}")
    return files


def load_rgb(path: Path) -> torch.Tensor:
    """3×H×W float tensor in [0, 1]; a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except Exception as exc:
        raise LearningError(f"cannot read image {str(path)!r} ({exc})") from exc
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_saliency(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """1×H×W saliency in [0, 1] at ``size`` = (W, H), read by ``learning.saliency.load_map``."""
    return torch.from_numpy(load_map(path, size)).unsqueeze(0)


def saliency_weights(saliency: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-pixel weights ``1 + α·s`` normalised to mean 1 (per map)."""
    w = 1.0 + alpha * saliency
    return w / w.mean(dim=(-2, -1), keepdim=True)


class CropDataset(torch.utils.data.Dataset):
    """Item ``i`` = (crop of image i, weight map or an empty tensor), crop fixed by (seed, epoch, i)."""

    def __init__(
        self,
        directory: str | Path,
        crop: int,
        seed: int = 0,
        saliency_dir: str | Path | None = None,
        alpha: float = 3.0,
    ):
        self.files = list_images(directory)
        self.crop, self.seed, self.alpha, self.epoch = crop, seed, alpha, 0
        self.saliency = None
        if saliency_dir is not None:
            sal = Path(saliency_dir)
            self.saliency = []
            for f in self.files:
                m = sal / f"{f.stem}.png"
                if not m.exists():
                    raise LearningError(f"no saliency map {str(m)!r} for {f.name}")
                self.saliency.append(m)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = load_rgb(self.files[index])
        _, h, w = img.shape
        c = self.crop
        if h < c or w < c:
            raise LearningError(f"{self.files[index].name} is {w}×{h}, smaller than the {c}px crop")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 65_537 + index)
        top = int(torch.randint(0, h - c + 1, (1,), generator=g))
        left = int(torch.randint(0, w - c + 1, (1,), generator=g))
        x = img[:, top : top + c, left : left + c]
        if self.saliency is None:
            return x, torch.empty(0)
        s = load_saliency(self.saliency[index], (w, h))[:, top : top + c, left : left + c]
        return x, saliency_weights(s, self.alpha)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop of a C×H×W tensor to at most size×size (``size`` 0 = whole image)."""
    if size <= 0:
        return x
    _, h, w = x.shape
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, top : top + ch, left : left + cw]
