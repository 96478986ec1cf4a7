"""Training images as random crops whose position depends only on (seed, position in the crop stream).

:class:`StepBatches` deals the stream of (image, key) pairs: every epoch is a seeded permutation of the
images, and the global batch of step ``s`` is positions ``s·B … (s+1)·B − 1`` of that stream, rank ``r``
taking every ``world``-th of them. A crop (and its flip) is fixed by its key, not by a global RNG, so the
data a step sees is the same in one process, in any number of DDP ranks, in DataLoader worker processes,
and after a resume at any step. Saliency maps (same stem, 16-bit or 8-bit PNG in ``saliency_dir``)
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


def load_rgb8(path: Path) -> np.ndarray:
    """H×W×3 uint8 array; a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise LearningError(f"cannot read image {str(path)!r} ({exc})") from exc


def to_float(arr: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 → 3×H×W float tensor in [0, 1]."""
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).float().div_(255.0).contiguous()


def load_rgb(path: Path) -> torch.Tensor:
    """3×H×W float tensor in [0, 1]; a clear error for unreadable files."""
    return to_float(load_rgb8(path))


def load_saliency(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """1×H×W saliency in [0, 1] at ``size`` = (W, H), read by ``learning.saliency.load_map``."""
    return torch.from_numpy(load_map(path, size)).unsqueeze(0)


def saliency_weights(saliency: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-pixel weights ``1 + α·s`` normalised to mean 1 (per map)."""
    w = 1.0 + alpha * saliency
    return w / w.mean(dim=(-2, -1), keepdim=True)


class CropDataset(torch.utils.data.Dataset):
    """Item ``(i, key)`` = (crop of image i, weight map or an empty tensor); the crop position and a
    horizontal flip are fixed by (seed, key). A plain index ``i`` means key ``i``."""

    def __init__(
        self,
        directory: str | Path,
        crop: int,
        seed: int = 0,
        saliency_dir: str | Path | None = None,
        alpha: float = 3.0,
        cache_mb: int = 512,
    ):
        self.files = list_images(directory)
        self.crop, self.seed, self.alpha = crop, seed, alpha
        # decoded images, kept (per process) up to a budget: decoding a PNG costs more than a crop
        self.cache_bytes, self._cache, self._cached = cache_mb * 2**20, {}, 0
        self.saliency = None
        if saliency_dir is not None:
            sal = Path(saliency_dir)
            self.saliency = []
            for f in self.files:
                m = sal / f"{f.stem}.png"
                if not m.exists():
                    raise LearningError(f"no saliency map {str(m)!r} for {f.name}")
                self.saliency.append(m)

    def __len__(self) -> int:
        return len(self.files)

    def check_sizes(self) -> None:
        """A clear error now, not in a worker process later, for an image smaller than the crop."""
        c = self.crop
        for f in self.files:
            with Image.open(f) as im:
                w, h = im.size
            if h < c or w < c:
                raise LearningError(f"{f.name} is {w}×{h}, smaller than the {c}px crop")

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, key = item if isinstance(item, tuple) else (item, item)
        img = self._image(index)
        h, w, _ = img.shape
        c = self.crop
        if h < c or w < c:
            raise LearningError(f"{self.files[index].name} is {w}×{h}, smaller than the {c}px crop")
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + key * 65_537) % (2**63))
        top = int(torch.randint(0, h - c + 1, (1,), generator=g))
        left = int(torch.randint(0, w - c + 1, (1,), generator=g))
        flip = bool(torch.randint(0, 2, (1,), generator=g))
        x = to_float(img[top : top + c, left : left + c])
        if flip:
            x = x.flip(-1)
        if self.saliency is None:
            return x.contiguous(), torch.empty(0)
        s = load_saliency(self.saliency[index], (w, h))[:, top : top + c, left : left + c]
        if flip:
            s = s.flip(-1)
        return x.contiguous(), saliency_weights(s.contiguous(), self.alpha)


    def _image(self, index: int) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        img = load_rgb8(self.files[index])
        if self._cached + img.nbytes <= self.cache_bytes:
            self._cache[index] = img
            self._cached += img.nbytes
        return img


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: for steps ``start … stop − 1``, this rank's share of each global batch of ``batch``
    items, as (image index, crop key) pairs; the crop key is the item's position in the whole stream."""

    def __init__(self, n_images: int, batch: int, seed: int, start: int, stop: int,
                 rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed = n_images, batch, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._perm: tuple[int, torch.Tensor] | None = None

    def _image_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return int(self._perm[1][offset])

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        for step in range(self.start, self.stop):
            first = step * self.batch
            yield [(self._image_at(p), p) for p in range(first + self.rank, first + self.batch, self.world)]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop of a C×H×W tensor to at most size×size (``size`` 0 = whole image)."""
    if size <= 0:
        return x
    _, h, w = x.shape
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, top : top + ch, left : left + cw]
