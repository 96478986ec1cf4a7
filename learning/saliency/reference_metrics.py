"""Score a compressed file the way the DCC 2018 reference did, plus PSNR-S.

Both files go through ``ffmpeg … -pix_fmt yuv420p`` (``learning.metrics.yuv420``) and the six VQMT
metrics (``learning.metrics.vqmt``) on the luma, read two ways: ``published`` (the reference's call, width
and height swapped, which is how every number in its log and paper was made) and ``correct``.

PSNR-S (the paper names it without defining its salient region; ours): PSNR of the correctly read luma
over the salient region R, 10·log10(255² / mean_R (Y − Ŷ)²). R is defined on the 8-bit map that drove
the encoder (the map the reference reads): ``top-P%`` = the pixels whose saliency is ≥ the map's
(100 − P)-th percentile (ties included), ``abs≥T`` = saliency ≥ T·255. The table's PSNR-S is ``top-25%``;
``REGIONS`` are all reported for sensitivity.
"""

from __future__ import annotations

import numpy as np

from learning.metrics import vqmt
from learning.metrics.yuv420 import ffmpeg_luma, reference_size, vqmt_reading
from learning.saliency.reference_log import METRICS

REGIONS = ("top-10%", "top-25%", "top-50%", "abs≥0.5")
PSNR_S_REGION = "top-25%"


def salient_region(sal_u8: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of the salient region ``region`` (``top-P%`` or ``abs≥T``) of an 8-bit map."""
    s = sal_u8.astype(np.float64)
    if region.startswith("top-") and region.endswith("%"):
        mask = s >= np.percentile(s, 100.0 - float(region[4:-1]))
    elif region.startswith("abs≥"):
        mask = s >= float(region[4:]) * 255.0
    else:
        raise ValueError(f"unknown salient region {region!r}")
    return mask if mask.any() else s >= s.max()


def psnr_s(y_ref: np.ndarray, y_dist: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (0…255) of two luma planes over ``mask``."""
    mse = float(np.mean((y_ref[mask].astype(np.float64) - y_dist[mask]) ** 2))
    return 100.0 if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


class ReferenceScorer:
    """Scores files against one original (PNG bytes) with one 8-bit saliency map (image-sized)."""

    def __init__(self, original_png: bytes, sal_u8: np.ndarray):
        self.y = ffmpeg_luma(original_png)
        self.size = reference_size((self.y.shape[1], self.y.shape[0]))
        if self.size != (self.y.shape[1], self.y.shape[0]):
            self.y = ffmpeg_luma(original_png, self.size)
        w, h = self.size
        self.masks = {r: salient_region(sal_u8[:h, :w], r) for r in REGIONS}

    def score(self, data: bytes) -> dict[str, float]:
        """``published:<metric>``, ``correct:<metric>`` for the six VQMT metrics, ``PSNR-S:<region>``,
        ``PSNR-S`` (the table's region), ``bytes``."""
        yd = ffmpeg_luma(data, self.size)
        out: dict[str, float] = {"bytes": float(len(data))}
        for reading, swapped in (("published", True), ("correct", False)):
            vals = vqmt.all_metrics(vqmt_reading(self.y, swapped), vqmt_reading(yd, swapped))
            out.update({f"{reading}:{m}": vals[m] for m in METRICS})
        for r, mask in self.masks.items():
            out[f"PSNR-S:{r}"] = psnr_s(self.y, yd, mask)
        out["PSNR-S"] = out[f"PSNR-S:{PSNR_S_REGION}"]
        return out
