"""The DCC 2018 reference method (``combine_images.py`` of github.com/iamaaditya/image-compression-cnn),
as it behaves, re-implemented: methods ``reference-model-1`` … ``reference-model-6``.

1. Encode the image with Pillow at JPEG qualities 10, 20, …, 100 (Pillow's defaults: 4:2:0, no Huffman
   optimisation) and decode each (``levels`` index 0 … 9 = quality 10 … 100).
2. Per pixel, a level from the 8-bit saliency map s (the reference reads a grayscale JPEG map; ours are
   quantised to 0…255, resized to the image with nearest neighbour if needed, as old Pillow's default
   ``resize`` did). With p_k the k-th percentile of the map (numpy's linear interpolation), its mean m and
   maximum M, the six models are:

   - 1: level 9 if s > m else 6
   - 2: ⌊10·s / M⌋ + 2
   - 3: the first k in 1…10 with s < p_{10k}, as level k; a pixel with s = M (no such k) keeps the level
     of the pixel before it in raster order (the reference's loop variable is simply not reassigned)
   - 4: 4 if s < p20, 6 if s < p60, 8 if s < p90, else 9
   - 5: 2 if s < p50 else 8
   - 6: 7 if s < p50 else 9 (the reference's default in its paper runs: q80 below the median, q100 above)

   every level clipped to 1…9 (so quality 10 is never used), and the pixel copied from that decode.
3. The standard JPEG: Pillow at ``jpeg_quality`` (50). The composite is re-encoded at qualities 90, 89,
   …, 21 and the first whose size ≤ standard × (1 + ``threshold_pct``/100) is kept (the reference's
   ``find_best``); if none is, quality 21's file is kept, as there. The reference's default threshold is
   20 %; its Kodak log was made with a threshold near 2 % (composites 0.9–2.0 % larger than standard).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from learning.errors import LearningError

QUALITY_STEPS = tuple(range(10, 101, 10))
MODELS = (1, 2, 3, 4, 5, 6)
METHODS = tuple(f"reference-model-{m}" for m in MODELS)
SEARCH_QUALITIES = tuple(range(90, 20, -1))
LOW, HIGH = 1, 9


def pillow_jpeg(image: Image.Image, quality: int) -> bytes:
    """``image.save(f, quality=q)`` with Pillow's defaults, as the reference saves every JPEG."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def saliency_u8(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map as the reference holds it: 8-bit, at the image ``size`` (W, H), nearest-neighbour resized."""
    s = np.asarray(saliency)
    if s.dtype != np.uint8:
        s = np.clip(np.round(s.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if (s.shape[1], s.shape[0]) != tuple(size):
        s = np.asarray(Image.fromarray(s).resize(tuple(size), Image.NEAREST))
    return s


def model_levels(sal: np.ndarray, model: int) -> np.ndarray:
    """Per-pixel level (index into ``QUALITY_STEPS``) of ``model`` for an 8-bit map; shape of ``sal``."""
    s = sal.astype(np.float64)
    if model == 1:
        lv = np.where(s > s.mean(), 9, 6)
    elif model == 2:
        mx = s.max()
        if mx == 0:
            raise LearningError("reference-model-2: all-zero saliency map (the reference divides by its max)")
        lv = np.floor(s * 10 / mx) + 2
    elif model == 3:
        q_a = np.percentile(s, QUALITY_STEPS)
        k = np.searchsorted(q_a, s.ravel(), side="right")  # number of percentiles ≤ s → first q_a > s
        lv = np.where(k < len(q_a), k + 1, -1).astype(np.float64)
        missing = lv < 0  # s ≥ every percentile: the reference keeps the previous pixel's level
        if missing.any():
            idx = np.where(~missing, np.arange(lv.size), -1)
            np.maximum.accumulate(idx, out=idx)
            lv = np.where(idx >= 0, lv[np.maximum(idx, 0)], HIGH)  # the very first pixel: undefined there
        lv = lv.reshape(s.shape)
    elif model == 4:
        p20, p60, p90 = np.percentile(s, (20, 60, 90))
        lv = np.select([s < p20, s < p60, s < p90], [4, 6, 8], 9)
    elif model == 5:
        lv = np.where(s < np.percentile(s, 50), 2, 8)
    elif model == 6:
        lv = np.where(s < np.percentile(s, 50), 7, 9)
    else:
        raise LearningError(f"unknown reference model {model}; known: {', '.join(map(str, MODELS))}")
    return np.clip(lv, LOW, HIGH).astype(np.int64)


def reference_composite(image: Image.Image, saliency: np.ndarray,
                        model: int = 6) -> tuple[Image.Image, np.ndarray]:
    """Per-pixel mix of the image decoded at qualities 10…100 by ``model``; returns (image, quality map)."""
    image = image.convert("RGB")
    sal = saliency_u8(saliency, image.size)
    levels = model_levels(sal, model)
    decoded = np.stack([_decode(pillow_jpeg(image, q)) for q in QUALITY_STEPS])
    out = np.take_along_axis(decoded, levels[None, :, :, None].repeat(3, axis=3), axis=0)[0]
    return Image.fromarray(out), np.asarray(QUALITY_STEPS)[levels]


@dataclass
class ReferenceJpeg:
    data: bytes  # the composite, re-encoded
    standard: bytes  # Pillow at jpeg_quality
    final_quality: int
    met: bool  # False when no quality in the search met the size rule (quality 21's file is kept)
    model: int
    threshold_pct: float
    quality_map: np.ndarray  # per pixel, the JPEG quality the composite took it from

    @property
    def method(self) -> str:
        return f"reference-model-{self.model}"

    @property
    def size_excess(self) -> float:
        """Composite bytes / standard bytes − 1."""
        return len(self.data) / len(self.standard) - 1.0


def reference_jpeg(image: Image.Image, saliency: np.ndarray, model: int = 6, threshold_pct: float = 20.0,
                   jpeg_quality: int = 50, qualities: tuple[int, ...] = SEARCH_QUALITIES) -> ReferenceJpeg:
    """The reference's composite JPEG and its standard JPEG (see module doc for the size rule)."""
    if threshold_pct < 0:
        raise LearningError("threshold_pct must be ≥ 0")
    image = image.convert("RGB")
    comp, qmap = reference_composite(image, saliency, model)
    standard = pillow_jpeg(image, jpeg_quality)
    limit = len(standard) * (1 + threshold_pct / 100.0)
    data, final = b"", 0
    for q in qualities:
        data, final = pillow_jpeg(comp, q), q
        if len(data) <= limit:
            return ReferenceJpeg(data, standard, final, True, model, threshold_pct, qmap)
    return ReferenceJpeg(data, standard, final, False, model, threshold_pct, qmap)


def parse_method(method: str) -> int:
    """``reference-model-N`` → N."""
    if method not in METHODS:
        raise LearningError(f"unknown reference method {method!r}; known: {', '.join(METHODS)}")
    return int(method.rsplit("-", 1)[1])
