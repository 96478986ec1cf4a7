"""Saliency map I/O and checks: RGB images in (``load_rgb``, ``check_rgb``, ``list_images``), maps as 16-bit
grayscale PNG (0..65535 ↔ 0..1, ``save_map``, ``load_map``), ``resize_map`` and ``normalise``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from learning.errors import LearningError

MIN_SIDE = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB; LearningError for unreadable, grayscale or tiny (< 32 px) images."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            image = im.copy()
    except FileNotFoundError as exc:
        raise LearningError(f"{path}: no such image file") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LearningError(f"{path}: unreadable image ({exc.__class__.__name__})") from exc
    return check_rgb(image, str(path), mode)


def check_rgb(image: Image.Image, label: str = "image", mode: str | None = None) -> Image.Image:
    """Validate an in-memory image the same way as ``load_rgb`` and return it as RGB."""
    mode = mode or image.mode
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        raise LearningError(f"{label}: grayscale image (mode {mode}); saliency and the MSROI table need RGB")
    if min(image.size) < MIN_SIDE:
        raise LearningError(f"{label}: image too small ({image.size[0]}×{image.size[1]}); "
                            f"need at least {MIN_SIDE} px per side")
    return image.convert("RGB")


def list_images(directory: str | Path, limit: int | None = None) -> list[Path]:
    """Image files of a directory, sorted; LearningError when there are none."""
    d = Path(directory)
    if not d.is_dir():
        raise LearningError(f"{d}: not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        if limit < 1:
            raise LearningError("--limit must be at least 1")
        files = files[:limit]
    if not files:
        raise LearningError(f"{d}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def save_map(saliency: np.ndarray, path: str | Path | BinaryIO) -> None:
    """Write a [0, 1] map as a 16-bit grayscale PNG to a path or a binary file object."""
    arr = np.round(np.clip(saliency, 0.0, 1.0) * 65535.0).astype(np.uint16)
    Image.fromarray(arr).save(path if hasattr(path, "write") else Path(path), format="PNG")


def load_map(path: str | Path | BinaryIO, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a saliency PNG (16-/8-bit; path or binary file) as float32 H×W in [0, 1], resized to ``size``."""
    path = path if hasattr(path, "read") else Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float64)
                    scale = 65535.0
                elif mode in ("L", "P", "RGB", "RGBA", "LA"):
                    arr = np.asarray(im.convert("L"), dtype=np.float64)
                    scale = 255.0
                else:
                    raise LearningError(f"{path}: unsupported saliency map mode {mode}")
    except FileNotFoundError as exc:
        raise LearningError(f"{path}: no such saliency map") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LearningError(f"{path}: image too large (decompression bomb guard)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # how Pillow says "broken"
        raise LearningError(f"{path}: unreadable saliency map") from exc
    out = np.clip(arr / scale, 0.0, 1.0).astype(np.float32)
    if size is not None and (out.shape[1], out.shape[0]) != tuple(size):
        out = resize_map(out, size)
    return out


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``size`` = (W, H), clipped to [0, 1]."""
    im = Image.fromarray(saliency.astype(np.float32), mode="F").resize(tuple(size), Image.BILINEAR)
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)


def normalise(saliency: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] float32 (a constant map becomes all zeros)."""
    s = saliency.astype(np.float64)
    lo, hi = float(s.min()), float(s.max())
    if hi - lo < 1e-12:
        return np.zeros_like(s, dtype=np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)
