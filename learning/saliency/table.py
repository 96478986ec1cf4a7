"""The DCC 2018 Kodak table: standard JPEG q50 against the saliency-driven JPEG at the same size.

Metrics are computed on luma after a yuv420p-like conversion: BT.601 limited-range Y,
Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]), rounded to uint8 — what ffmpeg's
``yuv420p`` gives (chroma subsampling does not touch Y). Every metric comes from the one registry
(``learning.metrics``) on N×1×H×W tensors Y/255.

PSNR-S (our definition): PSNR on Y restricted to the pixels whose saliency (the map of the model that
drove the encoder, in [0, 1]) is ≥ ``PSNR_S_THRESHOLD`` = 0.5, i.e. 10·log10(255² / mean over
those pixels of (Y − Ŷ)²).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from learning.metrics import get_metric
from learning.metrics.classical import psnr_hvs_both
from learning.metrics.color import rgb_to_y_uint8
from learning.saliency.jpeg import decode_jpeg, encode_jpeg, saliency_jpeg

PSNR_S_THRESHOLD = 0.5
COLUMNS = ["PSNR-S", "PSNR", "PSNR-HVS", "PSNR-HVS-M", "SSIM", "MS-SSIM", "VIFP", "bpp"]
PAPER = {
    "standard": [33.91, 34.70, 34.92, 42.19, 0.969, 0.991, 0.626, None],
    "msroi": [39.16, 34.82, 35.05, 42.33, 0.969, 0.991, 0.629, None],
}
IMPLEMENTATIONS = {
    "PSNR-S": f"own code: PSNR on Y over pixels with saliency ≥ {PSNR_S_THRESHOLD}",
    "PSNR": "registry 'psnr' (own code, 10·log10(1/MSE) on Y/255)",
    "PSNR-HVS": "registry 'psnr-hvs' (psnr_hvsm package, numpy backend, 8×8 non-overlapping DCT tiles)",
    "PSNR-HVS-M": "registry 'psnr-hvs-m' (psnr_hvsm package, numpy backend)",
    "SSIM": "registry 'ssim' (pytorch-msssim, Gaussian 11/1.5, valid, no downsampling)",
    "MS-SSIM": "registry 'ms-ssim' (pytorch-msssim, 5 scales)",
    "VIFP": "registry 'vifp' (piq.vif_p, 4 scales, σn²=2)",
    "bpp": "file bytes × 8 / (W·H)",
}


def psnr_s(y_ref: np.ndarray, y_dist: np.ndarray, saliency: np.ndarray) -> float:
    mask = saliency >= PSNR_S_THRESHOLD
    if not mask.any():
        mask = saliency >= saliency.max()
    mse = float(np.mean((y_ref[mask].astype(np.float64) - y_dist[mask]) ** 2))
    return 100.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def luma_metrics(y_ref: np.ndarray, y_dist: np.ndarray, saliency: np.ndarray, nbytes: int) -> list[float]:
    """One row of the table (COLUMNS order) for uint8 luma planes."""
    a = torch.from_numpy(y_ref.astype(np.float32) / 255.0)[None, None]
    b = torch.from_numpy(y_dist.astype(np.float32) / 255.0)[None, None]
    hvs, hvsm = psnr_hvs_both(a, b)
    return [
        psnr_s(y_ref, y_dist, saliency),
        float(get_metric("psnr")(a, b)[0]),
        float(hvs[0]),
        float(hvsm[0]),
        float(get_metric("ssim")(a, b)[0]),
        float(get_metric("ms-ssim")(a, b)[0]),
        float(get_metric("vifp")(a, b)[0]),
        nbytes * 8.0 / (y_ref.shape[0] * y_ref.shape[1]),
    ]


@dataclass
class ImageResult:
    stem: str
    standard: list[float]
    msroi: list[float]  # the paper's method (msroi-composite)
    final_quality: float
    size_error: float
    prune: list[float] = field(default_factory=list)  # the dct-prune variant
    prune_quality: float = 0.0
    prune_size_error: float = 0.0


def evaluate_image(image: Image.Image, saliency: np.ndarray, stem: str, quality: int = 50,
                   tolerance: float = 0.01) -> tuple[ImageResult, bytes, bytes, bytes]:
    """Standard JPEG at ``quality`` and both saliency JPEGs at the same size (± tolerance), all scored.

    Returns (result, standard file, msroi-composite file, dct-prune file).
    """
    std = encode_jpeg(image, quality)
    sal = saliency_jpeg(image, saliency, len(std), tolerance=tolerance, method="msroi-composite")
    pru = saliency_jpeg(image, saliency, len(std), tolerance=tolerance, method="dct-prune")
    y = rgb_to_y_uint8(np.asarray(image))

    def row(data: bytes) -> list[float]:
        return luma_metrics(y, rgb_to_y_uint8(np.asarray(decode_jpeg(data))), saliency, len(data))

    res = ImageResult(stem, row(std), row(sal.data), sal.final_quality, sal.size_error,
                      row(pru.data), pru.final_quality, pru.size_error)
    return res, std, sal.data, pru.data


def format_table(results: list[ImageResult], model_desc: str) -> str:
    std = np.mean([r.standard for r in results], axis=0)
    sal = np.mean([r.msroi for r in results], axis=0)
    pru = np.mean([r.prune for r in results], axis=0)

    def fmt(vals) -> str:
        cells = []
        for c, v in zip(COLUMNS, vals):
            if v is None:
                cells.append("—")
            else:
                cells.append(f"{v:.3f}" if c in ("SSIM", "MS-SSIM", "VIFP", "bpp") else f"{v:.2f}")
        return " | ".join(cells)

    lines = [
        f"MSROI table on {len(results)} images; saliency model: {model_desc}",
        "Metrics on BT.601 limited-range luma (Y = 16 + 65.481R + 128.553G + 24.966B, rounded to uint8).",
        f"PSNR-S = PSNR on Y over the pixels whose saliency ≥ {PSNR_S_THRESHOLD} (map of the model above).",
        "",
        "| row | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
        "| ours: standard JPEG q50 (Pillow, 4:2:0) | " + fmt(std) + " |",
        "| ours: saliency JPEG, same size (msroi-composite) | " + fmt(sal) + " |",
        "| ours: difference (msroi-composite − standard) | " + fmt(sal - std) + " |",
        "| ours: saliency JPEG, same size (dct-prune variant) | " + fmt(pru) + " |",
        "| ours: difference (dct-prune − standard) | " + fmt(pru - std) + " |",
        "| paper: standard JPEG q50 | " + fmt(PAPER["standard"]) + " |",
        "| paper: MSROI JPEG, same size | " + fmt(PAPER["msroi"]) + " |",
        "",
        f"max |size error| vs the standard file: msroi-composite "
        f"{max(abs(r.size_error) for r in results):.2%}, dct-prune "
        f"{max(abs(r.prune_size_error) for r in results):.2%}; mean final quality "
        f"{np.mean([r.final_quality for r in results]):.2f} / "
        f"{np.mean([r.prune_quality for r in results]):.2f}",
        "Methods: msroi-composite = the paper's (blocks from JPEGs at q 40/50/60/80/95 by saliency, one "
        "re-encode); dct-prune = ours (per-block luma DCT low-pass by saliency, one re-encode).",
        "Implementations: " + "; ".join(f"{k}: {v}" for k, v in IMPLEMENTATIONS.items()),
    ]
    return "\n".join(lines)


def overlay(image: Image.Image, saliency: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image blended with a colour-mapped saliency map (matplotlib 'jet')."""
    from matplotlib import colormaps

    heat = (colormaps["jet"](saliency)[..., :3] * 255).astype(np.float64)
    base = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8))


def examples_figure(rows: list[tuple[str, Path, Path, Path, Path, Path]], path_png: Path,
                    model_name: str) -> None:
    """rows: (stem, overlay, standard, msroi-composite, dct-prune decoded, original); writes PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(20, 2.9 * len(rows)), squeeze=False)
    titles = ["original", f"saliency ({model_name})", "standard JPEG q50",
              "msroi-composite (same size)", "dct-prune (same size)"]
    for i, (stem, ov, std, sal, pru, orig) in enumerate(rows):
        for j, p in enumerate([orig, ov, std, sal, pru]):
            ax = axes[i][j]
            with Image.open(p) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j])
            if j == 0:
                ax.set_ylabel(stem)
    fig.tight_layout()
    fig.savefig(path_png, dpi=80)
    fig.savefig(path_png.with_suffix(".svg"))
    plt.close(fig)
